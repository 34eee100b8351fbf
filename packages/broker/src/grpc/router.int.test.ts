import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BrokerClient,
  type ClusterStream,
  type Command__Output,
  type JoinedIdentity,
  type PodStatusEvent__Output,
} from '@spillway/api';
import { SpillwayError, createCertificateAuthority } from '@spillway/common';
import { RedisRouter } from './router.js';
import { StreamProbe } from '../../test-support/grpc/stream-probe.js';
import {
  SERVER_NAME,
  joinAs,
  mtls,
  quietLogger,
  rawClients,
  startBroker,
  type BrokerUnderTest,
} from '../../test-support/grpc/harness.js';

/**
 * Two broker replicas, each with its own gRPC server, sharing one Redis (store and
 * router) under a prefix of their own. The origin's shim talks to replica A, the donor's
 * agent to replica B: every command and status crosses replicas through Redis.
 */

const REDIS_URL = 'redis://127.0.0.1:6379';
const prefix = `spillway-test-router-${randomBytes(4).toString('hex')}`;
const redis = new Redis(REDIS_URL);
const routerConns: Redis[] = [];
let a: BrokerUnderTest;
let bb: BrokerUnderTest;
const clients: BrokerClient[] = [];

function routerFactory(brokerId: string): RedisRouter {
  const conn = new Redis(REDIS_URL);
  routerConns.push(conn);
  return new RedisRouter({ redis: conn, brokerId, keyPrefix: prefix, logger: quietLogger() });
}

function clientOf(broker: BrokerUnderTest, id: JoinedIdentity): BrokerClient {
  const c = new BrokerClient({
    address: broker.address,
    caPem: broker.ca.certPem,
    certPem: id.certPem,
    keyPem: id.keyPem,
    serverName: SERVER_NAME,
  });
  clients.push(c);
  return c;
}

async function eventually<T>(fn: () => Promise<T> | T, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

beforeAll(async () => {
  const ca = createCertificateAuthority({ commonName: 'Spillway router test CA' });
  const store = { kind: 'redis' as const, url: REDIS_URL, prefix: `${prefix}:store:` };
  const common = {
    ca,
    store,
    router: routerFactory,
    heartbeatIntervalMs: 300,
    heartbeatTimeoutMs: 3_000,
  };
  a = await startBroker({ ...common, brokerId: 'replica-a' });
  bb = await startBroker({ ...common, brokerId: 'replica-b' });
});

afterAll(async () => {
  for (const c of clients) await c.close();
  await a?.stop();
  await bb?.stop();
  for (const c of routerConns) await c.quit();
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
});

describe('RedisRouter across two broker replicas', () => {
  const commands: Command__Output[] = [];
  const statuses: PodStatusEvent__Output[] = [];
  let agent: ClusterStream;
  let donorId: JoinedIdentity;

  it('relays a pod created through replica A to a donor agent on replica B, and its status back', async () => {
    const origin = await joinAs(a, 'ha-origin');
    donorId = await joinAs(a, 'ha-donor');
    await a.core.createPeering({ origin: 'ha-origin', donor: 'ha-donor' });

    agent = clientOf(bb, donorId).connect('agent', {
      onCommand: (c) => {
        commands.push(c);
        if (c.op === 'create_pod' && c.create_pod?.pod) {
          const pod = c.create_pod.pod;
          agent.send({
            command_result: {
              request_id: c.request_id,
              code: 0,
              create_pod: { remote_namespace: 'spillway-ha-origin', remote_name: pod.name },
            },
          });
          agent.send({
            pod_status: {
              pod,
              remote_namespace: 'spillway-ha-origin',
              remote_name: pod.name,
              status_json: JSON.stringify({ phase: 'Pending' }),
            },
          });
        } else if (c.op === 'logs' && c.logs) {
          // Bytes that are not UTF-8 must cross Redis untouched.
          agent.send({
            log_chunk: { request_id: c.logs.request_id, data: Buffer.from([0xff, 0x00, 0x41]) },
          });
          agent.send({
            log_chunk: { request_id: c.logs.request_id, data: Buffer.from('end\n'), eof: true },
          });
        }
      },
    });
    const originClient = clientOf(a, origin);
    const shim = originClient.connect('virtual-node', { onPodStatus: (e) => statuses.push(e) });
    await agent.waitConnected();
    await shim.waitConnected();
    expect(agent.lastWelcome?.broker_id).toBe('replica-b');
    expect(shim.lastWelcome?.broker_id).toBe('replica-a');

    const pod = { origin_cluster: 'ha-origin', namespace: 'ml', name: 'train-0', uid: 'u-ha-0' };
    const res = await originClient.createPod({ donor_cluster: 'ha-donor', pod, pod_json: '{}' });
    expect(res.remote_name).toBe('train-0');
    expect(commands.find((c) => c.create_pod?.pod?.uid === 'u-ha-0')?.origin_cluster).toBe(
      'ha-origin',
    );
    await eventually(() => {
      const st = statuses.find((s) => s.pod?.uid === 'u-ha-0');
      expect(st?.donor_cluster).toBe('ha-donor');
      expect(JSON.parse(st!.status_json)).toEqual({ phase: 'Pending' });
    });

    const bytes: Buffer[] = [];
    for await (const d of originClient.streamLogs({ donor_cluster: 'ha-donor', pod }))
      bytes.push(d);
    expect(Buffer.concat(bytes)).toEqual(
      Buffer.concat([Buffer.from([0xff, 0x00, 0x41]), Buffer.from('end\n')]),
    );
  });

  it('ends the older stream on the other replica when the agent reconnects elsewhere', async () => {
    await agent.close();
    const raw = rawClients(bb.address, mtls(bb.ca.certPem, donorId));
    const onB = new StreamProbe(raw.cluster.Connect());
    try {
      onB.send({ hello: { component: 'COMPONENT_AGENT' } });
      await onB.next((m) => m.msg === 'welcome');
      const onA = clientOf(a, donorId).connect('agent', {
        onCommand: (c) => {
          if (c.create_pod) {
            onA.send({
              command_result: {
                request_id: c.request_id,
                code: 0,
                create_pod: { remote_name: 'on-a' },
              },
            });
          }
        },
      });
      await onA.waitConnected();
      const end = await onB.end();
      expect(end.code).toBe(grpc.status.ABORTED);
      expect(end.details).toMatch(/another broker replica/);
      expect(bb.server.sessions().some((s) => s.clusterId === 'ha-donor')).toBe(false);
      // The evicted stream's clean-up did not take the new holder's record with it.
      expect((await a.core.getCluster('ha-donor')).connections.agent?.brokerId).toBe('replica-a');

      const origin = clientOf(bb, await joinAs(a, 'ha-origin-2'));
      await a.core.createPeering({ origin: 'ha-origin-2', donor: 'ha-donor' });
      const pod = { origin_cluster: 'ha-origin-2', namespace: 'ml', name: 'p', uid: 'u-ha-2' };
      // Sent through replica B, now answered by the agent on replica A.
      expect(
        (await origin.createPod({ donor_cluster: 'ha-donor', pod, pod_json: '{}' })).remote_name,
      ).toBe('on-a');

      await onA.close();
      const err = await origin.createPod({ donor_cluster: 'ha-donor', pod, pod_json: '{}' }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(SpillwayError);
      expect((err as SpillwayError).code).toBe('UNAVAILABLE');
      expect((err as SpillwayError).message).toBe('donor ha-donor is not connected');
    } finally {
      onB.close();
      raw.close();
    }
  });
});
