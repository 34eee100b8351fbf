import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CHANNEL_OPTIONS,
  MAX_MESSAGE_BYTES,
  loadSpillwayV1,
  type BrokerMessage__Output,
  type ClusterMessage,
  type JoinedIdentity,
} from '@spillway/api';
import { StreamProbe } from '../../test-support/grpc/stream-probe.js';
import {
  SERVER_NAME,
  joinAs,
  mtls,
  serverOnlyTls,
  startBroker,
  type BrokerUnderTest,
} from '../../test-support/grpc/harness.js';

/**
 * Hostile input to the broker's gRPC port: random and mutated protobuf bytes, and random
 * field values in well-formed messages, to Join, Renew, Place, Release, CreatePod,
 * DeletePod, ListPods and Connect, over real mTLS to the real core on SQLite. Invariants:
 * every call ends with a status (no hang, no crash), the server keeps serving, and a
 * refused call changes nothing in the store. SPILLWAY_FUZZ_RUNS sets the cases per
 * property (500 by default; 10,000 in the full run of docs/security.md).
 */

const RUNS = Number(process.env.SPILLWAY_FUZZ_RUNS ?? 500);
/** Generous: the full run shares two cores with everything else. */
const TIMEOUT_MS = 60_000 + RUNS * 40;
const CALL_DEADLINE_MS = 5_000;

let b: BrokerUnderTest;
let origin: JoinedIdentity;
let donor: JoinedIdentity;
let fuzzed: JoinedIdentity;
let donorStream: StreamProbe;
let originChannel: grpc.Client;
let anonChannel: grpc.Client;
const v1 = loadSpillwayV1();
const closers: (() => void)[] = [];

const options = {
  ...CHANNEL_OPTIONS,
  'grpc.ssl_target_name_override': SERVER_NAME,
  'grpc.default_authority': SERVER_NAME,
};

function channel(creds: grpc.ChannelCredentials): grpc.Client {
  const c = new grpc.Client(b.address, creds, options);
  closers.push(() => c.close());
  return c;
}

const METHODS = {
  Join: { path: '/spillway.v1.ClusterService/Join', def: v1.ClusterService.service.Join },
  Renew: { path: '/spillway.v1.ClusterService/Renew', def: v1.ClusterService.service.Renew },
  Place: { path: '/spillway.v1.PlacementService/Place', def: v1.PlacementService.service.Place },
  Release: {
    path: '/spillway.v1.PlacementService/Release',
    def: v1.PlacementService.service.Release,
  },
  CreatePod: { path: '/spillway.v1.PodService/CreatePod', def: v1.PodService.service.CreatePod },
  DeletePod: { path: '/spillway.v1.PodService/DeletePod', def: v1.PodService.service.DeletePod },
  ListPods: { path: '/spillway.v1.PodService/ListPods', def: v1.PodService.service.ListPods },
} as const;
type MethodName = keyof typeof METHODS;

interface Outcome {
  code: grpc.status;
  spillwayCode: string | undefined;
}

/** One unary call with raw bytes in and out; resolves with the status, whatever it is. */
function rawCall(c: grpc.Client, method: MethodName, bytes: Buffer): Promise<Outcome> {
  return new Promise((resolve) => {
    c.makeUnaryRequest(
      METHODS[method].path,
      (x: Buffer) => x,
      (x: Buffer) => x,
      bytes,
      new grpc.Metadata(),
      { deadline: Date.now() + CALL_DEADLINE_MS },
      (err) => {
        const code = err?.metadata?.get('spillway-error-code')[0];
        resolve({
          code: err?.code ?? grpc.status.OK,
          spillwayCode: typeof code === 'string' ? code : undefined,
        });
      },
    );
  });
}

function encode(method: MethodName, msg: object): Buffer {
  return METHODS[method].def.requestSerialize(msg);
}

/** Everything a refused call must leave as it was (timestamps that move on their own left out). */
async function snapshot(): Promise<string> {
  const state = {
    clusters: await b.core.listClusters(),
    donor: await b.core.getCluster('fz-donor'),
    fuzzed: await b.core.getInventory('fz-fuzzed'),
    peerings: await b.core.listPeerings(),
    live: await b.core.offloads({ states: ['open', 'bound'] }),
    tokens: await b.store.listJoinTokens(),
    revoked: await b.store.listRevoked(),
  };
  return JSON.stringify(state, (k, v: unknown) =>
    /lastSeen|connect|expiresAt|state$/i.test(k) ? undefined : v,
  );
}

