import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { LabelRequirement, PlacementRequest } from '../core/api.js';
import {
  DEFAULT_DONOR_POLICY,
  type NodeInventory,
  type PlacementPolicy,
  type ReservationRecord,
} from '../model.js';
import {
  GPU_PRODUCT_LABEL,
  evaluatePlacement,
  lendingOf,
  type DonorSnapshot,
  type PlacementSnapshot,
} from './engine.js';
import {
  FreeIndex,
  fastCandidates,
  freeOn,
  indexedCandidates,
  summarizeDonor,
  type FastDonor,
} from './fast.js';

const NOW = new Date('2026-06-01T12:00:00.000Z');
const ago = (ms: number): string => new Date(NOW.getTime() - ms).toISOString();
const GPU = 'nvidia.com/gpu';
const MIG = 'nvidia.com/mig-1g.10gb';
const PRODUCTS = ['NVIDIA-H100-80GB-HBM3', 'NVIDIA-A100-SXM4-80GB', 'NVIDIA-L4', ''];

const nodeArb = (name: string): fc.Arbitrary<NodeInventory> =>
  fc
    .record({
      product: fc.constantFrom(...PRODUCTS),
      allocatable: fc.constantFrom(8, 8, 8, 4, 0),
      used: fc.integer({ min: 0, max: 7 }),
      mig: fc.boolean(),
      ready: fc.integer({ min: 0, max: 9 }).map((n) => n > 0),
      cordoned: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
      tainted: fc.integer({ min: 0, max: 5 }).map((n) => n === 0),
      labelled: fc.boolean(),
      cpuFree: fc.constantFrom(0, 1000, 64_000, 64_000, 64_000),
      offloaded: fc.array(fc.constantFrom('u1', 'u2', 'u3', 'u4'), { maxLength: 2 }),
    })
    .map((n): NodeInventory => {
      const free = Math.max(0, n.allocatable - n.used);
      return {
        name,
        gpus: {
          [GPU]: { allocatable: n.allocatable, free },
          ...(n.mig ? { [MIG]: { allocatable: 7, free: Math.min(7, free) } } : {}),
        },
        gpuProduct: n.product,
        gpuMemoryMiB: n.product === 'NVIDIA-L4' ? 23034 : 81559,
        labels: n.labelled ? { pool: 'train' } : {},
        taints: n.tainted ? [{ key: 'gpu', value: 'reserved', effect: 'NoSchedule' }] : [],
        ready: n.ready,
        cordoned: n.cordoned,
        cpuAllocatableMillis: 64_000,
        cpuFreeMillis: n.cpuFree,
        memoryAllocatableBytes: 0,
        memoryFreeBytes: 0,
        offloadedPodUids: [...new Set(n.offloaded)],
      };
    });

const donorArb = (id: string): fc.Arbitrary<DonorSnapshot> =>
  fc
    .record({
      nodes: fc
        .integer({ min: 0, max: 6 })
        .chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => nodeArb(`n${i}`)))),
      peered: fc.integer({ min: 0, max: 9 }).map((n) => n > 0),
      peeringMax: fc.constantFrom(0, 0, 4, 16),
      peeringProducts: fc.oneof(
        fc.constant([] as string[]),
        fc.constant([] as string[]),
        fc.subarray(PRODUCTS.slice(0, 3), { maxLength: 2 }),
      ),
      selector: fc.integer({ min: 0, max: 5 }).map((n) => n === 0),
      cost: fc.constantFrom(0, 1, 2.5),
      silent: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
      cordoned: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
      reservations: fc.array(
        fc.record({
          node: fc.constantFrom('n0', 'n1', 'n2', 'n9'),
          gpus: fc.integer({ min: 1, max: 4 }),
          state: fc.constantFrom<'open' | 'bound'>('open', 'open', 'bound'),
          origin: fc.constantFrom('lab', 'other'),
          uid: fc.constantFrom('u1', 'u2', 'u3', 'u4', 'u5', 'u6'),
          resource: fc.constantFrom(GPU, GPU, MIG),
        }),
        { maxLength: 5 },
      ),
    })
    .map((d): DonorSnapshot => {
      const reservations = d.reservations.map((r, i): ReservationRecord => ({
        id: `${id}-r${i}`,
        origin: r.origin,
        donor: id,
        node: r.node,
        resource: r.resource,
        gpus: r.gpus,
        pod: { originCluster: r.origin, namespace: 'ml', name: `p${i}`, uid: `${r.uid}` },
        state: r.state,
        createdAt: ago(1000),
        expiresAt: new Date(NOW.getTime() + 60_000).toISOString(),
      }));
      return {
        cluster: {
          id,
          role: 'donor',
          createdAt: ago(3_600_000),
          policy: {
            ...DEFAULT_DONOR_POLICY,
            nodeSelector: d.selector ? { pool: 'train' } : {},
            costPerGpuHour: d.cost,
            cordoned: d.cordoned,
          },
        },
        peering: d.peered
          ? {
              origin: 'lab',
              donor: id,
              maxGpus: d.peeringMax,
              gpuProducts: d.peeringProducts,
              createdAt: ago(60_000),
            }
          : undefined,
        agent: {
          clusterId: id,
          component: 'agent',
          brokerId: 'b1',
          connectedAt: ago(600_000),
          lastSeenAt: ago(d.silent ? 60_000 : 1000),
        },
        inventory: { clusterId: id, nodes: d.nodes, updatedAt: ago(1000), sequence: 1 },
        reservations,
      };
    });

