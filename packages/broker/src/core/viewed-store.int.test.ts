import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@spillway/common';
import {
  DEFAULT_DONOR_POLICY,
  type ClusterRecord,
  type ConnectionRecord,
  type NodeInventory,
  type ReserveRequest,
} from '../model.js';
import { openSqliteStore, type SqliteStore } from '../store/sqlite.js';
import type { Store } from '../store/store.js';
import { StoreView } from './view.js';
import { STORE_METHODS, ViewedStore, type NotedWrite, type ViewNotes } from './viewed-store.js';

const GPU = 'nvidia.com/gpu';
const T0 = Date.parse('2026-01-01T00:00:00Z');
const at = (ms: number): Date => new Date(T0 + ms);

/** A view that records which notes it received. */
class RecordingView implements ViewNotes {
  readonly notes: string[] = [];
  private conn: ConnectionRecord | undefined;
  noteCluster(): void {
    this.notes.push('noteCluster');
  }
  forgetCluster(): void {
    this.notes.push('forgetCluster');
  }
  notePeering(): void {
    this.notes.push('notePeering');
  }
  noteInventory(): void {
    this.notes.push('noteInventory');
  }
  noteConnection(c: ConnectionRecord): void {
    this.conn = c;
    this.notes.push('noteConnection');
  }
  noteConnectionGone(): void {
    this.notes.push('noteConnectionGone');
  }
  noteReservation(): void {
    this.notes.push('noteReservation');
  }
  connection(): ConnectionRecord | undefined {
    return this.conn;
  }
}

const cluster = (id: string, role: ClusterRecord['role']): ClusterRecord => ({
  id,
  role,
  createdAt: at(0).toISOString(),
  policy: { ...DEFAULT_DONOR_POLICY, nodeSelector: {} },
});

const node: NodeInventory = {
  name: 'n1',
  gpus: { [GPU]: { allocatable: 8, free: 8 } },
  gpuProduct: 'NVIDIA-A100-SXM4-80GB',
  gpuMemoryMiB: 81920,
  labels: {},
  taints: [],
  ready: true,
  cordoned: false,
  cpuAllocatableMillis: 64_000,
  cpuFreeMillis: 60_000,
  memoryAllocatableBytes: 2 ** 39,
  memoryFreeBytes: 2 ** 39,
  offloadedPodUids: [],
};

const ask = (uid: string, ttlMs = 60_000): ReserveRequest => ({
  id: `r-${uid}`,
  origin: 'lab',
  donor: 'donor-a',
  node: 'n1',
  resource: GPU,
  gpus: 1,
  pod: { originCluster: 'lab', namespace: 'ml', name: uid, uid },
  ttlMs,
  peeringMaxGpus: 0,
  donorMaxGpus: 0,
  donorMaxGpusPerOrigin: 0,
});

/**
 * One successful call of every write the view reflects, in an order where each succeeds.
 * Typed by NotedWrite: a write classified 'noted' without a call here does not compile.
 */
const NOTED_CALLS: Record<NotedWrite, (s: Store) => Promise<unknown>> = {
  putCluster: (s) => s.putCluster(cluster('donor-a', 'donor')),
  putPeering: (s) =>
    s.putPeering({
      origin: 'lab',
      donor: 'donor-a',
      maxGpus: 0,
      gpuProducts: [],
      createdAt: at(0).toISOString(),
    }),
  putConnection: (s) =>
    s.putConnection({
      clusterId: 'donor-a',
      component: 'agent',
      brokerId: 'b1',
      connectedAt: at(0).toISOString(),
      lastSeenAt: at(0).toISOString(),
    }),
  touchConnection: (s) => s.touchConnection('donor-a', 'agent', 'b1', at(1000)),
  applyCapacity: (s) =>
    s.applyCapacity('donor-a', { full: true, nodes: [node], removedNodes: [], sequence: 1 }, at(0)),
  reserve: (s) => s.reserve(ask('u1'), at(0)),
  reserveGang: (s) => s.reserveGang({ gang: 'g', members: [ask('g1'), ask('g2')] }, at(0)),
  extend: (s) => s.extend('r-u1', at(120_000)),
  release: (s) => s.release('r-u1', 'test', at(2000)),
  endByPod: async (s) => {
    await s.reserve(ask('u2'), at(0));
    return s.endByPod('u2', 'test', at(2000));
  },
  expire: async (s) => {
    await s.reserve(ask('u3', 1000), at(0));
    return s.expire(at(5000));
  },
  deletePeering: (s) => s.deletePeering('lab', 'donor-a'),
  clearInventory: (s) => s.clearInventory('donor-a'),
  deleteConnection: (s) => s.deleteConnection('donor-a', 'agent', 'b1'),
  deleteCluster: (s) => s.deleteCluster('donor-a'),
};

describe('ViewedStore', () => {
  let dir: string;
  let inner: SqliteStore;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spillway-viewed-'));
    inner = await openSqliteStore({ path: join(dir, 'broker.db') });
  });
  afterAll(async () => {
    await inner.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('has a call here for every write classified as noted', () => {
    // Store's methods are classified in STORE_METHODS (a new one does not compile until it
    // is); every write the view reflects must have a call in NOTED_CALLS, run below.
    const noted = Object.entries(STORE_METHODS)
      .filter(([, kind]) => kind === 'noted')
      .map(([m]) => m)
      .sort();
    expect(Object.keys(NOTED_CALLS).sort()).toEqual(noted);
    // openFeed is optional: a single-process store has no other replicas to tell.
    for (const m of Object.keys(STORE_METHODS).filter((k) => k !== 'openFeed')) {
      expect(typeof (inner as unknown as Record<string, unknown>)[m], m).toBe('function');
    }
  });

  it('notes the view after every write the view reflects', async () => {
    const view = new RecordingView();
    const store = new ViewedStore(inner, view);
    await inner.putCluster(cluster('lab', 'origin'));
    for (const [method, call] of Object.entries(NOTED_CALLS)) {
      const before = view.notes.length;
      await call(store);
      expect(view.notes.length, `${method} did not reach the view`).toBeGreaterThan(before);
    }
  });

  it('keeps a real view current with no note by hand', async () => {
    const view = new StoreView({ store: inner, logger: silentLogger() });
    const store = new ViewedStore(inner, view);
    await view.ready();
    await store.putCluster(cluster('donor-b', 'donor'));
    await store.putPeering({
      origin: 'lab',
      donor: 'donor-b',
      maxGpus: 2,
      gpuProducts: [],
      createdAt: at(0).toISOString(),
    });
    await store.applyCapacity(
      'donor-b',
      { full: true, nodes: [node], removedNodes: [], sequence: 1 },
      at(0),
    );
    const res = await store.reserve({ ...ask('v1'), id: 'r-v1', donor: 'donor-b' }, at(0));
    expect(res.ok).toBe(true);
    expect(view.cluster('donor-b')?.role).toBe('donor');
    expect(view.peering('lab', 'donor-b')?.maxGpus).toBe(2);
    expect(view.inventory('donor-b')?.nodes.map((n) => n.name)).toEqual(['n1']);
    expect(view.reservationsOn('donor-b').map((r) => r.id)).toEqual(['r-v1']);
    await store.release('r-v1', 'done', at(1000));
    expect(view.reservationsOn('donor-b')).toEqual([]);
    await store.deletePeering('lab', 'donor-b');
    expect(view.peering('lab', 'donor-b')).toBeUndefined();
  });
});
