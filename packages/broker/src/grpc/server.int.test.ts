import { X509Certificate, createPrivateKey } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BrokerClient,
  joinCluster,
  type ClusterStream,
  type Command__Output,
  type JoinedIdentity,
  type PodEventReport__Output,
  type PodStatusEvent__Output,
} from '@spillway/api';
import {
  SpillwayError,
  createCertificateAuthority,
  createCsr,
  generateKeyPair,
  inspectCertificate,
  issueCertificate,
  verifyCertificate,
} from '@spillway/common';
import {
  SERVER_NAME,
  joinAs,
  mtls,
  rawClients,
  serverOnlyTls,
  servingPair,
  startBroker,
  type BrokerUnderTest,
} from '../../test-support/grpc/harness.js';
import { StreamProbe } from '../../test-support/grpc/stream-probe.js';

/**
 * The broker's gRPC layer against the real Core on a real SQLite store, over real mTLS on
 * 127.0.0.1 port 0. Every identity is obtained through Join, as clusters do.
 */

const HEARTBEAT_MS = 300;
const TIMEOUT_MS = 1_500;
const COMMAND_TIMEOUT_MS = 1_500;

let b: BrokerUnderTest;
const opened: { close(): unknown }[] = [];

beforeAll(async () => {
  b = await startBroker({
    heartbeatIntervalMs: HEARTBEAT_MS,
    heartbeatTimeoutMs: TIMEOUT_MS,
    commandTimeoutMs: COMMAND_TIMEOUT_MS,
  });
});

afterAll(async () => {
  for (const o of opened.reverse()) await o.close();
  await b.stop();
});

function client(id: { certPem: string; keyPem: string }): BrokerClient {
  const c = new BrokerClient({
    address: b.address,
    caPem: b.ca.certPem,
    certPem: id.certPem,
    keyPem: id.keyPem,
    serverName: SERVER_NAME,
    callTimeoutMs: 5_000,
  });
  opened.push(c);
  return c;
}

function raw(creds: grpc.ChannelCredentials): ReturnType<typeof rawClients> {
  const r = rawClients(b.address, creds);
  opened.push(r);
  return r;
}

function probe(r: ReturnType<typeof rawClients>): StreamProbe {
  const p = new StreamProbe(r.cluster.Connect());
  opened.push(p);
  return p;
}

async function hello(
  p: StreamProbe,
  component: 'COMPONENT_AGENT' | 'COMPONENT_VIRTUAL_NODE',
): Promise<void> {
  p.send({ hello: { component, version: 'test' } });
  await p.next((m) => m.msg === 'welcome');
}

async function rejection(p: Promise<unknown>): Promise<SpillwayError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof SpillwayError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

