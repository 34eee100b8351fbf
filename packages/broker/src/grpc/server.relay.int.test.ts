// The broker's gRPC layer: placement and the pod relay. Every identity is obtained through Join, as
// clusters do. Shared setup: test-support/grpc/suite.ts.
import * as grpc from '@grpc/grpc-js';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type ClusterStream,
  type Command__Output,
  type JoinedIdentity,
  type PodEventReport__Output,
  type PodStatusEvent__Output,
} from '@spillway/api';
import { joinAs, mtls } from '../../test-support/grpc/harness.js';
import {
  HEARTBEAT_MS,
  COMMAND_TIMEOUT_MS,
  eventually,
  placeReq,
  rejection,
  serverSuite,
} from '../../test-support/grpc/suite.js';
const bed = serverSuite();
const { client, raw, probe, hello } = bed;

describe('placement and pod relay', () => {
  let origin: JoinedIdentity;
  let donor: JoinedIdentity;
  let agent: ClusterStream;
  let shim: ClusterStream;
  const commands: Command__Output[] = [];
  const statuses: PodStatusEvent__Output[] = [];
  const events: PodEventReport__Output[] = [];

  beforeAll(async () => {
    origin = await joinAs(bed.b, 'rl-o');
    donor = await joinAs(bed.b, 'rl-d');
    await joinAs(bed.b, 'rl-x');
    const donorClient = client(donor);
    agent = donorClient.connect(
      'agent',
      {
        onConnected: (s) => {
          s.send({
            capacity: {
              full: true,
              sequence: 1,
              nodes: [
                {
                  name: 'gpu-1',
                  gpus: { 'nvidia.com/gpu': { allocatable: 4, free: 4 } },
                  ready: true,
                },
              ],
            },
          });
        },
        onCommand: (c) => {
          commands.push(c);
          const s = agent;
          if (c.op === 'create_pod' && c.create_pod) {
            const pod = c.create_pod.pod!;
            if (pod.name === 'refused') {
              s.send({
                command_result: {
                  request_id: c.request_id,
                  code: grpc.status.FAILED_PRECONDITION,
                  reason: 'POD_REFUSED',
                  message: 'hostPath volumes are not allowed',
                },
              });
              return;
            }
            s.send({
              command_result: {
                request_id: c.request_id,
                code: 0,
                create_pod: { remote_namespace: 'spillway-rl-o', remote_name: pod.name },
              },
            });
            s.send({
              pod_status: {
                pod,
                // A donor cannot claim to be someone else: the broker sets this.
                donor_cluster: 'rl-x',
                remote_namespace: 'spillway-rl-o',
                remote_name: pod.name,
                node_name: 'gpu-1',
                status_json: JSON.stringify({ phase: 'Running' }),
              },
            });
          } else if (c.op === 'list_pods') {
            s.send({
              command_result: {
                request_id: c.request_id,
                code: 0,
                list_pods: {
                  pods: [
                    { pod: { origin_cluster: 'rl-o', namespace: 'ml', name: 'a', uid: 'ua' } },
                    { pod: { origin_cluster: 'rl-x', namespace: 'ml', name: 'b', uid: 'ub' } },
                  ],
                },
              },
            });
          } else if (c.op === 'logs' && c.logs) {
            const rid = c.logs.request_id;
            s.send({ log_chunk: { request_id: rid, data: Buffer.from('line 1\n') } });
            s.send({ log_chunk: { request_id: rid, data: Buffer.from('line 2\n'), eof: true } });
          }
          // delete_pod goes unanswered: the broker must time out.
        },
      },
      { heartbeatIntervalMs: HEARTBEAT_MS },
    );
    shim = client(origin).connect('virtual-node', {
      onPodStatus: (e) => statuses.push(e),
      onPodEvent: (e) => events.push(e),
    });
    await agent.waitConnected();
    await shim.waitConnected();
  });

  it('pushes a new peering to the origin’s shim', async () => {
    const states: string[][] = [];
    const c = client(origin);
    const s = c.connect('virtual-node', {
      onPeerings: (p) => states.push(p.as_origin.map((x) => x.donor_cluster)),
    });
    await s.waitConnected();
    await bed.b.core.createPeering({ origin: 'rl-o', donor: 'rl-d' });
    await eventually(() => expect(states.at(-1)).toEqual(['rl-d']));
    await s.close();
    // The replaced shim stream (same cluster and component) reconnects on its own.
    await shim.waitConnected(10_000);
  });

  it('places on the peered donor, releases, and answers a misfit with a reason', async () => {
    const c = client(origin);
    await eventually(async () => {
      const res = await c.place({ ...placeReq('rl-o', 'fit'), gpus: 2 });
      expect(res.reservation?.donor_cluster).toBe('rl-d');
      expect(res.reservation?.node).toBe('gpu-1');
      expect(res.reservation?.pod?.origin_cluster).toBe('rl-o');
      expect(await c.release({ reservation_id: res.reservation!.id })).toEqual({ released: true });
    });
    const misfit = await c.place({ ...placeReq('rl-o', 'huge'), gpus: 16 });
    expect(misfit.reservation).toBeNull();
    expect(misfit.reason_code).toBe('NO_FIT');
    expect(misfit.reason).not.toBe('');
  });

  it('relays CreatePod to the donor agent and the pod status back to the shim', async () => {
    const c = client(origin);
    const pod = { origin_cluster: 'rl-o', namespace: 'ml', name: 'train-1', uid: 'u-train-1' };
    const res = await c.createPod({
      donor_cluster: 'rl-d',
      pod,
      pod_json: JSON.stringify({ metadata: {} }),
    });
    expect(res).toEqual({
      remote_namespace: 'spillway-rl-o',
      remote_name: 'train-1',
      already_existed: false,
    });
    const cmd = commands.find((x) => x.create_pod?.pod?.uid === 'u-train-1');
    expect(cmd?.origin_cluster).toBe('rl-o');
    await eventually(() => {
      const st = statuses.find((s) => s.pod?.uid === 'u-train-1');
      expect(st?.donor_cluster).toBe('rl-d');
      expect(JSON.parse(st!.status_json)).toEqual({ phase: 'Running' });
    });
  });

  it('maps a donor’s refusal to its stable code', async () => {
    const c = client(origin);
    const pod = { origin_cluster: 'rl-o', namespace: 'ml', name: 'refused', uid: 'u-refused' };
    const err = await rejection(c.createPod({ donor_cluster: 'rl-d', pod, pod_json: '{}' }));
    expect(err.code).toBe('POD_REFUSED');
    expect(err.message).toMatch(/hostPath/);
  });

  it('passes on only the caller’s pods from ListPods, and streams logs to eof', async () => {
    const c = client(origin);
    const list = await c.listPods({ donor_cluster: 'rl-d' });
    expect(list.pods.map((p) => p.pod?.name)).toEqual(['a']);
    const chunks: string[] = [];
    for await (const data of c.streamLogs({
      donor_cluster: 'rl-d',
      pod: { origin_cluster: 'rl-o', namespace: 'ml', name: 'train-1', uid: 'u-train-1' },
      follow: true,
    })) {
      chunks.push(data.toString());
    }
    expect(chunks.join('')).toBe('line 1\nline 2\n');
  });

  it('lets no cluster act for another, or reach an unpeered donor', async () => {
    const c = client(origin);
    const foreign = { origin_cluster: 'rl-x', namespace: 'ml', name: 'x', uid: 'u-x' };
    const e1 = await rejection(
      c.createPod({ donor_cluster: 'rl-d', pod: foreign, pod_json: '{}' }),
    );
    expect(e1.code).toBe('PERMISSION_DENIED');
    expect(e1.field).toBe('pod.origin_cluster');
    const e2 = await rejection(c.place(placeReq('rl-x')));
    expect(e2.code).toBe('PERMISSION_DENIED');
    const e3 = await rejection(c.deletePod({ donor_cluster: 'rl-d', pod: foreign }));
    expect(e3.code).toBe('PERMISSION_DENIED');
    const own = { origin_cluster: 'rl-o', namespace: 'ml', name: 'y', uid: 'u-y' };
    const e4 = await rejection(c.createPod({ donor_cluster: 'rl-x', pod: own, pod_json: '{}' }));
    expect(e4.code).toBe('NO_PEERING');
    expect(
      commands.some((x) => x.create_pod?.pod?.uid === 'u-x' || x.create_pod?.pod?.uid === 'u-y'),
    ).toBe(false);
  });

  it('relays a shim’s offload sync to the donor and a donor’s pod events to the shim', async () => {
    const pod = { origin_cluster: 'rl-o', namespace: 'ml', name: 'train-1', uid: 'u-train-1' };
    const pods = [pod];
    expect(shim.send({ offload_sync: { donor_cluster: 'rl-d', pods, as_of_unix_ms: 1234 } })).toBe(
      true,
    );
    await eventually(() => {
      const sync = commands.find((c) => c.op === 'offload_sync');
      expect(sync?.origin_cluster).toBe('rl-o');
      expect(sync?.offload_sync?.pods.map((p) => p.uid)).toEqual(['u-train-1']);
      expect(sync?.offload_sync?.as_of_unix_ms).toBe('1234');
    });
    agent.send({
      pod_event: {
        pod,
        type: 'Warning',
        reason: 'BackOff',
        message: 'Back-off pulling image',
        count: 2,
      },
    });
    await eventually(() => {
      const e = events.find((x) => x.reason === 'BackOff');
      expect(e?.donor_cluster).toBe('rl-d');
      expect(e?.count).toBe(2);
    });
    // A shim listing another origin's pods is cut off rather than relayed.
    const id = await joinAs(bed.b, 'rl-y');
    const p = probe(raw(mtls(bed.b.ca.certPem, id)));
    await hello(p, 'COMPONENT_VIRTUAL_NODE');
    p.send({
      offload_sync: {
        donor_cluster: 'rl-d',
        pods: [{ origin_cluster: 'rl-o', namespace: 'ml', name: 'x', uid: 'u-x' }],
      },
    });
    const end = await p.end();
    expect(end.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(end.field).toBe('offload_sync.pods[0].origin_cluster');
  });

  it('times out a command the donor never answers, and reports a donor that is gone', async () => {
    const c = client(origin);
    const pod = { origin_cluster: 'rl-o', namespace: 'ml', name: 'train-1', uid: 'u-train-1' };
    const started = Date.now();
    const e1 = await rejection(c.deletePod({ donor_cluster: 'rl-d', pod }));
    expect(e1.code).toBe('TIMEOUT');
    expect(Date.now() - started).toBeGreaterThanOrEqual(COMMAND_TIMEOUT_MS - 50);
    await agent.close();
    const e2 = await rejection(c.createPod({ donor_cluster: 'rl-d', pod, pod_json: '{}' }));
    expect(e2.code).toBe('UNAVAILABLE');
    expect(e2.message).toBe('donor rl-d is not connected');
  });
});
