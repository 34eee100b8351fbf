import { describe, expect, it } from 'vitest';
import type { PlacementRequest } from '../core/api.js';
import {
  DEFAULT_DONOR_POLICY,
  type DonorPolicy,
  type NodeInventory,
  type PlacementPolicy,
  type ReservationRecord,
} from '../model.js';
import type { DonorSnapshot, PlacementSnapshot } from './engine.js';
import { evaluateGang, type GangRequest } from './gang.js';

const NOW = new Date('2025-06-01T12:00:00.000Z');
const ago = (ms: number): string => new Date(NOW.getTime() - ms).toISOString();
const GPU = 'nvidia.com/gpu';

function node(name: string, free: number, over: Partial<NodeInventory> = {}): NodeInventory {
  return {
    name,
    gpus: { [GPU]: { allocatable: Math.max(free, 8), free } },
    gpuProduct: 'NVIDIA-A100-SXM4-80GB',
    gpuMemoryMiB: 81920,
    labels: {},
    taints: [],
    ready: true,
    cordoned: false,
    cpuAllocatableMillis: 64_000,
    cpuFreeMillis: 32_000,
    memoryAllocatableBytes: 512 * 2 ** 30,
    memoryFreeBytes: 256 * 2 ** 30,
    offloadedPodUids: [],
    ...over,
  };
}

function donor(
  id: string,
  nodes: NodeInventory[],
  o: {
    policy?: Partial<DonorPolicy>;
    maxGpus?: number;
    reservations?: ReservationRecord[];
    silentMs?: number;
  } = {},
): DonorSnapshot {
  return {
    cluster: {
      id,
      role: 'donor',
      createdAt: ago(3_600_000),
      policy: { ...DEFAULT_DONOR_POLICY, ...o.policy },
    },
    peering: {
      origin: 'lab',
      donor: id,
      maxGpus: o.maxGpus ?? 0,
      gpuProducts: [],
      createdAt: ago(60_000),
    },
    agent: {
      clusterId: id,
      component: 'agent',
      brokerId: 'b1',
      connectedAt: ago(600_000),
      lastSeenAt: ago(o.silentMs ?? 1000),
    },
    inventory: { clusterId: id, nodes, updatedAt: ago(1000), sequence: 1 },
    reservations: o.reservations ?? [],
  };
}

function member(
  name: string,
  gpus: number,
  over: Partial<PlacementRequest> = {},
): PlacementRequest {
  return {
    pod: { originCluster: 'lab', namespace: 'ml', name, uid: `uid-${name}` },
    resource: GPU,
    gpus,
    nodeRequirements: [],
    tolerations: [],
    cpuMillis: 1000,
    memoryBytes: 2 ** 30,
    donors: [],
    ...over,
  };
}

function gang(sizes: number[], name = 'train'): GangRequest {
  return { gang: name, members: sizes.map((g, i) => member(`${name}-${i}`, g)), donors: [] };
}

const snap = (...donors: DonorSnapshot[]): PlacementSnapshot => ({
  origin: 'lab',
  now: NOW,
  heartbeatTimeoutMs: 30_000,
  donors,
});

const layout = (r: ReturnType<typeof evaluateGang>, i = 0): string[] =>
  (r.plans[i]?.members ?? []).map((c) => `${c.donor}/${c.node}:${c.gpus}`);

