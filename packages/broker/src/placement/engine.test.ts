import { describe, expect, it } from 'vitest';
import type { PlacementRequest } from '../core/api.js';
import {
  DEFAULT_DONOR_POLICY,
  type ClusterRecord,
  type DonorPolicy,
  type NodeInventory,
  type PeeringRecord,
  type PlacementPolicy,
  type ReservationRecord,
} from '../model.js';
import {
  clusterReadiness,
  evaluatePlacement,
  lendingOf,
  requirementMismatch,
  tolerates,
  type DonorSnapshot,
  type PlacementSnapshot,
} from './engine.js';

const NOW = new Date('2025-06-01T12:00:00.000Z');
const ago = (ms: number): string => new Date(NOW.getTime() - ms).toISOString();

function node(name: string, free: number, over: Partial<NodeInventory> = {}): NodeInventory {
  return {
    name,
    gpus: { 'nvidia.com/gpu': { allocatable: Math.max(free, 8), free } },
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

interface DonorOpts {
  nodes?: NodeInventory[];
  policy?: Partial<DonorPolicy>;
  peering?: Partial<PeeringRecord> | false;
  lastSeenMsAgo?: number | false;
  reservations?: ReservationRecord[];
  role?: ClusterRecord['role'];
  revoked?: boolean;
}

function donor(id: string, o: DonorOpts = {}): DonorSnapshot {
  const cluster: ClusterRecord = {
    id,
    role: o.role ?? 'donor',
    createdAt: ago(3_600_000),
    policy: { ...DEFAULT_DONOR_POLICY, ...o.policy },
    ...(o.revoked ? { revokedAt: ago(1000) } : {}),
  };
  return {
    cluster,
    peering:
      o.peering === false
        ? undefined
        : {
            origin: 'lab',
            donor: id,
            maxGpus: 0,
            gpuProducts: [],
            createdAt: ago(60_000),
            ...o.peering,
          },
    agent:
      o.lastSeenMsAgo === false
        ? undefined
        : {
            clusterId: id,
            component: 'agent',
            brokerId: 'b1',
            connectedAt: ago(600_000),
            lastSeenAt: ago(o.lastSeenMsAgo ?? 1000),
          },
    inventory: {
      clusterId: id,
      nodes: o.nodes ?? [node('n1', 8)],
      updatedAt: ago(1000),
      sequence: 1,
    },
    reservations: o.reservations ?? [],
  };
}

let seq = 0;
function reservation(
  d: string,
  n: string,
  gpus: number,
  over: Partial<ReservationRecord> = {},
): ReservationRecord {
  seq++;
  return {
    id: `r${seq}`,
    origin: 'lab',
    donor: d,
    node: n,
    resource: 'nvidia.com/gpu',
    gpus,
    pod: { originCluster: 'lab', namespace: 'ml', name: `p${seq}`, uid: `u${seq}` },
    state: 'open',
    createdAt: ago(1000),
    expiresAt: new Date(NOW.getTime() + 60_000).toISOString(),
    ...over,
  };
}

function req(gpus: number, over: Partial<PlacementRequest> = {}): PlacementRequest {
  return {
    pod: { originCluster: 'lab', namespace: 'ml', name: 'train', uid: 'uid-x' },
    resource: 'nvidia.com/gpu',
    gpus,
    nodeRequirements: [],
    tolerations: [],
    cpuMillis: 0,
    memoryBytes: 0,
    donors: [],
    ...over,
  };
}

const snap = (...donors: DonorSnapshot[]): PlacementSnapshot => ({
  origin: 'lab',
  now: NOW,
  heartbeatTimeoutMs: 15_000,
  donors,
});

const reasons = (r: ReturnType<typeof evaluatePlacement>): string[] =>
  r.verdicts.filter((v) => v.reason !== '').map((v) => v.reason);

describe('label requirements and taints', () => {
  const labels = { 'nvidia.com/gpu.memory': '81920', zone: 'a', weird: '12x' };
  it.each<[string, Parameters<typeof requirementMismatch>[1], boolean]>([
    ['In match', { key: 'zone', operator: 'In', values: ['a', 'b'] }, true],
    ['In miss', { key: 'zone', operator: 'In', values: ['b'] }, false],
    ['In absent', { key: 'pool', operator: 'In', values: ['x'] }, false],
    ['NotIn match', { key: 'zone', operator: 'NotIn', values: ['b'] }, true],
    ['NotIn absent matches', { key: 'pool', operator: 'NotIn', values: ['x'] }, true],
    ['NotIn miss', { key: 'zone', operator: 'NotIn', values: ['a'] }, false],
    ['Exists', { key: 'zone', operator: 'Exists', values: [] }, true],
    ['Exists absent', { key: 'pool', operator: 'Exists', values: [] }, false],
    ['DoesNotExist', { key: 'pool', operator: 'DoesNotExist', values: [] }, true],
    ['DoesNotExist present', { key: 'zone', operator: 'DoesNotExist', values: [] }, false],
    ['Gt numeric', { key: 'nvidia.com/gpu.memory', operator: 'Gt', values: ['40000'] }, true],
    ['Gt equal fails', { key: 'nvidia.com/gpu.memory', operator: 'Gt', values: ['81920'] }, false],
    ['Lt numeric', { key: 'nvidia.com/gpu.memory', operator: 'Lt', values: ['90000'] }, true],
    ['Lt fails', { key: 'nvidia.com/gpu.memory', operator: 'Lt', values: ['40000'] }, false],
    ['Gt non-numeric label', { key: 'weird', operator: 'Gt', values: ['1'] }, false],
    ['Gt absent', { key: 'pool', operator: 'Gt', values: ['1'] }, false],
  ])('%s', (_n, r, ok) => {
    expect(requirementMismatch(labels, r) === undefined).toBe(ok);
  });

  it('explains a mismatch', () => {
    expect(requirementMismatch(labels, { key: 'zone', operator: 'In', values: ['b', 'c'] })).toBe(
      'label zone is "a", pod needs In [b, c]',
    );
  });

  it.each<[string, Parameters<typeof tolerates>[1], boolean]>([
    [
      'exact Equal',
      [{ key: 'gpu', operator: 'Equal', value: 'shared', effect: 'NoSchedule' }],
      true,
    ],
    [
      'wrong value',
      [{ key: 'gpu', operator: 'Equal', value: 'other', effect: 'NoSchedule' }],
      false,
    ],
    ['Exists on key', [{ key: 'gpu', operator: 'Exists', value: '', effect: '' }], true],
    ['wrong effect', [{ key: 'gpu', operator: 'Exists', value: '', effect: 'NoExecute' }], false],
    ['tolerate everything', [{ key: '', operator: 'Exists', value: '', effect: '' }], true],
    ['none', [], false],
  ])('toleration: %s', (_n, tols, ok) => {
    expect(tolerates({ key: 'gpu', value: 'shared', effect: 'NoSchedule' }, tols)).toBe(ok);
  });
});

describe('readiness', () => {
  const cluster = donor('d').cluster;
  it.each<[string, number | false, string, string]>([
    ['fresh heartbeat', 1000, 'Ready', ''],
    ['at the timeout', 15_000, 'Ready', ''],
    ['silent too long', 20_000, 'NotReady', 'NotReady (no heartbeat for 20s)'],
    ['never connected', false, 'Pending', 'Pending (agent never connected)'],
  ])('%s', (_n, lastSeen, state, reason) => {
    const d = donor('d', { lastSeenMsAgo: lastSeen });
    expect(clusterReadiness(cluster, d.agent, NOW, 15_000)).toEqual({ state, reason });
  });
});

describe('evaluatePlacement: filters and verdicts', () => {
  it('rejects donors and nodes with a human reason each', () => {
    const r = evaluatePlacement(
      snap(
        donor('donor-a', { peering: false }),
        donor('donor-b', {
          lastSeenMsAgo: 20_000,
        }),
        donor('donor-c', {
          nodes: [
            node('n1', 2),
            node('n2', 8, { ready: false }),
            node('n3', 8, { cordoned: true }),
            node('n4', 8, { taints: [{ key: 'dedicated', value: 'infra', effect: 'NoSchedule' }] }),
            node('n5', 8, { gpus: { 'amd.com/gpu': { allocatable: 8, free: 8 } } }),
            node('n6', 8, { cpuFreeMillis: 1000 }),
            node('n7', 8, { memoryFreeBytes: 2 ** 30 }),
            node('n8', 8, { taints: [{ key: 'soft', value: '', effect: 'PreferNoSchedule' }] }),
          ],
        }),
        donor('donor-d', {
          peering: { maxGpus: 8 },
          reservations: [reservation('donor-d', 'n1', 8, { state: 'bound' })],
          nodes: [node('n1', 8), node('n2', 8)],
        }),
        donor('donor-e', { policy: { cordoned: true } }),
        donor('donor-f', { lastSeenMsAgo: false }),
        { ...donor('donor-g', { lastSeenMsAgo: false }), inventory: undefined },
      ),
      req(4, { cpuMillis: 4000, memoryBytes: 8 * 2 ** 30 }),
    );
    expect(r.refusal).toBeUndefined();
    expect(r.candidates.map((c) => `${c.donor}/${c.node}`)).toEqual(['donor-c/n8']);
    expect(reasons(r)).toEqual([
      'donor-a: not peered with origin lab',
      'donor-b: NotReady (no heartbeat for 20s)',
      'donor-c/n1: 2 nvidia.com/gpu free, 4 requested',
      'donor-c/n2: node NotReady',
      'donor-c/n3: node cordoned',
      'donor-c/n4: untolerated taint dedicated=infra:NoSchedule',
      'donor-c/n5: has no nvidia.com/gpu',
      'donor-c/n6: 1000m CPU free, 4000m requested',
      'donor-c/n7: 1Gi memory free, 8Gi requested',
      'donor-d: peering limit 8 GPUs reached (8 in use)',
      'donor-e: cordoned',
      'donor-f: NotReady (agent disconnected)',
      'donor-g: Pending (agent never connected)',
    ]);
  });

  it('applies the donor policy nodeSelector, the peering products and GFD labels', () => {
    const r = evaluatePlacement(
      snap(
        donor('d', {
          policy: { nodeSelector: { 'spillway.io/lend': 'true' } },
          peering: { gpuProducts: ['NVIDIA-A100-SXM4-80GB', 'NVIDIA-H100-80GB-HBM3'] },
          nodes: [
            node('a100-lent', 8, { labels: { 'spillway.io/lend': 'true' } }),
            node('a100-private', 8),
            node('t4', 8, {
              gpuProduct: 'Tesla-T4',
              gpuMemoryMiB: 15360,
              labels: { 'spillway.io/lend': 'true' },
            }),
            node('h100', 8, {
              gpuProduct: 'NVIDIA-H100-80GB-HBM3',
              labels: { 'spillway.io/lend': 'true' },
            }),
          ],
        }),
      ),
      req(1, {
        nodeRequirements: [
          { key: 'nvidia.com/gpu.memory', operator: 'Gt', values: ['40000'] },
          { key: 'nvidia.com/gpu.product', operator: 'In', values: ['NVIDIA-H100-80GB-HBM3'] },
        ],
      }),
    );
    expect(r.candidates.map((c) => c.node)).toEqual(['h100']);
    expect(reasons(r)).toEqual([
      'd/a100-lent: label nvidia.com/gpu.product is "NVIDIA-A100-SXM4-80GB", pod needs In [NVIDIA-H100-80GB-HBM3]',
      'd/a100-private: not lent by the donor policy (needs spillway.io/lend=true)',
      'd/t4: product Tesla-T4 not lent to lab (peering allows NVIDIA-A100-SXM4-80GB, NVIDIA-H100-80GB-HBM3)',
    ]);
  });

  it('subtracts open reservations the report does not reflect yet, but not bound ones it does', () => {
    const reflected = reservation('d', 'n1', 2, { state: 'bound' });
    const d = donor('d', {
      nodes: [node('n1', 4, { offloadedPodUids: [reflected.pod.uid] })],
      reservations: [
        reservation('d', 'n1', 2),
        reflected,
        reservation('d', 'n1', 1, { resource: 'amd.com/gpu' }),
      ],
    });
    expect(evaluatePlacement(snap(d), req(2)).candidates.map((c) => c.freeBefore)).toEqual([2]);
    const r = evaluatePlacement(snap(d), req(3));
    expect(reasons(r)).toEqual(['d/n1: 2 nvidia.com/gpu free, 3 requested']);
  });

  it('restricts to the requested donors', () => {
    const r = evaluatePlacement(snap(donor('a'), donor('b')), req(1, { donors: ['b', 'ghost'] }));
    expect(r.candidates.map((c) => c.donor)).toEqual(['b']);
    expect(reasons(r)).toEqual(['ghost: not a known donor cluster']);
  });

  it('passes the limits the store must enforce', () => {
    const r = evaluatePlacement(
      snap(donor('d', { peering: { maxGpus: 6 }, policy: { maxGpus: 10, maxGpusPerOrigin: 7 } })),
      req(1),
    );
    expect(r.candidates[0]).toMatchObject({
      peeringMaxGpus: 6,
      donorMaxGpus: 10,
      donorMaxGpusPerOrigin: 7,
    });
  });
});

describe('evaluatePlacement: refusal codes', () => {
  const cases: [string, DonorSnapshot[], PlacementRequest, string, string][] = [
    ['no donors at all', [], req(1), 'NO_PEERING', 'origin lab is not peered with any donor'],
    [
      'only unpeered donors',
      [donor('a', { peering: false })],
      req(1),
      'NO_PEERING',
      'origin lab is not peered with any donor',
    ],
    [
      'restricted to an unpeered donor',
      [donor('a'), donor('b', { peering: false })],
      req(1, { donors: ['b'] }),
      'NO_PEERING',
      'origin lab is not peered with b',
    ],
    [
      'peering being removed',
      [donor('a', { peering: { deletingSince: ago(10) } })],
      req(1),
      'NO_PEERING',
      'origin lab is not peered with any donor',
    ],
    [
      'all peered donors down',
      [
        donor('a', { lastSeenMsAgo: 20_000 }),
        donor('b', { policy: { cordoned: true } }),
        donor('c', { peering: false }),
      ],
      req(1),
      'DONOR_NOT_READY',
      'no peered donor is ready: a: NotReady (no heartbeat for 20s); b: cordoned',
    ],
    [
      'quota where a node would fit',
      [
        donor('a', { policy: { maxGpusPerOrigin: 4 }, reservations: [reservation('a', 'n1', 3)] }),
        donor('b', { nodes: [node('n1', 1)] }),
      ],
      req(2),
      'QUOTA_EXCEEDED',
      'every donor with a node that fits 2 nvidia.com/gpu is at its lending limit: a: per-origin limit 4 GPUs would be exceeded (3 in use, 2 requested)',
    ],
    [
      'donor total limit counts other origins',
      [
        donor('a', {
          policy: { maxGpus: 4 },
          reservations: [reservation('a', 'n1', 4, { origin: 'other' })],
        }),
      ],
      req(1),
      'QUOTA_EXCEEDED',
      'every donor with a node that fits 1 nvidia.com/gpu is at its lending limit: a: donor limit 4 GPUs reached (4 in use)',
    ],
    [
      'quota-limited donor without room is NO_FIT',
      [
        donor('a', {
          peering: { maxGpus: 1 },
          nodes: [node('n1', 1)],
          reservations: [reservation('a', 'n1', 1, { origin: 'lab', state: 'bound' })],
        }),
      ],
      req(4, {
        nodeRequirements: [
          { key: 'nvidia.com/gpu.product', operator: 'In', values: ['NVIDIA-A100-SXM4-80GB'] },
        ],
      }),
      'NO_FIT',
      'no node on a peered donor fits 4 nvidia.com/gpu of product NVIDIA-A100-SXM4-80GB (the most free on one eligible node is 1)',
    ],
    [
      'fragmented capacity',
      [
        donor('a', { nodes: [node('n1', 3), node('n2', 3)] }),
        donor('b', { lastSeenMsAgo: 60_000 }),
      ],
      req(4),
      'NO_FIT',
      'no node on a peered donor fits 4 nvidia.com/gpu (the most free on one eligible node is 3; not ready: b: NotReady (no heartbeat for 1m))',
    ],
    [
      'no capacity report',
      [{ ...donor('a'), inventory: undefined }],
      req(1),
      'NO_FIT',
      'no node on a peered donor fits 1 nvidia.com/gpu',
    ],
  ];
  it.each(cases)('%s', (_n, donors, request, code, reason) => {
    const r = evaluatePlacement(snap(...donors), request);
    expect(r.candidates).toEqual([]);
    expect(r.refusal).toEqual({ code, reason });
  });
});

describe('evaluatePlacement: scoring', () => {
  const nodes = [node('big', 8), node('mid', 4), node('small', 2)];
  it.each<[PlacementPolicy, string[]]>([
    ['binpack', ['small', 'mid', 'big']],
    ['spread', ['big', 'mid', 'small']],
  ])('%s orders nodes', (policy, order) => {
    const r = evaluatePlacement(snap(donor('d', { nodes })), req(2), policy);
    expect(r.candidates.map((c) => c.node)).toEqual(order);
  });

  it('cost prefers the cheapest donor, then binpacks', () => {
    const r = evaluatePlacement(
      snap(
        donor('cheap', { policy: { costPerGpuHour: 0.5 }, nodes: [node('x', 8), node('y', 2)] }),
        donor('pricey', { policy: { costPerGpuHour: 2 }, nodes: [node('z', 1)] }),
      ),
      req(1),
      'cost',
    );
    expect(r.candidates.map((c) => `${c.donor}/${c.node}`)).toEqual([
      'cheap/y',
      'cheap/x',
      'pricey/z',
    ]);
    expect(r.candidates.map((c) => c.score)).toEqual([-0.5, -0.5, -2]);
  });

  it('breaks ties by donor then node name, whatever the input order', () => {
    const a = donor('a', { nodes: [node('n2', 4), node('n1', 4)] });
    const b = donor('b', { nodes: [node('n0', 4)] });
    for (const order of [
      [a, b],
      [b, a],
    ]) {
      const r = evaluatePlacement(snap(...order), req(1));
      expect(r.candidates.map((c) => `${c.donor}/${c.node}`)).toEqual(['a/n1', 'a/n2', 'b/n0']);
    }
  });

  /** Places `count` 1-GPU pods, each on the engine's first choice, as reservations. */
  function fill(policy: PlacementPolicy, count: number): DonorSnapshot {
    const d = donor('d', { nodes: [node('n1', 8), node('n2', 8)] });
    for (let i = 0; i < count; i++) {
      const best = evaluatePlacement(snap(d), req(1), policy).candidates[0]!;
      d.reservations.push(reservation('d', best.node, 1));
    }
    return d;
  }

  it('binpack keeps a node whole for an 8-GPU pod after 1-GPU placements; spread fragments', () => {
    const packed = fill('binpack', 8);
    expect(
      evaluatePlacement(snap(packed), req(8), 'binpack').candidates.map((c) => c.node),
    ).toEqual(['n2']);
    const spread = fill('spread', 8);
    const r = evaluatePlacement(snap(spread), req(8), 'spread');
    expect(r.candidates).toEqual([]);
    expect(r.refusal?.code).toBe('NO_FIT');
    expect(reasons(r)).toEqual([
      'd/n1: 4 nvidia.com/gpu free, 8 requested',
      'd/n2: 4 nvidia.com/gpu free, 8 requested',
    ]);
  });
});

describe('lendingOf', () => {
  it('sums effective free on lent nodes and clips to the quota headroom', () => {
    const d = donor('d', {
      peering: { maxGpus: 10 },
      nodes: [
        node('n1', 8),
        node('n2', 6, {
          gpus: {
            'nvidia.com/gpu': { allocatable: 8, free: 6 },
            'nvidia.com/mig-1g.10gb': { allocatable: 7, free: 7 },
          },
        }),
        node('down', 8, { ready: false }),
      ],
      reservations: [reservation('d', 'n1', 3), reservation('d', 'n2', 1, { origin: 'other' })],
    });
    expect(lendingOf(d, 'lab', NOW, 15_000)).toEqual({
      // 5 + 5 free after reservations, clipped to 10 - 3 in use.
      lendable: { 'nvidia.com/gpu': 7, 'nvidia.com/mig-1g.10gb': 7 },
      inUse: { 'nvidia.com/gpu': 3 },
      products: ['NVIDIA-A100-SXM4-80GB'],
    });
  });

  it('lends nothing from a NotReady or cordoned donor', () => {
    expect(lendingOf(donor('d', { lastSeenMsAgo: 30_000 }), 'lab', NOW, 15_000).lendable).toEqual({
      'nvidia.com/gpu': 0,
    });
    expect(
      lendingOf(donor('d', { policy: { cordoned: true } }), 'lab', NOW, 15_000).lendable,
    ).toEqual({ 'nvidia.com/gpu': 0 });
  });
});
