// The REST API on a real SQLite store and the real core: what it serves and what admins change.
// Shared setup: test-support/rest/harness.ts.
import { describe, expect, it } from 'vitest';
import { A100, GPU, admin, seededApi, viewer } from '../../test-support/rest/harness.js';
describe('REST API on a real SQLite store and the real core', () => {
  const api = seededApi();
  const { inject } = api;

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
      'GET /api/v1/usage',
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
    // One pod's `gpus` or a gang's `members`: the handler refuses both or neither.
    expect(simulate.content['application/json'].schema.required).toEqual(['origin']);
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
    const stored = await api.h.store.listJoinTokens();
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

    // A gang: where all of its members would go together, on one donor.
    const gang = await inject('POST', '/api/v1/placements:simulate', viewer, {
      origin: 'origin-a',
      gang: 'trainer',
      members: [{ gpus: 2 }, { gpus: 2 }, { gpus: 0 }],
      nodeSelector: { 'nvidia.com/gpu.product': A100 },
    });
    expect(gang.statusCode, gang.body).toBe(200);
    const placedGang = gang.json<{
      placed: boolean;
      donor: string;
      simulated: boolean;
      reservations: { donor: string }[];
    }>();
    expect(placedGang).toMatchObject({ placed: true, gang: 'trainer', simulated: true });
    expect(placedGang.reservations).toHaveLength(3);
    expect(new Set(placedGang.reservations.map((r) => r.donor))).toEqual(
      new Set([placedGang.donor]),
    );
    expect([result.reservation.donor, result.reservation.node]).toEqual(['donor-b', 'gpu-1']);
    // Why not elsewhere: the nodes that cannot hold 4 GPUs say so.
    expect(result.verdicts.find((v) => v.node === 'gpu-9')?.reason).not.toBe('');
    // A simulation reserves nothing.
    expect((await inject('GET', '/api/v1/offloads')).json()).toEqual({ offloads: [] });

    const placed = await api.h.core.place('origin-a', {
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
});
