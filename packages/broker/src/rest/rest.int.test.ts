import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createCertificateAuthority,
  createCsr,
  generateKeyPair,
  issueKeyAndCertificate,
  silentLogger,
  type CertificateAuthority,
} from '@spillway/common';
import { Core } from '../core/broker-core.js';
import type { BrokerCore } from '../core/api.js';
import { Metrics } from '../metrics.js';
import type { NodeInventory } from '../model.js';
import { RedisStore } from '../store/redis.js';
import { openSqliteStore } from '../store/sqlite.js';
import type { Store } from '../store/store.js';
import { buildRestApp } from './app.js';
import { RestAuth } from './auth.js';

const ADMIN = 'admin-token-0123456789abcdef';
const VIEWER = 'viewer-token-0123456789abcdef';
const GPU = 'nvidia.com/gpu';
const A100 = 'NVIDIA-A100-SXM4-80GB';

const admin = { authorization: `Bearer ${ADMIN}` };
const viewer = { authorization: `Bearer ${VIEWER}` };

function gpuNode(name: string, free: number, allocatable = 8): NodeInventory {
  return {
    name,
    gpus: { [GPU]: { allocatable, free } },
    gpuProduct: A100,
    gpuMemoryMiB: 81920,
    labels: { 'nvidia.com/gpu.product': A100, 'kubernetes.io/hostname': name },
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

interface Harness {
  dir: string;
  store: Store;
  core: BrokerCore;
  metrics: Metrics;
  app: FastifyInstance;
}

let ca: CertificateAuthority;

beforeAll(() => {
  ca = createCertificateAuthority();
});

async function harness(opts: { failureLimit?: number; tls?: boolean } = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'spillway-rest-'));
  const logger = silentLogger();
  const store = await openSqliteStore({ path: join(dir, 'broker.db'), logger });
  const metrics = new Metrics();
  metrics.bindStore(store);
  const core = new Core({
    store,
    ca,
    logger,
    brokerId: 'rest-test',
    placementPolicy: 'binpack',
    metrics,
  });
  const auth = new RestAuth({
    store,
    adminToken: ADMIN,
    viewerToken: VIEWER,
    failureLimit: opts.failureLimit ?? 1000,
    caCertPem: ca.certPem,
    isRevoked: (serial) => core.isRevoked(serial),
    metrics,
  });
  let tls: { keyPem: string; certPem: string; caPem: string } | undefined;
  if (opts.tls) {
    const server = issueKeyAndCertificate({
      ca,
      profile: 'server',
      identity: { kind: 'broker', name: 'test' },
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
      validSeconds: 3600,
    });
    tls = { keyPem: server.keyPem, certPem: server.certPem, caPem: ca.certPem };
  }
  const app = buildRestApp({ core, store, logger, auth, metrics, ...(tls ? { tls } : {}) });
  await app.ready();
  return { dir, store, core, metrics, app };
}

async function close(h: Harness): Promise<void> {
  await h.app.close();
  await h.core.stop();
  await h.store.close();
  rmSync(h.dir, { recursive: true, force: true });
}

/** A cluster that joined with a real CSR, holds a stream and reported its nodes. */
async function joinCluster(
  core: BrokerCore,
  id: string,
  role: 'origin' | 'donor' | 'both',
  nodes: NodeInventory[] = [],
): Promise<void> {
  const issued = await core.createJoinToken({ clusterId: id, role });
  const keys = generateKeyPair();
  await core.join(issued.token, createCsr(keys.privateKeyPem, id));
  await core.connected(id, 'agent');
  await core.applyCapacity(id, { full: true, nodes, removedNodes: [], sequence: 1 });
}

