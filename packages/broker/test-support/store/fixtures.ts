import { expect } from 'vitest';
import { SpillwayError } from '@spillway/common';
import {
  DEFAULT_DONOR_POLICY,
  type CapacityUpdate,
  type ClusterRecord,
  type NodeInventory,
  type PeeringRecord,
  type ReservationRecord,
  type ReserveRequest,
  type ReserveResult,
} from '../../src/model.js';
import type { Store } from '../../src/store/store.js';

/** Records, requests and assertions the store contract suite (contract.ts) is written with. */

export interface StoreHarness {
  store: Store;
  /** Closes the current store and opens a new one on the same data (a broker restart). */
  reopen(): Promise<Store>;
  /** Closes whatever is open and removes the data. */
  cleanup(): Promise<void>;
}

export const T0 = new Date('2026-03-01T12:00:00.000Z');
export const at = (ms: number): Date => new Date(T0.getTime() + ms);
export const GPU = 'nvidia.com/gpu';
export const MIG = 'nvidia.com/mig-1g.10gb';

export function node(
  name: string,
  free: number,
  extra: Partial<NodeInventory> = {},
): NodeInventory {
  return {
    name,
    gpus: { [GPU]: { allocatable: Math.max(8, free), free } },
    gpuProduct: 'NVIDIA-A100-SXM4-80GB',
    gpuMemoryMiB: 81920,
    labels: { 'nvidia.com/gpu.product': 'NVIDIA-A100-SXM4-80GB', 'kubernetes.io/hostname': name },
    taints: [],
    ready: true,
    cordoned: false,
    cpuAllocatableMillis: 64_000,
    cpuFreeMillis: 32_000,
    memoryAllocatableBytes: 549_755_813_888,
    memoryFreeBytes: 274_877_906_944,
    offloadedPodUids: [],
    ...extra,
  };
}

export function cluster(id: string, extra: Partial<ClusterRecord> = {}): ClusterRecord {
  return {
    id,
    role: 'both',
    createdAt: T0.toISOString(),
    policy: { ...DEFAULT_DONOR_POLICY, nodeSelector: {} },
    ...extra,
  };
}

export function peering(
  origin: string,
  donor: string,
  extra: Partial<PeeringRecord> = {},
): PeeringRecord {
  return { origin, donor, maxGpus: 0, gpuProducts: [], createdAt: T0.toISOString(), ...extra };
}

export const full = (nodes: NodeInventory[], sequence = 1): CapacityUpdate => ({
  full: true,
  nodes,
  removedNodes: [],
  sequence,
});

let seq = 0;
export function reserveRequest(
  donor: string,
  nodeName: string,
  gpus: number,
  extra: Partial<ReserveRequest> = {},
): ReserveRequest {
  seq += 1;
  const uid = extra.pod?.uid ?? `uid-${seq}`;
  return {
    id: `rsv-${seq}`,
    origin: 'origin-a',
    donor,
    node: nodeName,
    resource: GPU,
    gpus,
    pod: { originCluster: extra.origin ?? 'origin-a', namespace: 'ml', name: `train-${seq}`, uid },
    ttlMs: 30_000,
    peeringMaxGpus: 0,
    donorMaxGpus: 0,
    donorMaxGpusPerOrigin: 0,
    ...extra,
  };
}

export async function errorOf(p: Promise<unknown>): Promise<SpillwayError> {
  const err = await p.then(
    () => new Error('expected the call to fail, it succeeded'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SpillwayError);
  return err as SpillwayError;
}

export async function reserveOk(
  store: Store,
  req: ReserveRequest,
  now = T0,
): Promise<ReservationRecord> {
  const res = await store.reserve(req, now);
  if (!res.ok) throw new Error(`reserve ${req.id} refused: ${res.code} ${res.reason}`);
  return res.reservation;
}

export async function refusal(store: Store, req: ReserveRequest, now = T0): Promise<string> {
  const res = await store.reserve(req, now);
  if (res.ok) throw new Error(`reserve ${req.id} should have been refused`);
  expect(res.reason).not.toBe('');
  return res.code;
}
/** What each part of the contract suite reads: the store of the running test. */
export interface ContractContext {
  readonly h: StoreHarness;
  readonly store: Store;
}

/** A donor with inventory: the store binds inventory to a known cluster. */
export async function seedDonor(store: Store, id: string, nodes: NodeInventory[]): Promise<void> {
  await store.putCluster(cluster(id, { role: 'donor' }));
  await store.applyCapacity(id, full(nodes), T0);
}

/** Free GPUs per node of the contended donor: 100 in all, unevenly spread. */
export const CONTENDED_FREE = [4, 6, 8, 10, 12, 15, 20, 25] as const;
export const CONTENDED_DONOR = 'gpu-contended';

export async function seedContendedDonor(store: Store): Promise<void> {
  await store.putCluster(cluster(CONTENDED_DONOR, { role: 'donor' }));
  await store.applyCapacity(
    CONTENDED_DONOR,
    full(CONTENDED_FREE.map((free, i) => node(`node-${i}`, free))),
    T0,
  );
}

/** `count` 1-GPU requests spread round-robin over the contended donor's nodes. */
export function contendedRequests(
  count: number,
  extra: (i: number) => Partial<ReserveRequest> = () => ({}),
): ReserveRequest[] {
  const run = Math.random().toString(36).slice(2, 8);
  return Array.from({ length: count }, (_, i) =>
    reserveRequest(CONTENDED_DONOR, `node-${i % CONTENDED_FREE.length}`, 1, {
      id: `c-${run}-${i}`,
      pod: { originCluster: 'origin-a', namespace: 'ml', name: `p-${i}`, uid: `c-${run}-uid-${i}` },
      ...extra(i),
    }),
  );
}

/**
 * Exactly `expectedOk` reserves won, every loser was refused for capacity or quota, no node
 * holds more open GPUs than it reported free, and the store agrees with what callers saw.
 */
export async function expectNoOvercommit(
  store: Store,
  results: readonly ReserveResult[],
  expectedOk: number,
): Promise<void> {
  const won = results.flatMap((r) => (r.ok ? [r.reservation] : []));
  expect(won).toHaveLength(expectedOk);
  for (const r of results) if (!r.ok) expect(['NO_FIT', 'QUOTA_EXCEEDED']).toContain(r.code);
  const open = await store.listReservations({ donor: CONTENDED_DONOR, states: ['open'] });
  expect(open.map((r) => r.id).sort()).toEqual(won.map((r) => r.id).sort());
  CONTENDED_FREE.forEach((free, i) => {
    const held = open.filter((r) => r.node === `node-${i}`).reduce((n, r) => n + r.gpus, 0);
    expect(held, `node-${i} reported ${free} free`).toBeLessThanOrEqual(free);
  });
  expect((await store.usage(CONTENDED_DONOR)).total).toBe(expectedOk);
}
