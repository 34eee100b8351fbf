import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createCertificateAuthority,
  createCsr,
  generateKeyPair,
  silentLogger,
} from '@spillway/common';
import { Core } from '../core/broker-core.js';
import { Metrics } from '../metrics.js';
import type { NodeInventory } from '../model.js';
import { openSqliteStore } from '../store/sqlite.js';
import type { Store } from '../store/store.js';
import { buildRestApp } from './app.js';
import { RestAuth } from './auth.js';

/**
 * Hostile input to the REST API: random methods, paths, queries, headers and bodies to
 * every route, through fastify inject() on the real core and a real SQLite store.
 * Invariants: never a 5xx; every 4xx is `{ error: { code, message } }`; a refused request
 * changes nothing an admin can see. SPILLWAY_FUZZ_RUNS sets the cases per property (500 by
 * default; 10,000 in the full run of docs/security.md).
 */

const RUNS = Number(process.env.SPILLWAY_FUZZ_RUNS ?? 500);
const TIMEOUT_MS = 60_000 + RUNS * 30;
const ADMIN = 'admin-token-0123456789abcdef';
const VIEWER = 'viewer-token-0123456789abcdef';
const GPU = 'nvidia.com/gpu';

let dir: string;
let store: Store;
let core: Core;
let app: FastifyInstance;

function gpuNode(name: string, free: number): NodeInventory {
  return {
    name,
    gpus: { [GPU]: { allocatable: 8, free } },
    gpuProduct: 'NVIDIA-A100-SXM4-80GB',
    gpuMemoryMiB: 81920,
    labels: { 'nvidia.com/gpu.product': 'NVIDIA-A100-SXM4-80GB' },
    taints: [],
    ready: true,
    cordoned: false,
    cpuAllocatableMillis: 64_000,
    cpuFreeMillis: 32_000,
    memoryAllocatableBytes: 512 * 2 ** 30,
    memoryFreeBytes: 256 * 2 ** 30,
    offloadedPodUids: [],
  };
}

async function joined(id: string, role: 'origin' | 'donor', nodes: NodeInventory[] = []) {
  const issued = await core.createJoinToken({ clusterId: id, role });
  await core.join(issued.token, createCsr(generateKeyPair().privateKeyPem, id));
  await core.connected(id, 'agent');
  await core.applyCapacity(id, { full: true, nodes, removedNodes: [], sequence: 1 });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'spillway-rest-fuzz-'));
  const logger = silentLogger();
  store = await openSqliteStore({ path: join(dir, 'broker.db'), logger });
  const metrics = new Metrics();
  metrics.bindStore(store);
  const ca = createCertificateAuthority();
  core = new Core({ store, ca, logger, brokerId: 'rest-fuzz', heartbeatTimeoutMs: 3_600_000 });
  // The fuzzer fails authentication thousands of times from one address; the limiter has
  // its own tests, here it would only turn every later case into a 429.
  const auth = new RestAuth({
    store,
    adminToken: ADMIN,
    viewerToken: VIEWER,
    failureLimit: Number.MAX_SAFE_INTEGER,
  });
  app = buildRestApp({ core, store, logger, auth, metrics });
  await app.ready();
  await joined('origin-a', 'origin');
  await joined('donor-b', 'donor', [gpuNode('gpu-1', 6), gpuNode('gpu-2', 2)]);
  await joined('donor-c', 'donor', [gpuNode('gpu-9', 1)]);
  await core.createPeering({ origin: 'origin-a', donor: 'donor-b', maxGpus: 4 });
});