describe('REST API on a real SQLite store and the real core', () => {
  let h: Harness;

  beforeAll(async () => {
    h = await harness();
    await joinCluster(h.core, 'origin-a', 'origin');
    await joinCluster(h.core, 'donor-b', 'donor', [gpuNode('gpu-1', 6), gpuNode('gpu-2', 2)]);
    await joinCluster(h.core, 'donor-c', 'donor', [gpuNode('gpu-9', 1)]);
  });
  afterAll(async () => {
    await close(h);
  });

  const inject = (
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
    url: string,
    headers: Record<string, string> = admin,
    payload?: unknown,
  ) =>
    h.app.inject({
      method,
      url,
      headers,
      ...(payload === undefined
        ? {}
        : typeof payload === 'string'
          ? { payload, headers: { ...headers, 'content-type': 'application/json' } }
          : { payload: payload as Record<string, unknown> }),
    });

  /** Everything an admin can see; compared before and after refused requests. */
  async function snapshot(): Promise<unknown> {
    const urls = [
      '/api/v1/clusters',
      '/api/v1/clusters/donor-b',
      '/api/v1/peerings',
      '/api/v1/offloads',
      '/api/v1/capacity',
      '/api/v1/api-tokens',
    ];
    const out: Record<string, unknown> = {};
    for (const u of urls) {
      const res = await inject('GET', u);
      expect(res.statusCode, u).toBe(200);
      out[u] = res.json();
    }
    // lastSeenAt moves with heartbeats, not with requests; leave it out of the comparison.
    return JSON.parse(JSON.stringify(out, (k, v: unknown) => (k === 'lastSeenAt' ? undefined : v)));
  }

  it('serves health, readiness and the OpenAPI document without a token', async () => {
    expect((await inject('GET', '/healthz', {})).json()).toEqual({ status: 'ok' });
    const ready = await inject('GET', '/readyz', {});
    expect([ready.statusCode, ready.json()]).toEqual([200, { status: 'ready', store: 'sqlite' }]);
    const doc = await inject('GET', '/docs/json', {});
    expect(doc.statusCode).toBe(200);
    const spec = JSON.parse(doc.body) as {
      openapi: string;
      paths: Record<string, Record<string, { requestBody?: unknown; parameters?: unknown[] }>>;
    };
    expect(spec.openapi).toBe('3.0.3');
    const routes = Object.entries(spec.paths).flatMap(([p, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`),
    );
    for (const r of [
      'GET /api/v1/clusters',
      'GET /api/v1/clusters/{id}',
      'PATCH /api/v1/clusters/{id}',
      'DELETE /api/v1/clusters/{id}',
      'POST /api/v1/join-tokens',
      'GET /api/v1/capacity',
      'GET /api/v1/peerings',
      'POST /api/v1/peerings',
      'DELETE /api/v1/peerings/{origin}/{donor}',
      'GET /api/v1/offloads',
      'POST /api/v1/placements:simulate',
      'GET /api/v1/api-tokens',
      'POST /api/v1/api-tokens',
      'DELETE /api/v1/api-tokens/{id}',
      'GET /healthz',
      'GET /readyz',
      'GET /metrics',
    ]) {
      expect(routes).toContain(r);
    }
    // The request schemas are the ones that validate: unknown fields are refused in the doc too.
    const simulate = spec.paths['/api/v1/placements:simulate']?.post?.requestBody as {
      content: {
        'application/json': { schema: { additionalProperties: boolean; required: string[] } };
      };
    };
    expect(simulate.content['application/json'].schema.additionalProperties).toBe(false);
    expect(simulate.content['application/json'].schema.required).toEqual(['origin', 'gpus']);
  });

  it('lists clusters and shows one with its nodes and free GPUs', async () => {
    const list = await inject('GET', '/api/v1/clusters', viewer);
    expect(list.statusCode).toBe(200);
    const ids = list
      .json<{ clusters: { id: string }[] }>()
      .clusters.map((c) => c.id)
      .sort();
    expect(ids).toEqual(['donor-b', 'donor-c', 'origin-a']);
    const one = await inject('GET', '/api/v1/clusters/donor-b', viewer);
    expect(one.statusCode).toBe(200);
    const detail = one.json<{
      nodes: { name: string }[];
      gpus: Record<string, { free: number }>;
    }>();
    expect(detail.nodes.map((n) => n.name).sort()).toEqual(['gpu-1', 'gpu-2']);
    expect(detail.gpus[GPU]?.free).toBe(8);
  });

  it('creates a join token shown once and never lists its secret', async () => {
    const res = await inject('POST', '/api/v1/join-tokens', admin, {
      clusterId: 'new-one',
      role: 'donor',
      ttl: '10m',
    });
    expect(res.statusCode).toBe(201);
    expect(res.headers['cache-control']).toBe('no-store');
    const body = res.json<{ token: string; clusterId: string; expiresAt: string }>();
    expect(body.clusterId).toBe('new-one');
    const ttl = Date.parse(body.expiresAt) - Date.now();
    expect(ttl).toBeGreaterThan(9 * 60_000);
    expect(ttl).toBeLessThanOrEqual(10 * 60_000);
    const stored = await h.store.listJoinTokens();
    expect(JSON.stringify(stored)).not.toContain(body.token.split('.').slice(1).join('.'));
  });

  it('reports capacity with filters', async () => {
    const all = await inject('GET', '/api/v1/capacity', viewer);
    expect(all.statusCode).toBe(200);
    expect(all.json<{ totals: { free: number } }>().totals.free).toBe(9);
    const none = await inject(
      'GET',
      '/api/v1/capacity?gpuProduct=NVIDIA-H100&minGpuMemoryMiB=1',
      viewer,
    );
    expect(none.json<{ totals: { free: number } }>().totals.free).toBe(0);
    const big = await inject('GET', '/api/v1/capacity?minGpuMemoryMiB=100000', viewer);
    expect(big.json<{ rows: unknown[] }>().rows).toEqual([]);
  });

  it('creates, lists and deletes peerings; offloads and simulation follow them', async () => {
    const before = await inject('POST', '/api/v1/placements:simulate', viewer, {
      origin: 'origin-a',
      gpus: 4,
    });
    expect(before.statusCode).toBe(200);
    expect(before.json()).toMatchObject({ placed: false, code: 'NO_PEERING' });

    for (const donor of ['donor-b', 'donor-c']) {
      const created = await inject('POST', '/api/v1/peerings', admin, {
        origin: 'origin-a',
        donor,
      });
      expect(created.statusCode).toBe(201);
      expect(created.json()).toMatchObject({ origin: 'origin-a', donor });
    }
    const listed = await inject('GET', '/api/v1/peerings?origin=origin-a', viewer);
    expect(listed.json<{ peerings: unknown[] }>().peerings).toHaveLength(2);

    const sim = await inject('POST', '/api/v1/placements:simulate', viewer, {
      origin: 'origin-a',
      gpus: 4,
      nodeSelector: { 'nvidia.com/gpu.product': A100 },
    });
    expect(sim.statusCode).toBe(200);
    const result = sim.json<{
      placed: boolean;
      reservation: { donor: string; node: string };
      verdicts: { donor: string; node: string; reason: string }[];
    }>();
    expect(result.placed).toBe(true);
    expect([result.reservation.donor, result.reservation.node]).toEqual(['donor-b', 'gpu-1']);
    // Why not elsewhere: the nodes that cannot hold 4 GPUs say so.
    expect(result.verdicts.find((v) => v.node === 'gpu-9')?.reason).not.toBe('');
    // A simulation reserves nothing.
    expect((await inject('GET', '/api/v1/offloads')).json()).toEqual({ offloads: [] });

    const placed = await h.core.place('origin-a', {
      pod: { originCluster: 'origin-a', namespace: 'ml', name: 'train', uid: 'uid-train' },
      resource: GPU,
      gpus: 2,
      nodeRequirements: [],
      tolerations: [],
      cpuMillis: 0,
      memoryBytes: 0,
      donors: [],
    });
    expect(placed.placed).toBe(true);
    const offloads = await inject(
      'GET',
      '/api/v1/offloads?origin=origin-a&state=open,bound',
      viewer,
    );
    expect(offloads.statusCode).toBe(200);
    expect(
      offloads.json<{ offloads: { pod: { uid: string } }[] }>().offloads.map((o) => o.pod.uid),
    ).toEqual(['uid-train']);
    const ended = await inject('GET', '/api/v1/offloads?state=ended', viewer);
    expect(ended.json()).toEqual({ offloads: [] });

    const del = await inject('DELETE', '/api/v1/peerings/origin-a/donor-c');
    expect(del.statusCode).toBe(204);
    const after = await inject('GET', '/api/v1/peerings?origin=origin-a', viewer);
    expect(after.json<{ peerings: { donor: string }[] }>().peerings.map((p) => p.donor)).toEqual([
      'donor-b',
    ]);
  });

  it('cordons a donor and changes its policy with PATCH', async () => {
    const res = await inject('PATCH', '/api/v1/clusters/donor-c', admin, {
      cordoned: true,
      maxGpus: 4,
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ id: 'donor-c', policy: { cordoned: true, maxGpus: 4 } });
    const back = await inject('GET', '/api/v1/clusters/donor-c', viewer);
    expect(back.json()).toMatchObject({ policy: { cordoned: true, maxGpus: 4 } });
  });

  it('exposes Prometheus metrics read from the store', async () => {
    const res = await inject('GET', '/metrics', {});
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/plain');
    const text = res.body;
    expect(text).toContain('spillway_connected_clusters 3');
    // donor-c is cordoned by now; only donor-b's 8 free GPUs count.
    expect(text).toContain(`spillway_free_gpus{product="${A100}",resource="${GPU}"} 8`);
    expect(text).toContain('spillway_reservations_open 1');
    expect(text).toMatch(
      /spillway_http_requests_total\{method="GET",route="\/api\/v1\/clusters",status="200"\} \d+/,
    );
    // One real placement went through the instrumented core; simulations are not counted.
    expect(text).toContain('spillway_placements_total{result="placed"} 1');
    expect(text).toMatch(/spillway_placement_duration_seconds_count\{result="placed"\} 1/);
  });

  it('refuses requests without a valid token with 401', async () => {
    const before = await snapshot();
    for (const [method, url] of [
      ['GET', '/api/v1/clusters'],
      ['GET', '/api/v1/capacity'],
      ['POST', '/api/v1/peerings'],
      ['DELETE', '/api/v1/clusters/donor-b'],
    ] as const) {
      const none = await inject(method, url, {});
      expect(none.statusCode).toBe(401);
      expect(none.json()).toMatchObject({
        error: { code: 'UNAUTHENTICATED', field: 'Authorization' },
      });
      const wrong = await inject(method, url, { authorization: 'Bearer not-the-token' });
      expect(wrong.statusCode).toBe(401);
      const scheme = await inject(method, url, { authorization: `Basic ${ADMIN}` });
      expect(scheme.statusCode).toBe(401);
    }
    expect(await snapshot()).toEqual(before);
  });

  it('lets a viewer read but not change anything (403)', async () => {
    const before = await snapshot();
    const attempts: [string, string, unknown][] = [
      ['POST', '/api/v1/peerings', { origin: 'origin-a', donor: 'donor-c' }],
      ['DELETE', '/api/v1/peerings/origin-a/donor-b', undefined],
      ['PATCH', '/api/v1/clusters/donor-b', { cordoned: true }],
      ['DELETE', '/api/v1/clusters/donor-b', undefined],
      ['POST', '/api/v1/join-tokens', { clusterId: 'x', role: 'donor' }],
      ['POST', '/api/v1/api-tokens', { role: 'admin' }],
      ['GET', '/api/v1/api-tokens', undefined],
    ];
    for (const [method, url, body] of attempts) {
      const res = await inject(method as 'POST', url, viewer, body);
      expect(res.statusCode, `${method} ${url}`).toBe(403);
      expect(res.json()).toMatchObject({ error: { code: 'PERMISSION_DENIED' } });
    }
    expect(await snapshot()).toEqual(before);
  });

  it('refuses bad input with 400 naming the field and changes nothing', async () => {
    const before = await snapshot();
    const cases: [string, string, unknown, string][] = [
      ['POST', '/api/v1/peerings', { origin: 'origin-a', donor: 'donor-c', maxGpu: 3 }, 'maxGpu'],
      ['POST', '/api/v1/peerings', { origin: 'Origin_A', donor: 'donor-c' }, 'origin'],
      ['POST', '/api/v1/peerings', { donor: 'donor-c' }, 'origin'],
      ['PATCH', '/api/v1/clusters/donor-b', { cordon: true }, 'cordon'],
      ['PATCH', '/api/v1/clusters/donor-b', {}, 'body'],
      ['PATCH', '/api/v1/clusters/donor-b', { maxGpus: -1 }, 'maxGpus'],
      ['PATCH', '/api/v1/clusters/donor-b', { nodeSelector: { a: 5 } }, 'nodeSelector.a'],
      ['POST', '/api/v1/join-tokens', { clusterId: 'x', role: 'king' }, 'role'],
      ['POST', '/api/v1/join-tokens', { clusterId: 'x', role: 'donor', ttl: '30d' }, 'ttl'],
      ['POST', '/api/v1/join-tokens', { clusterId: 'x', role: 'donor', ttl: '48h' }, 'ttl'],
      ['POST', '/api/v1/placements:simulate', { origin: 'origin-a', gpus: -1 }, 'gpus'],
      ['POST', '/api/v1/placements:simulate', { origin: 'origin-a', gpus: 0 }, 'gpus'],
      ['POST', '/api/v1/placements:simulate', { origin: 'origin-a', gpus: 1e9 }, 'gpus'],
      ['POST', '/api/v1/placements:simulate', { origin: 'origin-a', gpus: 1.5 }, 'gpus'],
      ['POST', '/api/v1/placements:simulate', { origin: 'origin-a', gpus: '4' }, 'gpus'],
      [
        'POST',
        '/api/v1/placements:simulate',
        { origin: 'origin-a', gpus: 1, requirements: [{ key: 'a', operator: 'Near' }] },
        'requirements[0].operator',
      ],
      ['GET', '/api/v1/capacity?gpu=A100', undefined, 'gpu'],
      ['GET', '/api/v1/capacity?minGpuMemoryMiB=lots', undefined, 'minGpuMemoryMiB'],
      ['GET', '/api/v1/offloads?state=running', undefined, 'state'],
      ['GET', '/api/v1/clusters/NOT_AN_ID', undefined, 'id'],
    ];
    for (const [method, url, body, field] of cases) {
      const res = await inject(method as 'POST', url, admin, body);
      expect(res.statusCode, `${method} ${url} ${JSON.stringify(body)}`).toBe(400);
      const err = res.json<{ error: { code: string; field: string; message: string } }>().error;
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.field, JSON.stringify(err)).toBe(field);
      expect(err.message).toContain(field === 'body' ? 'body' : field.split(/[.[]/)[0]);
      expect(res.body).not.toMatch(/ at .*\.ts:\d+/);
    }
    const malformed = await inject('POST', '/api/v1/peerings', admin, '{"origin": "origin-a",');
    expect(malformed.statusCode).toBe(400);
    expect(malformed.json()).toEqual({
      error: { code: 'INVALID_ARGUMENT', message: 'body is not valid JSON', field: 'body' },
    });
    const huge = await inject(
      'POST',
      '/api/v1/peerings',
      admin,
      JSON.stringify({ origin: 'x'.repeat(2 * 1024 * 1024) }),
    );
    expect(huge.statusCode).toBe(413);
    expect(huge.json()).toMatchObject({ error: { code: 'PAYLOAD_TOO_LARGE' } });
    expect(await snapshot()).toEqual(before);
  });

  it('answers 404 for unknown clusters and peerings and changes nothing', async () => {
    const before = await snapshot();
    for (const [method, url, body] of [
      ['GET', '/api/v1/clusters/nobody', undefined],
      ['PATCH', '/api/v1/clusters/nobody', { cordoned: true }],
      ['DELETE', '/api/v1/clusters/nobody', undefined],
      ['DELETE', '/api/v1/peerings/origin-a/nobody', undefined],
      ['DELETE', '/api/v1/api-tokens/at-000000000000', undefined],
      ['GET', '/api/v1/no-such-route', undefined],
    ] as const) {
      const res = await inject(method, url, admin, body);
      expect(res.statusCode, `${method} ${url}`).toBe(404);
      expect(res.json()).toMatchObject({ error: { code: 'NOT_FOUND' } });
    }
    const peering = await inject('POST', '/api/v1/peerings', admin, {
      origin: 'origin-a',
      donor: 'nobody',
    });
    expect(peering.statusCode).toBe(404);
    expect(await snapshot()).toEqual(before);
  });

  it('issues API tokens that work with their role and stop working when deleted', async () => {
    const res = await inject('POST', '/api/v1/api-tokens', admin, {
      role: 'viewer',
      description: 'grafana',
    });
    expect(res.statusCode).toBe(201);
    const { token, id } = res.json<{ token: string; id: string }>();
    const stored = await h.store.getApiToken(id);
    expect(stored?.secretHash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(stored)).not.toContain(token.split('.')[1]);
    const bearer = { authorization: `Bearer ${token}` };
    expect((await inject('GET', '/api/v1/clusters', bearer)).statusCode).toBe(200);
    expect(
      (await inject('PATCH', '/api/v1/clusters/donor-b', bearer, { cordoned: true })).statusCode,
    ).toBe(403);
    const listed = await inject('GET', '/api/v1/api-tokens');
    expect(listed.body).not.toContain('secretHash');
    expect((await inject('DELETE', `/api/v1/api-tokens/${id}`)).statusCode).toBe(204);
    expect((await inject('GET', '/api/v1/clusters', bearer)).statusCode).toBe(401);
  });

  it('removes a cluster with DELETE', async () => {
    await joinCluster(h.core, 'gone-soon', 'donor', [gpuNode('g', 1)]);
    const del = await inject('DELETE', '/api/v1/clusters/gone-soon');
    expect(del.statusCode).toBe(204);
    const after = await inject('GET', '/api/v1/clusters/gone-soon', viewer);
    expect(after.statusCode === 404 || after.json<{ state: string }>().state === 'Revoked').toBe(
      true,
    );
  });

  it('serves the same API over a real socket', async () => {
    const sock = await harness();
    try {
      await sock.app.listen({ host: '127.0.0.1', port: 0 });
      const { port } = sock.app.server.address() as AddressInfo;
      const base = `http://127.0.0.1:${port}`;
      const ok = await fetch(`${base}/api/v1/clusters`, { headers: admin });
      expect(ok.status).toBe(200);
      expect(await ok.json()).toEqual({ clusters: [] });
      const bad = await fetch(`${base}/api/v1/join-tokens`, {
        method: 'POST',
        headers: { ...admin, 'content-type': 'application/json' },
        body: '{not json',
      });
      expect(bad.status).toBe(400);
      expect(await bad.json()).toMatchObject({
        error: { code: 'INVALID_ARGUMENT', field: 'body' },
      });
      const made = await fetch(`${base}/api/v1/join-tokens`, {
        method: 'POST',
        headers: { ...admin, 'content-type': 'application/json' },
        body: JSON.stringify({ clusterId: 'sock-1', role: 'both' }),
      });
      expect(made.status).toBe(201);
      expect(await sock.store.listJoinTokens()).toHaveLength(1);
    } finally {
      await close(sock);
    }
  });
});

describe('REST auth limits and certificates', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await harness({ failureLimit: 3 });
    return () => close(h);
  });

  it('answers 429 to further failures from an IP over its limit; a valid token still works', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await h.app.inject({
        url: '/api/v1/clusters',
        headers: { authorization: 'Bearer guess' },
      });
      expect(res.statusCode).toBe(401);
    }
    const blocked = await h.app.inject({
      url: '/api/v1/clusters',
      headers: { authorization: 'Bearer guess' },
    });
    expect(blocked.statusCode).toBe(429);
    expect((await h.app.inject({ url: '/api/v1/clusters', headers: admin })).statusCode).toBe(200);
    expect(blocked.json()).toMatchObject({ error: { code: 'RATE_LIMITED' } });
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0);
    // Another client is not punished for it.
    const other = await h.app.inject({
      url: '/api/v1/clusters',
      headers: admin,
      remoteAddress: '10.9.9.9',
    });
    expect(other.statusCode).toBe(200);
    expect(await h.metrics.render()).toContain(
      'spillway_auth_failures_total{reason="invalid_token"} 4',
    );
  });
});

