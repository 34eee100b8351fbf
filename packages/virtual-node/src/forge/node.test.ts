import type { V1Node } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { DonorHealth, DonorView } from './donor.js';
import {
  ANNOTATION_CORDONED_BY_DONOR,
  VIRTUAL_NODE_TAINT,
  labelPatch,
  microTime,
  nodeConditions,
  nodeLease,
  nodeStatusStale,
  specChange,
  virtualNodeLabels,
  virtualNodeObject,
  virtualNodeResources,
  virtualNodeStatus,
} from './node.js';

const view = (over: Partial<DonorView> = {}): DonorView => ({
  donor: 'donor-b',
  state: 'Ready',
  lendable: { 'nvidia.com/gpu': 6 },
  inUse: { 'nvidia.com/gpu': 2 },
  products: ['NVIDIA-H100-80GB-HBM3'],
  maxGpus: 0,
  deleting: false,
  ...over,
});
const healthy: DonorHealth = {
  ready: true,
  reason: 'DonorReady',
  message: 'ok',
  unreachable: false,
};
const opts = {
  nodeAddress: '10.0.0.7',
  kubeletPort: 10250,
  kubeletVersion: 'v1.34.4',
  shimVersion: '0.1.0',
};
const now = new Date('2026-05-01T10:00:00.000Z');

describe('virtualNodeLabels', () => {
  it.each([
    {
      name: 'one product: the GPU Feature Discovery label and a per-product label',
      products: ['NVIDIA-H100-80GB-HBM3'],
      has: {
        'nvidia.com/gpu.product': 'NVIDIA-H100-80GB-HBM3',
        'spillway.io/gpu-product.NVIDIA-H100-80GB-HBM3': 'true',
      },
      lacks: [],
    },
    {
      name: 'two products: per-product labels only (a label holds one value)',
      products: ['NVIDIA-A100-SXM4-80GB', 'NVIDIA-L4'],
      has: {
        'spillway.io/gpu-product.NVIDIA-A100-SXM4-80GB': 'true',
        'spillway.io/gpu-product.NVIDIA-L4': 'true',
      },
      lacks: ['nvidia.com/gpu.product'],
    },
    {
      name: 'no products known',
      products: [],
      has: {},
      lacks: ['nvidia.com/gpu.product'],
    },
  ])('$name', ({ products, has, lacks }) => {
    const labels = virtualNodeLabels(view({ products }));
    expect(labels).toMatchObject({
      type: 'virtual-kubelet',
      'spillway.io/donor': 'donor-b',
      'kubernetes.io/hostname': 'spillway-donor-b',
      'topology.kubernetes.io/zone': 'spillway-donor-b',
      ...has,
    });
    for (const k of lacks) expect(labels).not.toHaveProperty(k);
  });

  it('skips products that are not valid label values', () => {
    const labels = virtualNodeLabels(view({ products: ['Tesla T4 (PCIe)'] }));
    expect(Object.keys(labels).some((k) => k.includes('Tesla'))).toBe(false);
    expect(labels).not.toHaveProperty('nvidia.com/gpu.product');
  });
});

describe('virtualNodeResources', () => {
  it('is what the donor lends now plus what this origin already uses there, per resource', () => {
    const r = virtualNodeResources(
      view({
        lendable: { 'nvidia.com/gpu': 6, 'nvidia.com/mig-1g.10gb': 7 },
        inUse: { 'nvidia.com/gpu': 2, 'amd.com/gpu': 1 },
      }),
    );
    expect(r).toMatchObject({
      'nvidia.com/gpu': '8',
      'nvidia.com/mig-1g.10gb': '7',
      'amd.com/gpu': '1',
      pods: '1000',
    });
    expect(Number(r.cpu)).toBeGreaterThanOrEqual(1000);
  });
});

describe('nodeConditions', () => {
  it('keeps lastTransitionTime while a status holds and moves it when it flips', () => {
    const first = nodeConditions(healthy, undefined, now);
    const later = new Date(now.getTime() + 60_000);
    const same = nodeConditions(healthy, first, later);
    const ready = (cs: typeof first) => cs.find((c) => c.type === 'Ready')!;
    expect(ready(same).lastTransitionTime).toBe(ready(first).lastTransitionTime);
    expect(ready(same).lastHeartbeatTime).toBe(later.toISOString());
    const down = nodeConditions(
      { ready: false, reason: 'DonorNotReady', message: 'gone', unreachable: true },
      same,
      later,
    );
    expect(ready(down)).toMatchObject({
      status: 'False',
      reason: 'DonorNotReady',
      lastTransitionTime: later.toISOString(),
    });
    // Pressure conditions never flip: the donor accounts for them.
    expect(down.find((c) => c.type === 'MemoryPressure')?.lastTransitionTime).toBe(
      first.find((c) => c.type === 'MemoryPressure')?.lastTransitionTime,
    );
  });
});

