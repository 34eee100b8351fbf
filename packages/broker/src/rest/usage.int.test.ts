import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createCertificateAuthority,
  createCsr,
  generateKeyPair,
  silentLogger,
  type CertificateAuthority,
} from '@spillway/common';
import type { UsageReport } from '@spillway/api/rest';
import { Core } from '../core/broker-core.js';
import { Metrics } from '../metrics.js';
import type { NodeInventory } from '../model.js';
import { openSqliteStore } from '../store/sqlite.js';
import type { Store } from '../store/store.js';
import { buildRestApp } from './app.js';
import { RestAuth } from './auth.js';

// The ledger through the real core and REST app on a real SQLite file, with a clock the
// test moves: binds and ends at known times give exact GPU-seconds.

const ADMIN = 'admin-token-0123456789abcdef';
const admin = { authorization: `Bearer ${ADMIN}` };
const GPU = 'nvidia.com/gpu';
const T0 = Date.parse('2026-03-01T12:00:00.000Z');

function gpuNode(
  name: string,
  product: string,
  free: number,
  offloaded: string[] = [],
): NodeInventory {
  return {
    name,
    gpus: { [GPU]: { allocatable: 8, free } },
    gpuProduct: product,
    gpuMemoryMiB: 81920,
    labels: { 'nvidia.com/gpu.product': product },
    taints: [],
    ready: true,
    cordoned: false,
    cpuAllocatableMillis: 64_000,
    cpuFreeMillis: 32_000,
    memoryAllocatableBytes: 512 * 2 ** 30,
    memoryFreeBytes: 256 * 2 ** 30,
    offloadedPodUids: offloaded,
  };
}

let ca: CertificateAuthority;
beforeAll(() => {
  ca = createCertificateAuthority();
});

interface Bed {
  dir: string;
  store: Store;
  core: Core;
  app: FastifyInstance;
  metrics: Metrics;
  clock: { ms: number };
}

const beds: Bed[] = [];
afterEach(async () => {
  for (const b of beds.splice(0)) {
    await b.app.close();
    await b.core.stop();
    await b.store.close();
    rmSync(b.dir, { recursive: true, force: true });
  }
});

async function bed(
  dir = mkdtempSync(join(tmpdir(), 'spillway-usage-')),
  clockMs = T0,
): Promise<Bed> {
  const logger = silentLogger();
  const store = await openSqliteStore({ path: join(dir, 'broker.db'), logger });
  const clock = { ms: clockMs };
  const metrics = new Metrics();
  metrics.bindStore(store);
  const core = new Core({
    store,
    ca,
    logger,
    brokerId: 'usage-test',
    clock: () => new Date(clock.ms),
    reservationRetentionMs: 1000,
    pruneIntervalMs: 0,
    reaperIntervalMs: 3_600_000,
    soleReplica: true,
  });
  const auth = new RestAuth({
    store,
    adminToken: ADMIN,
    failureLimit: 1000,
    caCertPem: ca.certPem,
    isRevoked: (serial) => core.isRevoked(serial),
    metrics,
  });
  const app = buildRestApp({ core, store, logger, auth, metrics });
  await app.ready();
  const b = { dir, store, core, app, metrics, clock };
  beds.push(b);
  return b;
}

async function join_(b: Bed, id: string, role: 'origin' | 'donor', nodes: NodeInventory[] = []) {
  const issued = await b.core.createJoinToken({ clusterId: id, role });
  await b.core.join(issued.token, createCsr(generateKeyPair().privateKeyPem, id));
  await b.core.connected(id, 'agent');
  await b.core.applyCapacity(id, { full: true, nodes, removedNodes: [], sequence: 1 });
}

async function place(b: Bed, origin: string, name: string, gpus: number, namespace = 'ml') {
  const res = await b.core.place(origin, {
    pod: { originCluster: origin, namespace, name, uid: `uid-${name}` },
    resource: GPU,
    gpus,
    nodeRequirements: [],
    tolerations: [],
    cpuMillis: 0,
    memoryBytes: 0,
    donors: [],
  });
  if (!res.placed) throw new Error(`${name}: ${res.reason}`);
  return res.reservation;
}

async function usage(b: Bed, query = '', headers: Record<string, string> = admin) {
  return b.app.inject({ method: 'GET', url: `/api/v1/usage${query}`, headers });
}