describe('REST over TLS with admin client certificates', () => {
  let h: Harness;
  let port: number;
  beforeAll(async () => {
    h = await harness({ tls: true });
    await h.app.listen({ host: '127.0.0.1', port: 0 });
    port = (h.app.server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await close(h);
  });

  function get(
    path: string,
    opts: { cert?: string; key?: string; headers?: Record<string, string> } = {},
  ): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port,
          path,
          method: 'POST',
          ca: ca.certPem,
          ...(opts.cert ? { cert: opts.cert, key: opts.key } : {}),
          headers: { 'content-type': 'application/json', ...(opts.headers ?? {}) },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ clusterId: 'tls-1', role: 'donor' }));
    });
  }

  it('lets an admin certificate act as admin and refuses a cluster certificate', async () => {
    const adminCert = issueKeyAndCertificate({
      ca,
      profile: 'client',
      identity: { kind: 'admin', name: 'alice' },
      validSeconds: 3600,
    });
    expect(
      await get('/api/v1/join-tokens', { cert: adminCert.certPem, key: adminCert.keyPem }),
    ).toBe(201);

    const clusterCert = issueKeyAndCertificate({
      ca,
      profile: 'client',
      identity: { kind: 'cluster', name: 'donor-b' },
      validSeconds: 3600,
    });
    expect(
      await get('/api/v1/join-tokens', { cert: clusterCert.certPem, key: clusterCert.keyPem }),
    ).toBe(401);

    const foreign = createCertificateAuthority();
    const forged = issueKeyAndCertificate({
      ca: foreign,
      profile: 'client',
      identity: { kind: 'admin', name: 'mallory' },
      validSeconds: 3600,
    });
    expect(await get('/api/v1/join-tokens', { cert: forged.certPem, key: forged.keyPem })).toBe(
      401,
    );
    // Tokens still work over TLS.
    expect(await get('/api/v1/join-tokens', { headers: admin })).toBe(201);
    expect(await h.store.listJoinTokens()).toHaveLength(2);
  });
});