/** The server still answers a well-formed call from a real cluster. */
async function stillServing(): Promise<void> {
  const r = await rawCall(
    originChannel,
    'Place',
    encode('Place', {
      pod: { origin_cluster: 'fz-origin', namespace: 'ml', name: 'probe', uid: 'probe-uid' },
      resource_name: 'nvidia.com/gpu',
      // More than the peering lends: answered with a reason, nothing reserved.
      gpus: 7,
    }),
  );
  expect(r.code).toBe(grpc.status.OK);
}

beforeAll(async () => {
  b = await startBroker({
    heartbeatIntervalMs: 60_000,
    heartbeatTimeoutMs: 600_000,
    commandTimeoutMs: 2_000,
  });
  origin = await joinAs(b, 'fz-origin', 'origin');
  donor = await joinAs(b, 'fz-donor', 'donor');
  fuzzed = await joinAs(b, 'fz-fuzzed', 'donor');
  await b.core.createPeering({ origin: 'fz-origin', donor: 'fz-donor', maxGpus: 4 });
  // The donor's agent: reports one 8-GPU node and refuses every command it is relayed.
  const donorClient = new v1.ClusterService(b.address, mtls(b.ca.certPem, donor), options);
  closers.push(() => donorClient.close());
  donorStream = new StreamProbe(donorClient.Connect());
  donorStream.call.on('data', (m: BrokerMessage__Output) => {
    if (m.msg !== 'command' || !m.command) return;
    donorStream.send({
      command_result: {
        request_id: m.command.request_id,
        code: grpc.status.FAILED_PRECONDITION,
        message: 'refused by the fuzz donor',
        reason: 'POD_REFUSED',
      },
    });
  });
  donorStream.send({ hello: { component: 'COMPONENT_AGENT', version: 'fuzz' } });
  await donorStream.next((m) => m.msg === 'welcome');
  donorStream.send({
    capacity: {
      full: true,
      sequence: '1',
      nodes: [
        {
          name: 'gpu-0',
          gpus: { 'nvidia.com/gpu': { allocatable: '8', free: '8' } },
          gpu_product: 'NVIDIA-A100-SXM4-80GB',
          gpu_memory_mib: '81920',
          labels: { 'nvidia.com/gpu.product': 'NVIDIA-A100-SXM4-80GB' },
          ready: true,
          cpu_allocatable_millis: '64000',
          cpu_free_millis: '64000',
          memory_allocatable_bytes: String(512 * 2 ** 30),
          memory_free_bytes: String(512 * 2 ** 30),
        },
      ],
    },
  });
  for (let i = 0; ; i++) {
    if ((await b.core.getInventory('fz-donor'))?.nodes.length === 1) break;
    if (i > 100) throw new Error('donor inventory never arrived');
    await new Promise((r) => setTimeout(r, 20));
  }
  originChannel = channel(mtls(b.ca.certPem, origin));
  anonChannel = channel(serverOnlyTls(b.ca.certPem));
});

afterAll(async () => {
  for (const c of closers.reverse()) c();
  donorStream?.call.cancel();
  await b?.stop();
});

// ---- arbitraries --------------------------------------------------------------------------

const hostile = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom(
    '',
    'fz-origin',
    'fz-donor',
    'fz-fuzzed',
    'nvidia.com/gpu',
    '../../etc',
    'a'.repeat(2_000),
    '\u0000',
    'spillway-fz-donor',
    '{"spec":{}}',
  ),
);
const int64 = fc.oneof(
  fc.constantFrom('0', '-1', '9223372036854775807', '-9223372036854775808', '1'),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String),
);
const int32 = fc.oneof(fc.integer(), fc.constantFrom(0, 1, -1, 2 ** 31 - 1, -(2 ** 31)));
const podRef = fc.oneof(
  fc.record(
    { origin_cluster: hostile, namespace: hostile, name: hostile, uid: hostile },
    { requiredKeys: [] },
  ),
  fc.record({
    origin_cluster: fc.constantFrom('fz-origin', 'fz-donor'),
    namespace: fc.constant('ml'),
    name: fc.constantFrom('train-0', 'train-1'),
    uid: fc.constantFrom('uid-0', 'uid-1'),
  }),
);