describe('evaluateGang', () => {
  const cases: {
    name: string;
    snapshot: PlacementSnapshot;
    gang: GangRequest;
    policy?: PlacementPolicy;
    layout?: string[];
    code?: string;
    reason?: RegExp;
  }[] = [
    {
      name: 'one donor holds all, members spread over its nodes',
      snapshot: snap(donor('a', [node('n1', 4), node('n2', 4)])),
      gang: gang([2, 2, 2, 2]),
      layout: ['a/n1:2', 'a/n1:2', 'a/n2:2', 'a/n2:2'],
    },
    {
      name: 'the donor that can hold it wins over a bigger donor whose GPUs are fragmented',
      snapshot: snap(
        donor('a', [
          node('n1', 1),
          node('n2', 1),
          node('n3', 1),
          node('n4', 1),
          node('n5', 1),
          node('n6', 1),
          node('n7', 1),
          node('n8', 1),
        ]),
        donor('b', [node('n1', 8)]),
      ),
      gang: gang([2, 2, 2, 2]),
      layout: ['b/n1:2', 'b/n1:2', 'b/n1:2', 'b/n1:2'],
    },
    {
      name: 'biggest member first: 4+1+1+1+1 on nodes of 4 and 4',
      snapshot: snap(donor('a', [node('n1', 4), node('n2', 4)])),
      gang: gang([1, 1, 4, 1, 1]),
      layout: ['a/n2:1', 'a/n2:1', 'a/n1:4', 'a/n2:1', 'a/n2:1'],
    },
    {
      name: 'a 0-GPU member (Ray head) goes with the gang to a node of the same donor',
      snapshot: snap(donor('a', [node('n1', 2)])),
      gang: gang([0, 1, 1]),
      layout: ['a/n1:0', 'a/n1:1', 'a/n1:1'],
    },
    {
      name: 'open reservations of others count',
      snapshot: snap(
        donor('a', [node('n1', 4)], {
          reservations: [
            {
              id: 'r0',
              origin: 'other',
              donor: 'a',
              node: 'n1',
              resource: GPU,
              gpus: 3,
              pod: { originCluster: 'other', namespace: 'x', name: 'x', uid: 'x' },
              state: 'open',
              createdAt: ago(1000),
              expiresAt: ago(-60_000),
            },
          ],
        }),
      ),
      gang: gang([1, 1]),
      code: 'NO_FIT',
      reason: /1 of 2 members fit/,
    },
    {
      name: 'no donor can hold it: the largest free donor and what it lacks',
      snapshot: snap(donor('a', [node('n1', 4)]), donor('b', [node('n1', 6), node('n2', 6)])),
      gang: gang([4, 4, 4, 4], 'big'),
      code: 'NO_FIT',
      reason:
        /no peered donor can hold all of gang big \(4 members, 16 nvidia.com\/gpu\); the largest free donor, b, has 12 nvidia.com\/gpu free: 2 of 4 members fit; ml\/big-2 \(4 nvidia.com\/gpu\) fits no node left; the most free on one node then is 2/,
    },
    {
      name: 'a lending limit the gang as a whole would pass',
      snapshot: snap(donor('a', [node('n1', 8)], { maxGpus: 3 })),
      gang: gang([1, 1, 1, 1]),
      code: 'QUOTA_EXCEEDED',
      reason: /4 GPUs pass a lending limit \(3 left for lab\)/,
    },
    {
      name: 'a donor that is not ready is not considered',
      snapshot: snap(donor('a', [node('n1', 8)], { silentMs: 120_000 })),
      gang: gang([1, 1]),
      code: 'DONOR_NOT_READY',
    },
    {
      name: 'CPU counts across members placed on one node',
      snapshot: snap(donor('a', [node('n1', 8, { cpuFreeMillis: 1500 }), node('n2', 1)])),
      gang: gang([1, 1]),
      layout: ['a/n2:1', 'a/n1:1'],
    },
    {
      name: 'spread prefers the donor left with most free',
      snapshot: snap(donor('a', [node('n1', 4)]), donor('b', [node('n1', 8)])),
      gang: gang([2, 2]),
      policy: 'spread',
      layout: ['b/n1:2', 'b/n1:2'],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = evaluateGang(c.snapshot, c.gang, c.policy);
      if (c.layout) {
        expect(r.refusal).toBeUndefined();
        expect(layout(r)).toEqual(c.layout);
      } else {
        expect(r.plans).toEqual([]);
        expect(r.refusal?.code).toBe(c.code);
        if (c.reason) expect(r.refusal?.reason).toMatch(c.reason);
      }
    });
  }

  it('explains every donor in its verdicts, holders with an empty reason', () => {
    const r = evaluateGang(
      snap(donor('a', [node('n1', 1)]), donor('b', [node('n1', 4)])),
      gang([2, 2]),
    );
    expect(r.verdicts.map((v) => [v.donor, v.reason === ''])).toEqual([
      ['a', false],
      ['b', true],
    ]);
  });
});