describe('GET /api/v1/usage on the real core', () => {
  it('counts GPU-seconds from bind to end, groups them, and counts running pods up to now', async () => {
    const b = await bed();
    await join_(b, 'origin-a', 'origin');
    await join_(b, 'origin-z', 'origin');
    await join_(b, 'donor-b', 'donor', [gpuNode('n1', 'A100', 8)]);
    await b.core.createPeering({ origin: 'origin-a', donor: 'donor-b' });
    await b.core.createPeering({ origin: 'origin-z', donor: 'donor-b' });
    const r1 = await place(b, 'origin-a', 'train-1', 2);
    const r2 = await place(b, 'origin-z', 'train-2', 1, 'research');
    // The donor reports both pods at T0+10s: bound.
    b.clock.ms = T0 + 10_000;
    await b.core.applyCapacity('donor-b', {
      full: true,
      nodes: [gpuNode('n1', 'A100', 5, [r1.pod.uid, r2.pod.uid])],
      removedNodes: [],
      sequence: 2,
    });
    // train-1 ends at T0+70s; the same report again (a reconnect) changes nothing.
    b.clock.ms = T0 + 70_000;
    const done = {
      pod: r1.pod,
      phase: 'Succeeded',
      remoteNamespace: 'x',
      remoteName: 'y',
      nodeName: 'n1',
      deleted: false,
    };
    await b.core.podStatus('donor-b', done);
    b.clock.ms = T0 + 90_000;
    await b.core.podStatus('donor-b', done);
    b.clock.ms = T0 + 100_000;

    const all = (await usage(b, '?by=origin,namespace,product')).json<UsageReport>();
    expect(all.rows).toEqual([
      {
        origin: 'origin-a',
        namespace: 'ml',
        product: 'A100',
        gpuSeconds: 120,
        gpuHours: 0.033333,
        pods: 1,
      },
      // Still running: 1 GPU from T0+10s to now (T0+100s).
      {
        origin: 'origin-z',
        namespace: 'research',
        product: 'A100',
        gpuSeconds: 90,
        gpuHours: 0.025,
        pods: 1,
      },
    ]);
    expect(all.by).toEqual(['origin', 'namespace', 'product']);
    expect(all.total).toEqual({ gpuSeconds: 210, gpuHours: 0.058333, pods: 2 });

    // A window clips each pod to it.
    const from = new Date(T0 + 60_000).toISOString();
    const to = new Date(T0 + 80_000).toISOString();
    const win = (await usage(b, `?from=${from}&to=${to}&by=donor`)).json<UsageReport>();
    expect(win.rows).toEqual([
      { donor: 'donor-b', gpuSeconds: 2 * 10 + 20, gpuHours: 0.011111, pods: 2 },
    ]);

    // CSV by format=, or by Accept.
    const csv = await usage(b, '?by=origin&format=csv');
    expect(csv.headers['content-type']).toMatch(/^text\/csv/);
    expect(csv.body).toBe(
      'origin,gpuSeconds,gpuHours,pods\r\norigin-a,120,0.033333,1\r\norigin-z,90,0.025,1\r\n',
    );
    const accepted = await usage(b, '?by=origin', { ...admin, accept: 'text/csv' });
    expect(accepted.body).toBe(csv.body);

    // The Prometheus counter reads the same ledger.
    b.clock.ms = T0 + 100_000;
    const text = await b.metrics.render();
    expect(text).toMatch(
      /spillway_gpu_seconds_total\{origin="origin-a",donor="donor-b",product="A100"\} 120\n/,
    );
    expect(text).toMatch(
      /spillway_gpu_seconds_total\{origin="origin-z",donor="donor-b",product="A100"\} \d+/,
    );
  });

  it('refuses bad parameters with 400 naming the parameter', async () => {
    const b = await bed();
    for (const [query, field] of [
      ['?from=yesterday', 'from'],
      ['?to=2026-13-45T00:00:00Z', 'to'],
      ['?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z', 'to'],
      ['?by=origin,planet', 'by'],
      ['?format=xml', 'format'],
      ['?bogus=1', 'bogus'],
    ] as const) {
      const res = await usage(b, query);
      expect(res.statusCode, query).toBe(400);
      const body = res.json<{ error: { code: string; message: string; field?: string } }>();
      expect(body.error.message, query).toContain(field);
    }
    const spec = (await b.app.inject({ method: 'GET', url: '/docs/json' })).json<{
      paths: Record<string, { get?: { responses?: Record<string, unknown> } }>;
    }>();
    expect(spec.paths['/api/v1/usage']?.get?.responses?.['200']).toBeDefined();
  });

  it('keeps the use of pruned reservations, and catches up on a bind the ledger missed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spillway-usage-'));
    const b = await bed(dir);
    await join_(b, 'origin-a', 'origin');
    await join_(b, 'donor-b', 'donor', [gpuNode('n1', 'H100', 8)]);
    await b.core.createPeering({ origin: 'origin-a', donor: 'donor-b' });
    const r1 = await place(b, 'origin-a', 'a', 4);
    const r2 = await place(b, 'origin-a', 'b', 1);
    // Bound behind the core's back (a broker killed between the store's bind and the ledger
    // write): only the reservation knows.
    await b.store.applyCapacity(
      'donor-b',
      {
        full: true,
        nodes: [gpuNode('n1', 'H100', 3, [r1.pod.uid, r2.pod.uid])],
        removedNodes: [],
        sequence: 2,
      },
      new Date(T0 + 5_000),
    );
    await b.store.endByPod(r1.pod.uid, 'remote pod Succeeded', new Date(T0 + 65_000));
    await b.app.close();
    await b.core.stop();
    await b.store.close();
    beds.splice(beds.indexOf(b), 1);

    // The restarted broker's first reaper pass brings the ledger level, then prunes.
    const c = await bed(dir, T0 + 3_600_000);
    c.core.start();
    await expect
      .poll(async () => (await c.store.getReservation(r1.id)) === undefined, { timeout: 20_000 })
      .toBe(true);
    const report = (await usage(c, '?by=product')).json<UsageReport>();
    expect(report.rows).toEqual([
      {
        product: 'H100',
        gpuSeconds: 4 * 60 + (3_600_000 - 5_000) / 1000,
        gpuHours: 1.065278,
        pods: 2,
      },
    ]);
  });
});