/** Well-formed messages with random values, per method. */
const requests: Record<MethodName, fc.Arbitrary<object>> = {
  Join: fc.record({ token: hostile, csr_pem: hostile }, { requiredKeys: [] }),
  Renew: fc.record({ csr_pem: hostile }, { requiredKeys: [] }),
  Place: fc.oneof(
    fc.record(
      {
        pod: podRef,
        resource_name: fc.oneof(hostile, fc.constant('nvidia.com/gpu')),
        gpus: fc.oneof(int32, fc.integer({ min: 1, max: 9 })),
        node_requirements: fc.array(
          fc.record({
            key: hostile,
            operator: hostile,
            values: fc.array(hostile, { maxLength: 3 }),
          }),
          { maxLength: 3 },
        ),
        tolerations: fc.array(
          fc.record({ key: hostile, operator: hostile, value: hostile, effect: hostile }),
          { maxLength: 3 },
        ),
        cpu_millis: int64,
        memory_bytes: int64,
        donors: fc.array(hostile, { maxLength: 3 }),
      },
      { requiredKeys: [] },
    ),
    // Requests a real origin would send, so the placement engine runs on them too.
    fc.record({
      pod: fc.constant({ origin_cluster: 'fz-origin', namespace: 'ml', name: 'p', uid: 'u' }),
      resource_name: fc.constant('nvidia.com/gpu'),
      gpus: fc.integer({ min: 1, max: 9 }),
      node_requirements: fc.array(
        fc.record({
          key: fc.constantFrom('nvidia.com/gpu.product', 'zone'),
          operator: fc.constantFrom('In', 'NotIn', 'Exists', 'Gt'),
          values: fc.array(fc.constantFrom('NVIDIA-A100-SXM4-80GB', '3'), { maxLength: 2 }),
        }),
        { maxLength: 2 },
      ),
      donors: fc.constantFrom([], ['fz-donor'], ['fz-fuzzed']),
    }),
  ),
  Release: fc.record({ reservation_id: hostile, reason: hostile }, { requiredKeys: [] }),
  CreatePod: fc.record(
    {
      donor_cluster: fc.oneof(hostile, fc.constant('fz-donor')),
      pod: podRef,
      reservation_id: hostile,
      pod_json: fc.oneof(
        hostile,
        fc.jsonValue({ maxDepth: 3 }).map((j) => JSON.stringify(j)),
      ),
      config_maps_json: fc.array(hostile, { maxLength: 3 }),
      secrets_json: fc.array(hostile, { maxLength: 3 }),
      node_name: hostile,
    },
    { requiredKeys: [] },
  ),
  DeletePod: fc.record(
    {
      donor_cluster: fc.oneof(hostile, fc.constant('fz-donor')),
      pod: podRef,
      grace_period_seconds: int64,
    },
    { requiredKeys: [] },
  ),
  ListPods: fc.record(
    { donor_cluster: fc.oneof(hostile, fc.constant('fz-donor')) },
    { requiredKeys: [] },
  ),
};

const methodName = fc.constantFrom(...(Object.keys(METHODS) as MethodName[]));

/** Valid encodings, then flipped, truncated, spliced or replaced bytes. */
const mutatedBytes = methodName
  .chain((m) => requests[m].map((msg) => ({ method: m, bytes: encode(m, msg) })))
  .chain(({ method, bytes }) =>
    fc
      .oneof(
        fc.constant(bytes),
        fc.uint8Array({ maxLength: 256 }).map((r) => Buffer.from(r)),
        fc
          .tuple(fc.nat({ max: Math.max(0, bytes.length) }), fc.integer({ min: 0, max: 255 }))
          .map(([at, v]) => {
            const out = Buffer.from(bytes);
            if (out.length > 0) out[at % out.length] = v;
            return out;
          }),
        fc.nat({ max: bytes.length }).map((n) => bytes.subarray(0, n)),
        fc
          .tuple(fc.nat({ max: bytes.length }), fc.uint8Array({ maxLength: 16 }))
          .map(([at, ins]) =>
            Buffer.concat([bytes.subarray(0, at), Buffer.from(ins), bytes.subarray(at)]),
          ),
      )
      .map((mutated) => ({ method, bytes: mutated })),
  );