/** A raw unary call's status, for clients that are not the Spillway client. */
function unaryStatus<Req>(
  fn: (req: Req, cb: (err: grpc.ServiceError | null) => void) => unknown,
  req: Req,
): Promise<{ code: grpc.status; spillwayCode: unknown; field: unknown; details: string }> {
  return new Promise((resolve) => {
    fn(req, (err) => {
      resolve({
        code: err?.code ?? grpc.status.OK,
        spillwayCode: err?.metadata.get('spillway-error-code')[0],
        field: err?.metadata.get('spillway-error-field')[0],
        details: err?.details ?? '',
      });
    });
  });
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

const placeReq = (origin: string, name = 'train-0') => ({
  pod: { origin_cluster: origin, namespace: 'ml', name, uid: `uid-${name}` },
  resource_name: 'nvidia.com/gpu',
  gpus: 1,
});

describe('Join', () => {
  it('issues a certificate whose identity is the token’s cluster; a token works once', async () => {
    const { token } = await b.core.createJoinToken({ clusterId: 'join-a', role: 'both' });
    const keys = generateKeyPair();
    const id = await joinCluster({
      brokerAddress: b.address,
      caPem: b.ca.certPem,
      token,
      privateKeyPem: keys.privateKeyPem,
      serverName: SERVER_NAME,
    });
    expect(id.clusterId).toBe('join-a');
    expect(id.keyPem).toBe(keys.privateKeyPem);
    expect(id.caPem).toBe(b.ca.certPem);
    const info = verifyCertificate(id.certPem, { caCertPem: b.ca.certPem, requireKind: 'cluster' });
    expect(info.identity).toEqual({ kind: 'cluster', name: 'join-a' });
    expect(new X509Certificate(id.certPem).checkPrivateKey(createPrivateKey(id.keyPem))).toBe(true);

    const again = await rejection(
      joinCluster({
        brokerAddress: b.address,
        caPem: b.ca.certPem,
        token,
        serverName: SERVER_NAME,
      }),
    );
    expect(again.code).toBe('TOKEN_INVALID');
  });

  it('refuses a malformed CSR without burning the token', async () => {
    const { token } = await b.core.createJoinToken({ clusterId: 'join-b', role: 'both' });
    const r = raw(serverOnlyTls(b.ca.certPem));
    const st = await unaryStatus((req, cb) => r.cluster.Join(req, cb), {
      token,
      csr_pem: 'not a csr',
    });
    expect(st.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(st.field).toBe('csr_pem');
    const id = await joinCluster({
      brokerAddress: b.address,
      caPem: b.ca.certPem,
      token,
      serverName: SERVER_NAME,
    });
    expect(id.clusterId).toBe('join-b');
  });

  it('generates the key locally when none is given, and renews to a new certificate', async () => {
    const id = await joinAs(b, 'join-c');
    expect(id.keyPem).toContain('PRIVATE KEY');
    const c = client(id);
    const renewed = await c.renew();
    expect(renewed.keyPem).not.toBe(id.keyPem);
    const before = inspectCertificate(id.certPem);
    const after = inspectCertificate(renewed.certPem);
    expect(after.identity).toEqual({ kind: 'cluster', name: 'join-c' });
    expect(after.serial).not.toBe(before.serial);
    // The client switched to the renewed identity: a call still authenticates.
    const res = await c.place(placeReq('join-c'));
    expect(res.reason_code).toBe('NO_PEERING');
  });
});

describe('authentication', () => {
  let origin: JoinedIdentity;
  beforeAll(async () => {
    origin = await joinAs(b, 'auth-o');
  });

  it('welcomes a joined cluster under the identity of its certificate', async () => {
    const c = client(origin);
    let peerings = 0;
    const s = c.connect(
      'agent',
      { onPeerings: () => peerings++ },
      { heartbeatIntervalMs: HEARTBEAT_MS },
    );
    await s.waitConnected(5_000);
    expect(s.lastWelcome?.cluster_id).toBe('auth-o');
    expect(s.lastWelcome?.broker_id).toBe(b.core.brokerId);
    expect(Number(s.lastWelcome?.heartbeat_timeout_ms)).toBe(TIMEOUT_MS);
    await eventually(() => expect(peerings).toBeGreaterThan(0));
    const view = await b.core.getCluster('auth-o');
    expect(view.connections.agent?.brokerId).toBe(b.core.brokerId);
    await s.close();
    await eventually(async () =>
      expect((await b.core.getCluster('auth-o')).connections.agent).toBeUndefined(),
    );
  });

  it('allows only Join without a client certificate, on the same port', async () => {
    const r = raw(serverOnlyTls(b.ca.certPem));
    const p = probe(r);
    p.send({ hello: { component: 'COMPONENT_AGENT' } });
    const end = await p.end();
    expect(end.code).toBe(grpc.status.UNAUTHENTICATED);
    const place = await unaryStatus((req, cb) => r.placement.Place(req, cb), placeReq('auth-o'));
    expect(place.code).toBe(grpc.status.UNAUTHENTICATED);
    const renew = await unaryStatus((req, cb) => r.cluster.Renew(req, cb), { csr_pem: 'x' });
    expect(renew.code).toBe(grpc.status.UNAUTHENTICATED);
    const list = await unaryStatus((req, cb) => r.pod.ListPods(req, cb), {
      donor_cluster: 'auth-o',
    });
    expect(list.code).toBe(grpc.status.UNAUTHENTICATED);
    // Same channel, same port: Join goes through.
    const { token } = await b.core.createJoinToken({ clusterId: 'auth-j', role: 'both' });
    const csr = createCsr(generateKeyPair().privateKeyPem, 'x');
    const join = await unaryStatus((req, cb) => r.cluster.Join(req, cb), { token, csr_pem: csr });
    expect(join.code).toBe(grpc.status.OK);
  });

  it('refuses a certificate from another CA, even one naming a joined cluster', async () => {
    const other = createCertificateAuthority({ commonName: 'Not Spillway' });
    const keys = generateKeyPair();
    const forged = issueCertificate({
      ca: other,
      csrPem: createCsr(keys.privateKeyPem, 'x'),
      profile: 'client',
      identity: { kind: 'cluster', name: 'auth-o' },
      validSeconds: 3600,
    });
    const r = raw(mtls(b.ca.certPem, { certPem: forged.certPem, keyPem: keys.privateKeyPem }));
    const p = probe(r);
    p.send({ hello: { component: 'COMPONENT_AGENT' } });
    expect((await p.end()).code).toBe(grpc.status.UNAUTHENTICATED);
    const place = await unaryStatus((req, cb) => r.placement.Place(req, cb), placeReq('auth-o'));
    expect(place.code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('refuses an expired certificate from the broker’s own CA', async () => {
    const keys = generateKeyPair();
    const expired = issueCertificate({
      ca: b.ca,
      csrPem: createCsr(keys.privateKeyPem, 'x'),
      profile: 'client',
      identity: { kind: 'cluster', name: 'auth-o' },
      validSeconds: 60,
      now: new Date(Date.now() - 3_600_000),
    });
    const r = raw(mtls(b.ca.certPem, { certPem: expired.certPem, keyPem: keys.privateKeyPem }));
    const place = await unaryStatus((req, cb) => r.placement.Place(req, cb), placeReq('auth-o'));
    expect(place.code).toBe(grpc.status.UNAUTHENTICATED);
    const p = probe(r);
    p.send({ hello: { component: 'COMPONENT_AGENT' } });
    expect((await p.end()).code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('refuses a CA-signed certificate that carries no cluster identity', async () => {
    const keys = generateKeyPair();
    const admin = issueCertificate({
      ca: b.ca,
      csrPem: createCsr(keys.privateKeyPem, 'x'),
      profile: 'client',
      identity: { kind: 'admin', name: 'ops' },
      validSeconds: 3600,
    });
    const r = raw(mtls(b.ca.certPem, { certPem: admin.certPem, keyPem: keys.privateKeyPem }));
    const place = await unaryStatus((req, cb) => r.placement.Place(req, cb), placeReq('ops'));
    expect(place.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(place.spillwayCode).toBe('CERT_UNTRUSTED');
  });

  it('ends the live stream of a removed cluster and refuses its certificate afterwards', async () => {
    const id = await joinAs(b, 'auth-r');
    const r = raw(mtls(b.ca.certPem, id));
    const p = probe(r);
    await hello(p, 'COMPONENT_AGENT');
    await b.core.removeCluster('auth-r');
    const end = await p.end();
    expect(end.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(end.spillwayCode).toBe('CERT_REVOKED');
    const place = await unaryStatus((req, cb) => r.placement.Place(req, cb), placeReq('auth-r'));
    expect(place.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(place.spillwayCode).toBe('CERT_REVOKED');
  });
});

describe('Connect streams', () => {
  it('lets no stream change its identity or speak for another component', async () => {
    const id = await joinAs(b, 'conn-a');
    const r = raw(mtls(b.ca.certPem, id));
    const p = probe(r);
    await hello(p, 'COMPONENT_VIRTUAL_NODE');
    const welcome = await p.next((m) => m.msg === 'welcome');
    expect(welcome.welcome?.cluster_id).toBe('conn-a');
    await p.next((m) => m.msg === 'peerings');
    // A shim's stream may not report capacity: that is the agent's.
    p.send({ capacity: { full: true, nodes: [], sequence: 1 } });
    const end = await p.end();
    expect(end.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(end.field).toBe('capacity');

    const p2 = probe(r);
    await hello(p2, 'COMPONENT_AGENT');
    p2.send({ hello: { component: 'COMPONENT_VIRTUAL_NODE' } });
    const end2 = await p2.end();
    expect(end2.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(end2.field).toBe('hello');

    const p3 = probe(r);
    p3.send({ heartbeat: { sent_unix_ms: 1 } });
    const end3 = await p3.end();
    expect(end3.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(end3.details).toMatch(/first message on a stream must be Hello/);
  });

  it('replaces the first stream when a second opens for the same cluster and component', async () => {
    const id = await joinAs(b, 'conn-b');
    const r = raw(mtls(b.ca.certPem, id));
    const first = probe(r);
    await hello(first, 'COMPONENT_AGENT');
    const second = probe(r);
    await hello(second, 'COMPONENT_AGENT');
    const end = await first.end();
    expect(end.code).toBe(grpc.status.ABORTED);
    expect(end.details).toMatch(/replaced/);
    // The survivor keeps its connection record and keeps receiving heartbeats.
    const seen = second.messages.length;
    await second.next((m) => m.msg === 'heartbeat', 2_000, seen);
    expect(second.isEnded).toBe(false);
    expect((await b.core.getCluster('conn-b')).connections.agent).toBeDefined();
    // A different component of the same cluster is a different stream.
    const shim = probe(r);
    await hello(shim, 'COMPONENT_VIRTUAL_NODE');
    expect(second.isEnded).toBe(false);
  });

  it('ends a stream that stays silent for the heartbeat timeout, and keeps one that beats', async () => {
    const id = await joinAs(b, 'conn-c');
    const r = raw(mtls(b.ca.certPem, id));
    const silent = probe(r);
    const started = Date.now();
    await hello(silent, 'COMPONENT_AGENT');
    const end = await silent.end(TIMEOUT_MS * 4);
    expect(end.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);

    const beating = probe(r);
    await hello(beating, 'COMPONENT_AGENT');
    const timer = setInterval(
      () => beating.send({ heartbeat: { sent_unix_ms: Date.now() } }),
      HEARTBEAT_MS,
    );
    try {
      await new Promise((res) => setTimeout(res, TIMEOUT_MS * 2));
      expect(beating.isEnded).toBe(false);
    } finally {
      clearInterval(timer);
    }
  });

  it('refuses an invalid capacity report, keeping the inventory it had', async () => {
    const id = await joinAs(b, 'conn-d');
    const r = raw(mtls(b.ca.certPem, id));
    const p = probe(r);
    await hello(p, 'COMPONENT_AGENT');
    const good = {
      name: 'gpu-1',
      gpus: { 'nvidia.com/gpu': { allocatable: 8, free: 8 } },
      ready: true,
    };
    p.send({ capacity: { full: true, nodes: [good], sequence: 1 } });
    await eventually(async () =>
      expect((await b.core.getInventory('conn-d'))?.nodes).toHaveLength(1),
    );
    p.send({
      capacity: {
        full: true,
        nodes: [{ ...good, gpus: { 'nvidia.com/gpu': { allocatable: 8, free: -3 } } }],
        sequence: 2,
      },
    });
    const end = await p.end();
    expect(end.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(end.field).toBe('capacity.nodes[0].gpus[nvidia.com/gpu].free');
    const inv = await b.core.getInventory('conn-d');
    expect(inv?.nodes[0]?.gpus['nvidia.com/gpu']).toEqual({ allocatable: 8, free: 8 });
  });
});

describe('malformed and oversized input', () => {
  let id: JoinedIdentity;
  beforeAll(async () => {
    id = await joinAs(b, 'bad-a');
  });

  it('answers undecodable protobuf with INVALID_ARGUMENT and keeps serving', async () => {
    const creds = mtls(b.ca.certPem, id);
    const g = new grpc.Client(b.address, creds, { 'grpc.ssl_target_name_override': SERVER_NAME });
    opened.push(g);
    const ident = (x: Buffer): Buffer => x;
    // Field 1, length 5, but only one byte follows.
    const garbage = Buffer.from([0x0a, 0x05, 0x01]);
    const st = await new Promise<grpc.ServiceError | null>((resolve) =>
      g.makeUnaryRequest('/spillway.v1.PlacementService/Place', ident, ident, garbage, (err) =>
        resolve(err),
      ),
    );
    expect(st?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(st?.metadata.get('spillway-error-field')[0]).toBe('PlaceRequest');

    const stream = g.makeBidiStreamRequest('/spillway.v1.ClusterService/Connect', ident, ident);
    const ended = new Promise<grpc.StatusObject>((resolve) => stream.on('status', resolve));
    stream.on('error', () => undefined);
    stream.on('data', () => undefined);
    stream.write(garbage);
    expect((await ended).code).toBe(grpc.status.INVALID_ARGUMENT);

    const c = client(id);
    expect((await c.place(placeReq('bad-a'))).reason_code).toBe('NO_PEERING');
  });

  it('answers an oversized message with RESOURCE_EXHAUSTED and keeps serving', async () => {
    // A client without Spillway's send limit, so the broker's own limit is what refuses.
    const r = rawClients(b.address, mtls(b.ca.certPem, id));
    opened.push(r);
    const g = new grpc.Client(b.address, mtls(b.ca.certPem, id), {
      'grpc.ssl_target_name_override': SERVER_NAME,
    });
    opened.push(g);
    const big = Buffer.alloc(5 * 1024 * 1024, 0x41);
    const msg = Buffer.concat([Buffer.from([0x12]), varint(big.length), big]);
    const st = await new Promise<grpc.ServiceError | null>((resolve) =>
      g.makeUnaryRequest(
        '/spillway.v1.PlacementService/Place',
        (x: Buffer) => x,
        (x: Buffer) => x,
        msg,
        (err) => resolve(err),
      ),
    );
    expect(st?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    const ok = await unaryStatus((req, cb) => r.placement.Place(req, cb), placeReq('bad-a'));
    expect(ok.code).toBe(grpc.status.OK);
  });

  it('names the field of an absurd or missing value', async () => {
    const r = raw(mtls(b.ca.certPem, id));
    const cases: [object, string][] = [
      [{ ...placeReq('bad-a'), gpus: 0 }, 'gpus'],
      [{ ...placeReq('bad-a'), gpus: 2_000_000 }, 'gpus'],
      [{ ...placeReq('bad-a'), pod: undefined }, 'pod'],
      [{ ...placeReq('bad-a'), resource_name: 'nvidia.com/ gpu' }, 'resource_name'],
      [{ ...placeReq('bad-a'), cpu_millis: '-5' }, 'cpu_millis'],
    ];
    for (const [req, field] of cases) {
      const st = await unaryStatus((q, cb) => r.placement.Place(q, cb), req);
      expect(st.code, field).toBe(grpc.status.INVALID_ARGUMENT);
      expect(st.field).toBe(field);
    }
    const rel = await unaryStatus((q, cb) => r.placement.Release(q, cb), { reservation_id: '' });
    expect(rel.field).toBe('reservation_id');
  });
});

describe('placement and pod relay', () => {
  let origin: JoinedIdentity;
  let donor: JoinedIdentity;
  let agent: ClusterStream;
  let shim: ClusterStream;
  const commands: Command__Output[] = [];
  const statuses: PodStatusEvent__Output[] = [];
  const events: PodEventReport__Output[] = [];

  beforeAll(async () => {
    origin = await joinAs(b, 'rl-o');
    donor = await joinAs(b, 'rl-d');
    await joinAs(b, 'rl-x');
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
    await b.core.createPeering({ origin: 'rl-o', donor: 'rl-d' });
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
    const id = await joinAs(b, 'rl-y');
    const p = probe(raw(mtls(b.ca.certPem, id)));
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

describe('certificates and restarts', () => {
  it('serves a reloaded certificate to new connections without a restart', async () => {
    const seen: string[] = [];
    const watch = (): grpc.ChannelCredentials =>
      grpc.credentials.createSsl(Buffer.from(b.ca.certPem), null, null, {
        checkServerIdentity: (_host, cert) => {
          seen.push(cert.fingerprint256);
          return undefined;
        },
      });
    const id = await joinAs(b, 'cert-a');
    const live = probe(raw(mtls(b.ca.certPem, id)));
    await hello(live, 'COMPONENT_AGENT');
    const st1 = await unaryStatus(
      (q, cb) => raw(watch()).placement.Place(q, cb),
      placeReq('cert-a'),
    );
    expect(st1.code).toBe(grpc.status.UNAUTHENTICATED);
    const next = servingPair(b.ca);
    b.server.reloadCertificates({ serverCert: next.certPem, serverKey: next.keyPem });
    await unaryStatus((q, cb) => raw(watch()).placement.Place(q, cb), placeReq('cert-a'));
    expect(seen).toHaveLength(2);
    expect(seen[1]).toBe(new X509Certificate(next.certPem).fingerprint256);
    expect(seen[0]).not.toBe(seen[1]);
    expect(live.isEnded).toBe(false);
    // A broken pair is refused up front; the server keeps the one it has.
    expect(() =>
      b.server.reloadCertificates({ serverKey: generateKeyPair().privateKeyPem }),
    ).toThrow(/does not match/);
    const ok = await unaryStatus(
      (q, cb) => raw(mtls(b.ca.certPem, id)).placement.Place(q, cb),
      placeReq('cert-a'),
    );
    expect(ok.code).toBe(grpc.status.OK);
  });

  it('reconnects the client after the broker restarts, dropping sends meanwhile', async () => {
    const id = await joinAs(b, 'restart-a');
    const c = client(id);
    let connects = 0;
    let disconnects = 0;
    const s = c.connect(
      'agent',
      { onConnected: () => void connects++, onDisconnected: () => void disconnects++ },
      { heartbeatIntervalMs: HEARTBEAT_MS, backoff: { baseMs: 50, maxMs: 200 } },
    );
    await s.waitConnected();
    expect(connects).toBe(1);
    await b.server.stop(200);
    await eventually(() => expect(disconnects).toBe(1));
    expect(s.connected).toBe(false);
    expect(s.send({ heartbeat: { sent_unix_ms: 1 } })).toBe(false);
    await b.restart();
    await s.waitConnected(10_000);
    expect(connects).toBe(2);
    expect((await b.core.getCluster('restart-a')).connections.agent).toBeDefined();
  });
});

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}