const requirementArb: fc.Arbitrary<LabelRequirement> = fc.oneof(
  fc.record({
    key: fc.constant(GPU_PRODUCT_LABEL),
    operator: fc.constantFrom<'In' | 'NotIn'>('In', 'NotIn'),
    values: fc.subarray(PRODUCTS.slice(0, 3), { minLength: 1 }),
  }),
  fc.record({
    key: fc.constant(GPU_PRODUCT_LABEL),
    operator: fc.constantFrom<'Exists' | 'DoesNotExist'>('Exists', 'DoesNotExist'),
    values: fc.constant([] as string[]),
  }),
  fc.constant<LabelRequirement>({ key: 'pool', operator: 'In', values: ['train'] }),
);

const requestArb: fc.Arbitrary<PlacementRequest> = fc.record({
  pod: fc.constant({ originCluster: 'lab', namespace: 'ml', name: 'train', uid: 'uid-x' }),
  resource: fc.constantFrom(GPU, GPU, GPU, MIG),
  gpus: fc.constantFrom(1, 1, 2, 4, 8),
  nodeRequirements: fc.oneof(
    fc.constant([] as LabelRequirement[]),
    fc.array(requirementArb, { maxLength: 2 }),
  ),
  tolerations: fc.constantFrom(
    [],
    [{ key: 'gpu', operator: 'Exists' as const, value: '', effect: '' }],
  ),
  cpuMillis: fc.constantFrom(0, 0, 0, 2000),
  memoryBytes: fc.constant(0),
  donors: fc.constantFrom([], [], [], ['d1'], ['d2', 'd3']),
});

function fastOf(snapshot: PlacementSnapshot): FastDonor[] {
  return snapshot.donors
    .filter((d) => d.peering !== undefined)
    .map((d) => ({
      cluster: d.cluster,
      peering: d.peering!,
      agent: d.agent,
      inventory: d.inventory,
      summary: summarizeDonor(d.cluster.policy, d.inventory, d.reservations),
      snapshot: () => d,
    }));
}

const key = (c: { donor: string; node: string; freeAfter: number }): string =>
  `${c.donor}/${c.node}/${c.freeAfter}`;

