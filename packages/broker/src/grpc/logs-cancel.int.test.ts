import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { BrokerClient, type ClusterStream, type JoinedIdentity } from '@spillway/api';
import { createCertificateAuthority } from '@spillway/common';
import { RedisRouter } from './router.js';
import {
  SERVER_NAME,
  joinAs,
  quietLogger,
  startBroker,
  type BrokerUnderTest,
} from '../../test-support/grpc/harness.js';

/**
 * `kubectl logs -f` ends on the donor when its reader goes away: the broker tells the donor's
 * agent to cancel the streaming command. Real mTLS gRPC on 127.0.0.1; the "agent" is a real
 * Connect stream that pushes log chunks until it is told to stop, as the agent does.
 */

const REDIS_URL = 'redis://127.0.0.1:6379';
const here = dirname(fileURLToPath(import.meta.url));

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function eventually<T>(fn: () => Promise<T> | T, timeoutMs = 20_000): Promise<T> {
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

function clientOf(b: BrokerUnderTest, id: JoinedIdentity): BrokerClient {
  const c = new BrokerClient({
    address: b.address,
    caPem: b.ca.certPem,
    certPem: id.certPem,
    keyPem: id.keyPem,
    serverName: SERVER_NAME,
  });
  cleanups.push(() => c.close());
  return c;
}

/** A donor agent whose every logs command streams a chunk every 20 ms until cancelled. */
class FollowingAgent {
  readonly stream: ClusterStream;
  readonly started: string[] = [];
  readonly cancels: string[] = [];
  /** The log streams under way, by request id. */
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(client: BrokerClient) {
    this.stream = client.connect(
      'agent',
      {
        onCommand: (c) => {
          if (c.op === 'logs' && c.logs) {
            const id = c.logs.request_id;
            this.started.push(id);
            let n = 0;
            this.timers.set(
              id,
              setInterval(() => {
                this.stream.send({
                  log_chunk: { request_id: id, data: Buffer.from(`line ${++n}\n`) },
                });
              }, 20),
            );
          } else if (c.op === 'cancel_request_id') {
            const id = c.cancel_request_id ?? '';
            this.cancels.push(id);
            clearInterval(this.timers.get(id));
            this.timers.delete(id);
          }
        },
        onDisconnected: () => this.stopAll(),
      },
      { heartbeatIntervalMs: 300 },
    );
    cleanups.push(() => this.stopAll());
  }

  stopAll(): void {
    for (const t of this.timers.values()) clearInterval(t);
    this.timers.clear();
  }

  get following(): number {
    return this.timers.size;
  }
}

const POD = { namespace: 'ml', name: 'train-0', uid: 'u-train-0' };

async function singleBroker(tag: string): Promise<{
  b: BrokerUnderTest;
  origin: JoinedIdentity;
  agent: FollowingAgent;
}> {
  const b = await startBroker({
    heartbeatIntervalMs: 300,
    heartbeatTimeoutMs: 3_000,
    commandTimeoutMs: 5_000,
  });
  cleanups.push(() => b.stop());
  const origin = await joinAs(b, `${tag}-o`, 'origin');
  const donor = await joinAs(b, `${tag}-d`, 'donor');
  await b.core.createPeering({ origin: `${tag}-o`, donor: `${tag}-d` });
  const agent = new FollowingAgent(clientOf(b, donor));
  await agent.stream.waitConnected();
  return { b, origin, agent };
}

describe('a followed log ends on the donor when its reader goes', () => {
  it('cancels the donor stream when the caller stops reading (kubectl went away)', async () => {
    const { b, origin, agent } = await singleBroker('lc1');
    const abort = new AbortController();
    const got: string[] = [];
    for await (const d of clientOf(b, origin).streamLogs(
      { donor_cluster: 'lc1-d', pod: { origin_cluster: 'lc1-o', ...POD }, follow: true },
      { signal: abort.signal },
    )) {
      got.push(d.toString());
      if (got.length === 3) abort.abort();
    }
    expect(got.join('')).toMatch(/^line 1\nline 2\nline 3\n/);
    await eventually(() => expect(agent.cancels).toEqual(agent.started));
    expect(agent.started).toHaveLength(1);
    expect(agent.following).toBe(0);
  });

  it('cancels it when the shim process dies mid-stream (its call is gone)', async () => {
    const { b, origin, agent } = await singleBroker('lc2');
    const child = readerProcess(b, origin, 'lc2');
    await eventually(() => expect(child.lines).toBeGreaterThanOrEqual(2));
    expect(agent.following).toBe(1);
    child.proc.kill('SIGKILL');
    await eventually(() => expect(agent.cancels).toEqual(agent.started));
    expect(agent.following).toBe(0);
  });

  it('cancels a stream whose donor did not answer in time, so it cannot start late', async () => {
    const b = await startBroker({
      heartbeatIntervalMs: 300,
      heartbeatTimeoutMs: 3_000,
      commandTimeoutMs: 500,
    });
    cleanups.push(() => b.stop());
    const origin = await joinAs(b, 'lc3-o', 'origin');
    const donor = await joinAs(b, 'lc3-d', 'donor');
    await b.core.createPeering({ origin: 'lc3-o', donor: 'lc3-d' });
    const asked: string[] = [];
    const cancels: string[] = [];
    const silent = clientOf(b, donor).connect('agent', {
      onCommand: (c) => {
        if (c.op === 'logs') asked.push(c.logs!.request_id);
        if (c.op === 'cancel_request_id') cancels.push(c.cancel_request_id!);
      },
    });
    await silent.waitConnected();
    const err = await (async () => {
      for await (const _ of clientOf(b, origin).streamLogs({
        donor_cluster: 'lc3-d',
        pod: { origin_cluster: 'lc3-o', ...POD },
        follow: true,
      }));
    })().then(
      () => undefined,
      (e: unknown) => e as { code?: string },
    );
    expect(err?.code).toBe('TIMEOUT');
    await eventually(() => expect(cancels).toEqual(asked));
    expect(asked).toHaveLength(1);
  });
});

describe('across replicas', () => {
  it('the replica holding the agent cancels a stream whose asking replica is gone', async () => {
    const prefix = `spillway-test-lc-${randomBytes(4).toString('hex')}`;
    const admin = new Redis(REDIS_URL);
    cleanups.push(async () => {
      const keys = await admin.keys(`${prefix}*`);
      if (keys.length > 0) await admin.del(...keys);
      await admin.quit();
    });
    const routerFactory = (brokerId: string): RedisRouter => {
      const conn = new Redis(REDIS_URL);
      cleanups.push(() => conn.quit());
      return new RedisRouter({ redis: conn, brokerId, keyPrefix: prefix, logger: quietLogger() });
    };
    const ca = createCertificateAuthority({ commonName: 'Spillway logs-cancel test CA' });
    const common = {
      ca,
      store: { kind: 'redis' as const, url: REDIS_URL, prefix: `${prefix}:store:` },
      router: routerFactory,
      heartbeatIntervalMs: 300,
      heartbeatTimeoutMs: 3_000,
      commandTimeoutMs: 5_000,
    };
    const a = await startBroker({ ...common, brokerId: 'lc-replica-a' });
    cleanups.push(() => a.stop());
    const bb = await startBroker({ ...common, brokerId: 'lc-replica-b' });
    cleanups.push(() => bb.stop());
    const origin = await joinAs(a, 'lc4-o', 'origin');
    const donor = await joinAs(a, 'lc4-d', 'donor');
    await a.core.createPeering({ origin: 'lc4-o', donor: 'lc4-d' });
    const agent = new FollowingAgent(clientOf(bb, donor));
    await agent.stream.waitConnected();
    expect(agent.stream.lastWelcome?.broker_id).toBe('lc-replica-b');

    // The shim's log call is on replica A, the donor's agent on replica B.
    const child = readerProcess(a, origin, 'lc4');
    await eventually(() => expect(child.lines).toBeGreaterThanOrEqual(2));
    expect(agent.started).toHaveLength(1);
    expect(agent.started[0]).toMatch(/^lc-replica-a~/);
    // Replica A goes; nobody subscribes to its channel any more. B hears no one for the
    // chunks it routes there and cancels the stream on the agent.
    await a.server.stop(200);
    await eventually(() => expect(agent.cancels).toEqual(agent.started));
    expect(agent.following).toBe(0);
    child.proc.kill('SIGKILL');
  });
});

/**
 * A separate process that follows a log through the broker and prints a dot per chunk: one
 * that can be killed outright, as a shim process dies, with no goodbye on its connection.
 */
function readerProcess(
  b: BrokerUnderTest,
  id: JoinedIdentity,
  tag: string,
): { proc: ChildProcess; lines: number } {
  const script = `
    import { BrokerClient } from '@spillway/api';
    const c = new BrokerClient(JSON.parse(process.env.SPILLWAY_TEST_CLIENT));
    for await (const _ of c.streamLogs(JSON.parse(process.env.SPILLWAY_TEST_REQ)))
      process.stdout.write('.');
  `;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], {
    cwd: here,
    env: {
      ...process.env,
      SPILLWAY_TEST_CLIENT: JSON.stringify({
        address: b.address,
        caPem: b.ca.certPem,
        certPem: id.certPem,
        keyPem: id.keyPem,
        serverName: SERVER_NAME,
      }),
      SPILLWAY_TEST_REQ: JSON.stringify({
        donor_cluster: `${tag}-d`,
        pod: { origin_cluster: `${tag}-o`, ...POD },
        follow: true,
      }),
    },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const out = { proc, lines: 0 };
  proc.stdout.on('data', (d: Buffer) => (out.lines += d.length));
  cleanups.push(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  return out;
}