describe('readiness follows the store', () => {
  async function appOn(store: Store): Promise<FastifyInstance> {
    const logger = silentLogger();
    const metrics = new Metrics();
    metrics.bindStore(store);
    const core = new Core({ store, ca, logger, brokerId: 'ready-test' });
    const auth = new RestAuth({ store, adminToken: ADMIN, failureLimit: 10 });
    const app = buildRestApp({ core, store, logger, auth, metrics });
    await app.ready();
    return app;
  }

  it('answers 503 with a reason when Redis cannot be reached, 200 when it can', async () => {
    const down = new RedisStore('redis://127.0.0.1:1', { readyTimeoutMs: 300 });
    const up = new RedisStore('redis://127.0.0.1:6379', {
      prefix: `spillway-test:${randomUUID()}:`,
    });
    const appDown = await appOn(down);
    const appUp = await appOn(up);
    try {
      const res = await appDown.inject({ url: '/readyz' });
      expect(res.statusCode).toBe(503);
      const body = res.json<{ status: string; store: string; reason: string }>();
      expect([body.status, body.store]).toEqual(['unavailable', 'redis']);
      expect(body.reason).not.toBe('');
      // The process itself is fine; only readiness fails.
      expect((await appDown.inject({ url: '/healthz' })).statusCode).toBe(200);
      // Scrapes still work, counting the store failure instead of failing.
      const metrics = await appDown.inject({ url: '/metrics' });
      expect(metrics.statusCode).toBe(200);
      expect(metrics.body).toMatch(/spillway_metrics_store_errors_total [1-9]/);
      // A request that needs the store says so, without a stack.
      const list = await appDown.inject({ url: '/api/v1/clusters', headers: admin });
      expect(list.statusCode).toBe(503);
      expect(list.json()).toMatchObject({ error: { code: 'STORE_UNAVAILABLE' } });

      expect((await appUp.inject({ url: '/readyz' })).json()).toEqual({
        status: 'ready',
        store: 'redis',
      });
    } finally {
      await appDown.close();
      await appUp.close();
      await down.close();
      await up.close();
    }
  });
});
