import type { V1Node, V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  capacityKey,
  computeNode,
  diffInventory,
  podsHoldingResources,
  type InventoryPolicy,
} from './compute.js';

const policy: InventoryPolicy = {
  gpuResources: ['nvidia.com/gpu', 'nvidia.com/mig-*'],
  nodeSelector: {},
  reservedGpusPerNode: 0,
};

function node(
  name: string,
  over: {
    gpus?: Record<string, string>;
    ready?: boolean;
    unschedulable?: boolean;
    labels?: Record<string, string>;
  } = {},
): V1Node {
  return {
    metadata: {
      name,
      labels: {
        'nvidia.com/gpu.product': 'NVIDIA-A100',
        'nvidia.com/gpu.memory': '81920',
        ...(over.labels ?? {}),
      },
    },
    spec: {
      unschedulable: over.unschedulable ?? false,
      taints: [{ key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' }],
    },
    status: {
      allocatable: { cpu: '32', memory: '256Gi', ...(over.gpus ?? { 'nvidia.com/gpu': '8' }) },
      conditions: [{ type: 'Ready', status: over.ready === false ? 'False' : 'True' }],
    },
  };
}

function pod(nodeName: string, gpus: number, phase = 'Running', originUid?: string): V1Pod {
  return {
    metadata: {
      name: `p-${Math.random()}`,
      ...(originUid ? { labels: { 'spillway.io/origin-uid': originUid } } : {}),
    },
    spec: {
      nodeName,
      containers: [
        {
          name: 'c',
          resources: { requests: { cpu: '1', memory: '1Gi', 'nvidia.com/gpu': String(gpus) } },
        },
      ],
    },
    status: { phase },
  };
}

describe('computeNode', () => {
  it('subtracts the GPU requests of running pods from allocatable', () => {
    const pods = [pod('n1', 2), pod('n1', 1, 'Pending'), pod('n1', 4, 'Succeeded'), pod('n2', 3)];
    const v = computeNode(node('n1'), podsHoldingResources(pods, 'n1'), policy);
    expect(v.eligible).toBe(true);
    if (!v.eligible) return;
    expect(v.capacity.gpus).toEqual({ 'nvidia.com/gpu': { allocatable: '8', free: '5' } });
    expect(v.capacity.cpu_free_millis).toBe(String(32_000 - 2000));
    expect(v.capacity.gpu_product).toBe('NVIDIA-A100');
    expect(v.capacity.gpu_memory_mib).toBe('81920');
    expect(v.capacity.taints).toEqual([
      { key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' },
    ]);
  });

  it('never reports negative free and keeps reserved GPUs back', () => {
    const v = computeNode(node('n1', { gpus: { 'nvidia.com/gpu': '2' } }), [pod('n1', 1)], {
      ...policy,
      reservedGpusPerNode: 3,
    });
    expect(v.eligible && v.capacity.gpus?.['nvidia.com/gpu']).toEqual({
      allocatable: '2',
      free: '0',
    });
  });

  it('tracks MIG resources separately', () => {
    const v = computeNode(
      node('n1', { gpus: { 'nvidia.com/gpu': '0', 'nvidia.com/mig-1g.10gb': '7' } }),
      [],
      policy,
    );
    expect(v.eligible && v.capacity.gpus).toEqual({
      'nvidia.com/mig-1g.10gb': { allocatable: '7', free: '7' },
    });
  });

  it.each([
    ['NotReady', node('n', { ready: false }), 'NotReady'],
    ['cordoned', node('n', { unschedulable: true }), 'cordoned'],
    ['no GPUs', node('n', { gpus: {} }), 'no GPUs'],
  ])('excludes a node that is %s', (_what, n, reason) => {
    expect(computeNode(n, [], policy)).toEqual({ eligible: false, reason });
  });

  it('applies the donor node selector', () => {
    const sel = { ...policy, nodeSelector: { 'spillway.io/lend': 'true' } };
    expect(computeNode(node('n'), [], sel).eligible).toBe(false);
    expect(
      computeNode(node('n', { labels: { 'spillway.io/lend': 'true' } }), [], sel).eligible,
    ).toBe(true);
  });

  it('never lends the GPUs of a virtual node (another cluster lends them)', () => {
    const v = computeNode(
      node('spillway-donor-a', { labels: { type: 'virtual-kubelet' } }),
      [],
      policy,
    );
    expect(v).toEqual({ eligible: false, reason: 'virtual node' });
  });

  it('lists the offloaded pods it counted', () => {
    const v = computeNode(
      node('n1'),
      [pod('n1', 1, 'Running', 'uid-b'), pod('n1', 1, 'Running', 'uid-a'), pod('n1', 1)],
      policy,
    );
    expect(v.eligible && v.capacity.offloaded_pod_uids).toEqual(['uid-a', 'uid-b']);
  });
});

describe('diffInventory', () => {
  it('reports changed and removed nodes only', () => {
    const a = computeNode(node('a'), [], policy);
    const b = computeNode(node('b'), [], policy);
    if (!a.eligible || !b.eligible) throw new Error('fixture');
    const prev = new Map([
      ['a', capacityKey(a.capacity)],
      ['b', capacityKey(b.capacity)],
      ['gone', 'x'],
    ]);
    const b2 = computeNode(node('b'), [pod('b', 1)], policy);
    if (!b2.eligible) throw new Error('fixture');
    const d = diffInventory(
      prev,
      new Map([
        ['a', a.capacity],
        ['b', b2.capacity],
      ]),
    );
    expect(d.upserts.map((c) => c.name)).toEqual(['b']);
    expect(d.removed).toEqual(['gone']);
  });

  it('sees a change inside the GPU map', () => {
    const a = computeNode(node('a'), [], policy);
    const a2 = computeNode(node('a'), [pod('a', 1)], policy);
    if (!a.eligible || !a2.eligible) throw new Error('fixture');
    a2.capacity.cpu_free_millis = a.capacity.cpu_free_millis!;
    a2.capacity.memory_free_bytes = a.capacity.memory_free_bytes!;
    expect(capacityKey(a.capacity)).not.toBe(capacityKey(a2.capacity));
  });
});
