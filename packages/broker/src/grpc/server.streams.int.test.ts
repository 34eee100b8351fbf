// The broker's gRPC layer: Connect streams and malformed input. Every identity is obtained through Join, as
// clusters do. Shared setup: test-support/grpc/suite.ts.
import * as grpc from '@grpc/grpc-js';
import { beforeAll, describe, expect, it } from 'vitest';
import { type JoinedIdentity } from '@spillway/api';
import { SERVER_NAME, joinAs, mtls, rawClients } from '../../test-support/grpc/harness.js';
import {
  HEARTBEAT_MS,
  TIMEOUT_MS,
  eventually,
  placeReq,
  serverSuite,
  unaryStatus,
  varint,
} from '../../test-support/grpc/suite.js';
const bed = serverSuite();
const { client, raw, probe, hello } = bed;

describe('Connect streams', () => {
  it('lets no stream change its identity or speak for another component', async () => {
    const id = await joinAs(bed.b, 'conn-a');
    const r = raw(mtls(bed.b.ca.certPem, id));
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
    const id = await joinAs(bed.b, 'conn-b');
    const r = raw(mtls(bed.b.ca.certPem, id));
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
    expect((await bed.b.core.getCluster('conn-b')).connections.agent).toBeDefined();
    // A different component of the same cluster is a different stream.
    const shim = probe(r);
    await hello(shim, 'COMPONENT_VIRTUAL_NODE');
    expect(second.isEnded).toBe(false);
  });

  it('ends a stream that stays silent for the heartbeat timeout, and keeps one that beats', async () => {
    const id = await joinAs(bed.b, 'conn-c');
    const r = raw(mtls(bed.b.ca.certPem, id));
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
    const id = await joinAs(bed.b, 'conn-d');
    const r = raw(mtls(bed.b.ca.certPem, id));
    const p = probe(r);
    await hello(p, 'COMPONENT_AGENT');
    const good = {
      name: 'gpu-1',
      gpus: { 'nvidia.com/gpu': { allocatable: 8, free: 8 } },
      ready: true,
    };
    p.send({ capacity: { full: true, nodes: [good], sequence: 1 } });
    await eventually(async () =>
      expect((await bed.b.core.getInventory('conn-d'))?.nodes).toHaveLength(1),
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
    const inv = await bed.b.core.getInventory('conn-d');
    expect(inv?.nodes[0]?.gpus['nvidia.com/gpu']).toEqual({ allocatable: 8, free: 8 });
  });
});

describe('malformed and oversized input', () => {
  let id: JoinedIdentity;
  beforeAll(async () => {
    id = await joinAs(bed.b, 'bad-a');
  });

  it('answers undecodable protobuf with INVALID_ARGUMENT and keeps serving', async () => {
    const creds = mtls(bed.b.ca.certPem, id);
    const g = new grpc.Client(bed.b.address, creds, {
      'grpc.ssl_target_name_override': SERVER_NAME,
    });
    bed.closeAfter(g);
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
    const r = rawClients(bed.b.address, mtls(bed.b.ca.certPem, id));
    bed.closeAfter(r);
    const g = new grpc.Client(bed.b.address, mtls(bed.b.ca.certPem, id), {
      'grpc.ssl_target_name_override': SERVER_NAME,
    });
    bed.closeAfter(g);
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
    const r = raw(mtls(bed.b.ca.certPem, id));
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