describe('virtualNodeObject', () => {
  it('is tainted, advertises the kubelet endpoint and cordons with the donor', () => {
    const n = virtualNodeObject(view(), healthy, opts, now);
    expect(n.metadata?.name).toBe('spillway-donor-b');
    expect(n.spec?.taints).toEqual([VIRTUAL_NODE_TAINT]);
    expect(n.spec?.unschedulable).toBeUndefined();
    expect(n.status?.daemonEndpoints?.kubeletEndpoint?.Port).toBe(10250);
    expect(n.status?.addresses).toContainEqual({ type: 'InternalIP', address: '10.0.0.7' });
    expect(n.status?.nodeInfo?.kubeletVersion).toBe('v1.34.4');
    const cordoned = virtualNodeObject(view({ state: 'Cordoned' }), healthy, opts, now);
    expect(cordoned.spec?.unschedulable).toBe(true);
    expect(cordoned.metadata?.annotations?.[ANNOTATION_CORDONED_BY_DONOR]).toBe('true');
  });
});

describe('specChange', () => {
  const node = (over: Partial<V1Node['spec']> = {}, ours = false): V1Node => ({
    metadata: {
      name: 'spillway-donor-b',
      annotations: ours ? { [ANNOTATION_CORDONED_BY_DONOR]: 'true' } : {},
    },
    spec: { taints: [VIRTUAL_NODE_TAINT], ...over },
  });
  it.each([
    { name: 'nothing to do', n: node(), v: view(), want: undefined },
    {
      name: "our taint removed: put back, keeping the lifecycle controller's",
      n: node({ taints: [{ key: 'node.kubernetes.io/not-ready', effect: 'NoExecute' }] }),
      v: view(),
      want: {
        taints: [{ key: 'node.kubernetes.io/not-ready', effect: 'NoExecute' }, VIRTUAL_NODE_TAINT],
      },
    },
    {
      name: 'donor cordoned: cordon and mark it ours',
      n: node(),
      v: view({ state: 'Cordoned' }),
      want: { unschedulable: true, cordonAnnotation: 'true' },
    },
    {
      name: 'peering being removed: cordon',
      n: node(),
      v: view({ deleting: true }),
      want: { unschedulable: true, cordonAnnotation: 'true' },
    },
    {
      name: 'donor uncordoned: lift our own cordon',
      n: node({ unschedulable: true }, true),
      v: view(),
      want: { unschedulable: false, cordonAnnotation: null },
    },
    {
      name: "an admin's cordon stays",
      n: node({ unschedulable: true }),
      v: view(),
      want: undefined,
    },
  ])('$name', ({ n, v, want }) => {
    expect(specChange(n, v)).toEqual(want);
  });
});

describe('labelPatch', () => {
  it('sets owned labels and drops product labels no longer true, leaving others alone', () => {
    const patch = labelPatch(
      {
        type: 'virtual-kubelet',
        'nvidia.com/gpu.product': 'NVIDIA-L4',
        'spillway.io/gpu-product.NVIDIA-L4': 'true',
        'team.example.com/owner': 'ml',
      },
      virtualNodeLabels(view()),
    );
    expect(patch).toMatchObject({
      'nvidia.com/gpu.product': 'NVIDIA-H100-80GB-HBM3',
      'spillway.io/gpu-product.NVIDIA-H100-80GB-HBM3': 'true',
      'spillway.io/gpu-product.NVIDIA-L4': null,
    });
    expect(patch).not.toHaveProperty('team.example.com/owner');
    expect(patch).not.toHaveProperty('type');
    expect(labelPatch(virtualNodeLabels(view()), virtualNodeLabels(view()))).toBeUndefined();
  });
});

describe('nodeStatusStale', () => {
  const posted = virtualNodeStatus(view(), healthy, undefined, opts, now);
  it.each([
    { name: 'same status, fresh heartbeat', at: 10_000, v: view(), stale: false },
    { name: 'heartbeat older than the interval', at: 61_000, v: view(), stale: true },
    {
      name: 'capacity changed',
      at: 10_000,
      v: view({ lendable: { 'nvidia.com/gpu': 5 } }),
      stale: true,
    },
  ])('$name', ({ at, v, stale }) => {
    const t = new Date(now.getTime() + at);
    const desired = virtualNodeStatus(v, healthy, posted.conditions, opts, t);
    expect(nodeStatusStale(posted, desired, t, 60_000)).toBe(stale);
  });
  it('sees a Ready flip at once', () => {
    const t = new Date(now.getTime() + 1000);
    const desired = virtualNodeStatus(
      view(),
      { ready: false, reason: 'DonorNotReady', message: 'x', unreachable: true },
      posted.conditions,
      opts,
      t,
    );
    expect(nodeStatusStale(posted, desired, t, 60_000)).toBe(true);
  });
});

describe('lease', () => {
  it('uses MicroTime (six fractional digits), which the API server requires', () => {
    expect(microTime(new Date('2026-05-01T10:00:00.123Z'))).toBe('2026-05-01T10:00:00.123000Z');
    const l = nodeLease({ name: 'spillway-donor-b', uid: 'u-1' }, 40, now);
    expect(l.metadata).toMatchObject({
      namespace: 'kube-node-lease',
      ownerReferences: [{ kind: 'Node', name: 'spillway-donor-b', uid: 'u-1' }],
    });
    expect(l.spec).toMatchObject({ holderIdentity: 'spillway-donor-b', leaseDurationSeconds: 40 });
    expect(String(l.spec?.renewTime)).toBe('2026-05-01T10:00:00.000000Z');
  });
});