// ---- properties ---------------------------------------------------------------------------

describe('gRPC under hostile input', () => {
  it(
    `answers random field values with a status and changes nothing when it refuses (${RUNS} cases)`,
    async () => {
      const seen = new Set<grpc.status>();
      await fc.assert(
        fc.asyncProperty(
          methodName.chain((m) => requests[m].map((msg) => ({ m, msg }))),
          fc.boolean(),
          async ({ m, msg }, authenticated) => {
            const before = await snapshot();
            const r = await rawCall(authenticated ? originChannel : anonChannel, m, encode(m, msg));
            seen.add(r.code);
            // A deadline would mean the server hung on the input.
            expect(r.code).not.toBe(grpc.status.DEADLINE_EXCEEDED);
            expect(r.code).not.toBe(grpc.status.UNKNOWN);
            expect(r.code).not.toBe(grpc.status.INTERNAL);
            if (r.code !== grpc.status.OK) expect(await snapshot()).toBe(before);
            else if (m === 'Place') {
              // A placement it granted is given back, so later cases start from the same state.
              for (const o of await b.core.offloads({ states: ['open'] }))
                await b.core.release(o.origin, o.id, 'fuzz');
            }
          },
        ),
        { numRuns: RUNS },
      );
      expect(seen.has(grpc.status.OK)).toBe(true);
      expect(seen.has(grpc.status.INVALID_ARGUMENT)).toBe(true);
      expect(seen.has(grpc.status.UNAUTHENTICATED)).toBe(true);
      await stillServing();
    },
    TIMEOUT_MS,
  );

  it(
    `answers random and mutated protobuf bytes with a status (${RUNS} cases)`,
    async () => {
      await fc.assert(
        fc.asyncProperty(mutatedBytes, fc.boolean(), async ({ method, bytes }, authenticated) => {
          const before = await snapshot();
          const r = await rawCall(authenticated ? originChannel : anonChannel, method, bytes);
          expect(r.code).not.toBe(grpc.status.DEADLINE_EXCEEDED);
          expect(r.code).not.toBe(grpc.status.UNKNOWN);
          expect(r.code).not.toBe(grpc.status.INTERNAL);
          if (r.code !== grpc.status.OK) expect(await snapshot()).toBe(before);
          else if (method === 'Place') {
            for (const o of await b.core.offloads({ states: ['open'] }))
              await b.core.release(o.origin, o.id, 'fuzz');
          }
        }),
        { numRuns: RUNS },
      );
      await stillServing();
    },
    TIMEOUT_MS,
  );

  const clusterMessage: fc.Arbitrary<ClusterMessage> = fc.oneof(
    fc.record({
      capacity: fc.record(
        {
          full: fc.boolean(),
          sequence: int64,
          removed_nodes: fc.array(hostile, { maxLength: 2 }),
          nodes: fc.array(
            fc.record(
              {
                name: hostile,
                gpus: fc.dictionary(
                  hostile,
                  fc.record({ allocatable: int64, free: int64 }, { requiredKeys: [] }),
                  { maxKeys: 2 },
                ),
                gpu_product: hostile,
                gpu_memory_mib: int64,
                labels: fc.dictionary(hostile, hostile, { maxKeys: 3 }),
                taints: fc.array(fc.record({ key: hostile, value: hostile, effect: hostile }), {
                  maxLength: 2,
                }),
                ready: fc.boolean(),
                cordoned: fc.boolean(),
                cpu_allocatable_millis: int64,
                cpu_free_millis: int64,
                memory_allocatable_bytes: int64,
                memory_free_bytes: int64,
                offloaded_pod_uids: fc.array(hostile, { maxLength: 2 }),
              },
              { requiredKeys: [] },
            ),
            { maxLength: 3 },
          ),
        },
        { requiredKeys: [] },
      ),
    }),
    fc.record({
      pod_status: fc.record(
        {
          pod: podRef,
          remote_namespace: hostile,
          remote_name: hostile,
          node_name: hostile,
          status_json: fc.oneof(
            hostile,
            fc.jsonValue().map((j) => JSON.stringify(j)),
          ),
          deleted: fc.boolean(),
          observed_unix_ms: int64,
        },
        { requiredKeys: [] },
      ),
    }),
    fc.record({
      pod_event: fc.record(
        {
          pod: podRef,
          type: fc.oneof(hostile, fc.constantFrom('Normal', 'Warning')),
          reason: hostile,
          message: hostile,
          count: int32,
          last_unix_ms: int64,
        },
        { requiredKeys: [] },
      ),
    }),
    fc.record({
      command_result: fc.record(
        { request_id: hostile, code: int32, message: hostile, reason: hostile },
        { requiredKeys: [] },
      ),
    }),
    fc.record({
      offload_sync: fc.record(
        { donor_cluster: hostile, pods: fc.array(podRef, { maxLength: 2 }), as_of_unix_ms: int64 },
        { requiredKeys: [] },
      ),
    }),
    fc.record({
      hello: fc.record(
        {
          component: fc.constantFrom('COMPONENT_AGENT', 'COMPONENT_VIRTUAL_NODE'),
          version: hostile,
          gpu_resources: fc.array(hostile, { maxLength: 3 }),
        },
        { requiredKeys: [] },
      ),
    }),
    fc.constant({}),
  );

  it(
    `ends a Connect stream fed random messages with a status, keeping the inventory it had (${RUNS} cases)`,
    async () => {
      const fuzzedClient = new v1.ClusterService(b.address, mtls(b.ca.certPem, fuzzed), options);
      closers.push(() => fuzzedClient.close());
      let refused = 0;
      let accepted = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom('COMPONENT_AGENT', 'COMPONENT_VIRTUAL_NODE' as const),
          clusterMessage,
          async (component, msg) => {
            const before = await snapshot();
            const p = new StreamProbe(fuzzedClient.Connect());
            try {
              p.send({ hello: { component, version: 'fuzz' } });
              await p.next((m) => m.msg === 'welcome');
              p.send(msg);
              // A second Hello is always refused: if the stream ends on it, `msg` was accepted.
              p.send({ hello: { component } });
              const end = await Promise.race([
                p.ended,
                new Promise<undefined>((r) => setTimeout(() => r(undefined), CALL_DEADLINE_MS)),
              ]);
              expect(end, 'the stream never ended').toBeDefined();
              expect(end!.code).not.toBe(grpc.status.UNKNOWN);
              expect(end!.code).not.toBe(grpc.status.INTERNAL);
              const acceptedMsg = end!.field === 'hello' && !('hello' in msg);
              if (acceptedMsg) accepted++;
              else {
                refused++;
                // Whatever the refused message said, the broker's state is as it was.
                expect(await snapshot()).toBe(before);
              }
            } finally {
              p.call.cancel();
            }
          },
        ),
        {
          numRuns: RUNS,
          // Found by the full run: a key that is not printable ASCII in the field name.
          examples: [
            [
              'COMPONENT_AGENT',
              { capacity: { nodes: [{ name: 'n', labels: { '\u0000': 'a'.repeat(100) } }] } },
            ],
          ],
        },
      );
      // Both outcomes were exercised, so neither branch is vacuous.
      expect(refused).toBeGreaterThan(0);
      expect(accepted).toBeGreaterThan(0);
      await stillServing();
      // The donor's own stream lived through it all.
      expect((await b.core.getCluster('fz-donor')).connections.agent).toBeDefined();
    },
    TIMEOUT_MS,
  );

  it('refuses messages over the size limit and keeps serving', async () => {
    const big = Buffer.alloc(MAX_MESSAGE_BYTES + 1024, 0x41);
    for (const m of Object.keys(METHODS) as MethodName[]) {
      const r = await rawCall(originChannel, m, big);
      expect(r.code, m).toBe(grpc.status.RESOURCE_EXHAUSTED);
    }
    const p = new StreamProbe(
      new v1.ClusterService(b.address, mtls(b.ca.certPem, fuzzed), options).Connect(),
    );
    p.send({
      hello: { component: 'COMPONENT_AGENT', version: 'x'.repeat(MAX_MESSAGE_BYTES + 10) },
    });
    const end = await p.ended;
    expect(end.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    await stillServing();
  });
});