afterAll(async () => {
  await app?.close();
  await core?.stop();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Everything an admin can see, with the timestamps heartbeats move left out. */
async function snapshot(): Promise<string> {
  const out: Record<string, unknown> = {};
  for (const url of [
    '/api/v1/clusters',
    '/api/v1/clusters/donor-b',
    '/api/v1/peerings',
    '/api/v1/offloads',
    '/api/v1/capacity',
    '/api/v1/api-tokens',
  ]) {
    const res = await app.inject({ url, headers: { authorization: `Bearer ${ADMIN}` } });
    out[url] = res.statusCode === 200 ? res.json() : res.statusCode;
  }
  out.joinTokens = (await store.listJoinTokens()).length;
  return JSON.stringify(out, (k, v: unknown) =>
    k === 'lastSeenAt' || k === 'expiresAt' ? undefined : v,
  );
}

// ---- arbitraries --------------------------------------------------------------------------

const ids = fc.constantFrom('origin-a', 'donor-b', 'donor-c', 'nobody', 'at-000000000000');
const segment = fc.oneof(
  { weight: 3, arbitrary: ids },
  { weight: 1, arbitrary: fc.string({ maxLength: 20 }).map(encodeURIComponent) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('..', '%2e%2e', '%00', '%', 'A'.repeat(300), 'x:y', '%F0%9F'),
  },
);
const query = fc
  .dictionary(
    fc.oneof(
      fc.constantFrom('origin', 'donor', 'state', 'gpuProduct', 'minGpuMemoryMiB', 'resource'),
      fc.string({ maxLength: 6 }),
    ),
    fc.oneof(
      ids,
      fc.constantFrom('open,bound', 'running', '-1', '1e999', 'NVIDIA-A100-SXM4-80GB', GPU),
      fc.string({ maxLength: 10 }),
    ),
    { maxKeys: 3 },
  )
  .map((q) => {
    const s = new URLSearchParams(q).toString();
    return s === '' ? '' : `?${s}`;
  });

const path = fc.oneof(
  fc.constantFrom(
    '/api/v1/clusters',
    '/api/v1/join-tokens',
    '/api/v1/capacity',
    '/api/v1/peerings',
    '/api/v1/offloads',
    '/api/v1/placements:simulate',
    '/api/v1/api-tokens',
    '/healthz',
    '/readyz',
    '/metrics',
    '/docs/json',
  ),
  segment.map((s) => `/api/v1/clusters/${s}`),
  fc.tuple(segment, segment).map(([o, d]) => `/api/v1/peerings/${o}/${d}`),
  segment.map((s) => `/api/v1/api-tokens/${s}`),
  fc.webPath().map((p) => (p.startsWith('/') ? p : `/${p}`)),
);

const anyValue = fc.jsonValue({ maxDepth: 3 });
const field = <T>(good: fc.Arbitrary<T>): fc.Arbitrary<unknown> =>
  fc.oneof({ weight: 3, arbitrary: good }, { weight: 1, arbitrary: anyValue });
/** Objects with the routes' own field names, so requests get past "unknown field". */
const knownFields = fc.record(
  {
    origin: field(ids),
    donor: field(ids),
    clusterId: field(fc.oneof(ids, fc.string({ maxLength: 45 }))),
    role: field(fc.constantFrom('origin', 'donor', 'both', 'admin', 'viewer', 'king')),
    ttl: field(fc.constantFrom('1m', '15m', '24h', '30d', '0s', '-1m', 'soon')),
    gpus: field(fc.oneof(fc.integer({ min: -2, max: 300 }), fc.double())),
    maxGpus: field(fc.integer({ min: -1, max: 2_000_000 })),
    maxGpusPerOrigin: field(fc.integer({ min: -1, max: 10 })),
    cordoned: field(fc.boolean()),
    resource: field(fc.constantFrom(GPU, 'amd.com/gpu', '')),
    gpuProducts: field(fc.array(fc.string({ maxLength: 8 }), { maxLength: 2 })),
    nodeSelector: field(fc.dictionary(fc.string({ maxLength: 8 }), anyValue, { maxKeys: 2 })),
    requirements: field(
      fc.array(
        fc.record({
          key: field(fc.string({ maxLength: 8 })),
          operator: field(fc.constantFrom('In', 'NotIn', 'Exists', 'Gt', 'Near')),
          values: field(fc.array(fc.string({ maxLength: 4 }), { maxLength: 2 })),
        }),
        { maxLength: 2 },
      ),
    ),
    costPerGpuHour: field(fc.double()),
    podSecurity: field(fc.constantFrom('baseline', 'restricted', 'privileged')),
    description: field(fc.string({ maxLength: 20 })),
    policy: field(fc.constantFrom('binpack', 'spread', 'cost', 'random')),
  },
  { requiredKeys: [] },
);

const payload = fc.oneof(
  fc.constant(undefined),
  knownFields.map((o) => JSON.stringify(o)),
  anyValue.map((v) => JSON.stringify(v)),
  fc.string({ maxLength: 40 }),
  fc.constantFrom('{', '{"origin":', 'null', '[]', '"x"', '\u0000', '{"__proto__":{"admin":true}}'),
);

const headers = fc.record(
  {
    authorization: fc.oneof(
      fc.constantFrom(`Bearer ${ADMIN}`, `Bearer ${VIEWER}`, `bearer ${ADMIN}`),
      fc.constantFrom(`Basic ${ADMIN}`, 'Bearer', 'Bearer  ', `Bearer ${ADMIN}x`, 'Bearer a.b'),
      fc.string({ maxLength: 30 }).map((s) => `Bearer ${s}`),
    ),
    'content-type': fc.constantFrom(
      'application/json',
      'application/json; charset=utf-8',
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data',
    ),
  },
  { requiredKeys: [] },
);

const request = fc.record({
  method: fc.constantFrom('GET', 'POST', 'PATCH', 'DELETE', 'PUT', 'HEAD', 'OPTIONS'),
  url: fc.tuple(path, query).map(([p, q]) => p + q),
  headers,
  payload,
});

// ---- properties ---------------------------------------------------------------------------

describe('REST API under hostile input', () => {
  it(
    `never fails with a 5xx, always explains a 4xx, and changes nothing when it refuses (${RUNS} cases)`,
    async () => {
      const statuses = new Map<number, number>();
      await fc.assert(
        fc.asyncProperty(request, async (r) => {
          const before = await snapshot();
          const res = await app.inject({
            method: r.method as 'GET',
            url: r.url,
            headers: r.headers,
            ...(r.payload === undefined ? {} : { payload: r.payload }),
          });
          statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
          expect(res.statusCode, `${r.method} ${r.url}: ${res.body}`).toBeLessThan(500);
          if (res.statusCode >= 400) {
            if (r.method !== 'HEAD') {
              const body = res.json<{ error?: { code?: unknown; message?: unknown } }>();
              expect(typeof body.error?.code, res.body).toBe('string');
              expect(typeof body.error?.message, res.body).toBe('string');
              expect(res.body).not.toMatch(/ at .*\.[jt]s:\d+/);
            }
            expect(await snapshot()).toBe(before);
          }
        }),
        { numRuns: RUNS },
      );
      // The run reached the routes, not just the front door.
      for (const code of [200, 400, 401, 403, 404])
        expect(statuses.get(code), String(code)).toBeGreaterThan(0);
    },
    TIMEOUT_MS,
  );
});