describe('fastCandidates', () => {
  it('returns exactly the first k candidates of the full evaluation (2,000 cases)', () => {
    let contested = 0;
    let indexed = 0;
    fc.assert(
      fc.property(
        fc.tuple(
          donorArb('d1'),
          donorArb('d2'),
          donorArb('d3'),
          donorArb('d4'),
          donorArb('d5'),
          donorArb('d6'),
        ),
        requestArb,
        fc.constantFrom<PlacementPolicy>('binpack', 'spread', 'cost'),
        fc.constantFrom(1, 2, 4),
        (donors, request, policy, k) => {
          const snapshot: PlacementSnapshot = {
            origin: 'lab',
            now: NOW,
            heartbeatTimeoutMs: 15_000,
            donors,
          };
          const full = evaluatePlacement(snapshot, request, policy);
          const fast = fastCandidates(
            { origin: 'lab', now: NOW, heartbeatTimeoutMs: 15_000, donors: fastOf(snapshot) },
            request,
            policy,
            k,
          );
          expect(fast.map(key)).toEqual(full.candidates.slice(0, k).map(key));
          // What a donor lends, from its summary, is what lendingOf computes from scratch.
          for (const d of donors) {
            const summary = summarizeDonor(d.cluster.policy, d.inventory, d.reservations);
            expect(lendingOf(d, 'lab', NOW, 15_000, (node, r) => freeOn(summary, node, r))).toEqual(
              lendingOf(d, 'lab', NOW, 15_000),
            );
          }
          if (policy !== 'cost' && request.donors.length === 0) {
            // The index, filled in a shuffled order and with a donor re-filed, walks to the same answer.
            const index = new FreeIndex();
            const fastDonors = fastOf(snapshot);
            for (const d of [...fastDonors].reverse()) index.update(d.cluster.id, d.summary);
            if (fastDonors[0]) index.update(fastDonors[0].cluster.id, fastDonors[0].summary);
            const byId = new Map(fastDonors.map((d) => [d.cluster.id, d]));
            const walked = indexedCandidates(
              index,
              (id) => byId.get(id),
              { origin: 'lab', now: NOW, heartbeatTimeoutMs: 15_000 },
              request,
              policy,
              k,
            );
            expect(walked.map(key)).toEqual(full.candidates.slice(0, k).map(key));
            indexed++;
          }
          const donorsWithFits = new Set(full.candidates.map((c) => c.donor)).size;
          if (full.candidates.length > k && donorsWithFits > 1) contested++;
        },
      ),
      { numRuns: 2000 },
    );
    // The cases that matter: more candidates than asked for, on several donors.
    expect(contested).toBeGreaterThan(150);
    expect(indexed).toBeGreaterThan(600);
  });

  it('skips donors whose bound cannot beat what was found, and stops early', () => {
    // Ten donors, one node each, the tightest fit on d0: bin-pack looks at it alone.
    const donors: DonorSnapshot[] = Array.from({ length: 10 }, (_, i) => {
      const id = `d${i}`;
      const nodes: NodeInventory[] = [
        {
          name: 'n0',
          gpus: { [GPU]: { allocatable: 8, free: i === 0 ? 1 : 8 } },
          gpuProduct: PRODUCTS[0]!,
          gpuMemoryMiB: 81559,
          labels: {},
          taints: [],
          ready: true,
          cordoned: false,
          cpuAllocatableMillis: 0,
          cpuFreeMillis: 0,
          memoryAllocatableBytes: 0,
          memoryFreeBytes: 0,
          offloadedPodUids: [],
        },
      ];
      return {
        cluster: { id, role: 'donor', createdAt: ago(1), policy: { ...DEFAULT_DONOR_POLICY } },
        peering: { origin: 'lab', donor: id, maxGpus: 0, gpuProducts: [], createdAt: ago(1) },
        agent: {
          clusterId: id,
          component: 'agent',
          brokerId: 'b1',
          connectedAt: ago(1000),
          lastSeenAt: ago(1000),
        },
        inventory: { clusterId: id, nodes, updatedAt: ago(1), sequence: 1 },
        reservations: [],
      };
    });
    let looked = 0;
    const input = fastOf({ origin: 'lab', now: NOW, heartbeatTimeoutMs: 15_000, donors }).map(
      (d) => ({
        ...d,
        snapshot: () => {
          looked++;
          return donors.find((x) => x.cluster.id === d.cluster.id)!;
        },
      }),
    );
    const request: PlacementRequest = {
      pod: { originCluster: 'lab', namespace: 'ml', name: 'p', uid: 'u' },
      resource: GPU,
      gpus: 1,
      nodeRequirements: [],
      tolerations: [],
      cpuMillis: 0,
      memoryBytes: 0,
      donors: [],
    };
    const top = fastCandidates(
      { origin: 'lab', now: NOW, heartbeatTimeoutMs: 15_000, donors: input },
      request,
      'binpack',
      1,
    );
    expect(top.map(key)).toEqual(['d0/n0/0']);
    expect(looked).toBe(1);
  });
});
