import { describe, expect, it } from 'vitest';
import { isSpillwayError } from '@spillway/common';
import type {
  CapacityReport__Output,
  NodeCapacity__Output,
  PlaceRequest__Output,
} from '@spillway/api';
import {
  capacityFromProto,
  componentFromProto,
  placeRequestFromProto,
  placementResultToProto,
} from './convert.js';

function node(over: Partial<NodeCapacity__Output> = {}): NodeCapacity__Output {
  return {
    name: 'gpu-1',
    gpus: { 'nvidia.com/gpu': { allocatable: '8', free: '4' } },
    gpu_product: 'NVIDIA-A100-SXM4-80GB',
    gpu_memory_mib: '81920',
    labels: { 'nvidia.com/gpu.product': 'NVIDIA-A100-SXM4-80GB' },
    taints: [{ key: 'gpu', value: 'true', effect: 'NoSchedule' }],
    ready: true,
    cordoned: false,
    cpu_allocatable_millis: '64000',
    cpu_free_millis: '32000',
    memory_allocatable_bytes: '549755813888',
    memory_free_bytes: '274877906944',
    offloaded_pod_uids: ['uid-1'],
    ...over,
  };
}

function report(
  nodes: NodeCapacity__Output[],
  over: Partial<CapacityReport__Output> = {},
): CapacityReport__Output {
  return { full: true, nodes, removed_nodes: [], sequence: '7', ...over };
}

function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (isSpillwayError(err, 'INVALID_ARGUMENT')) return err.field;
    throw err;
  }
  return undefined;
}

describe('capacityFromProto', () => {
  it('converts int64 strings and keeps every node field', () => {
    const u = capacityFromProto(report([node()]));
    expect(u).toEqual({
      full: true,
      sequence: 7,
      removedNodes: [],
      nodes: [
        {
          name: 'gpu-1',
          gpus: { 'nvidia.com/gpu': { allocatable: 8, free: 4 } },
          gpuProduct: 'NVIDIA-A100-SXM4-80GB',
          gpuMemoryMiB: 81920,
          labels: { 'nvidia.com/gpu.product': 'NVIDIA-A100-SXM4-80GB' },
          taints: [{ key: 'gpu', value: 'true', effect: 'NoSchedule' }],
          ready: true,
          cordoned: false,
          cpuAllocatableMillis: 64000,
          cpuFreeMillis: 32000,
          memoryAllocatableBytes: 549755813888,
          memoryFreeBytes: 274877906944,
          offloadedPodUids: ['uid-1'],
        },
      ],
    });
  });

  it.each([
    [
      'negative count',
      node({ gpus: { 'nvidia.com/gpu': { allocatable: '8', free: '-1' } } }),
      'capacity.nodes[0].gpus[nvidia.com/gpu].free',
    ],
    [
      'absurd count',
      node({ gpus: { 'nvidia.com/gpu': { allocatable: '1000001', free: '0' } } }),
      'capacity.nodes[0].gpus[nvidia.com/gpu].allocatable',
    ],
    [
      'free above allocatable',
      node({ gpus: { 'nvidia.com/gpu': { allocatable: '2', free: '3' } } }),
      'capacity.nodes[0].gpus[nvidia.com/gpu].free',
    ],
    ['bad node name', node({ name: 'Not_A_Name' }), 'capacity.nodes[0].name'],
    ['empty node name', node({ name: '' }), 'capacity.nodes[0].name'],
    [
      'bad resource name',
      node({ gpus: { 'nvidia.com/ gpu': { allocatable: '1', free: '1' } } }),
      'capacity.nodes[0].gpus',
    ],
    [
      'bad taint effect',
      node({ taints: [{ key: 'k', value: 'v', effect: 'Sometimes' }] }),
      'capacity.nodes[0].taints[0].effect',
    ],
    [
      'unsafe memory',
      node({ memory_free_bytes: '99999999999999999999' }),
      'capacity.nodes[0].memory_free_bytes',
    ],
  ])('refuses %s naming the field', (_what, n, field) => {
    expect(fieldOf(() => capacityFromProto(report([n])))).toBe(field);
  });

  it('refuses more than 5,000 nodes and duplicate names', () => {
    const many = Array.from({ length: 5001 }, (_, i) => node({ name: `n-${i}` }));
    expect(fieldOf(() => capacityFromProto(report(many)))).toBe('capacity.nodes');
    const ok = Array.from({ length: 5000 }, (_, i) => node({ name: `n-${i}` }));
    expect(capacityFromProto(report(ok)).nodes).toHaveLength(5000);
    expect(fieldOf(() => capacityFromProto(report([node(), node()])))).toBe(
      'capacity.nodes[1].name',
    );
  });
});

describe('placeRequestFromProto', () => {
  const base: PlaceRequest__Output = {
    pod: { origin_cluster: 'origin-a', namespace: 'ml', name: 'train-0', uid: 'u-1' },
    resource_name: 'nvidia.com/gpu',
    gpus: 2,
    node_requirements: [{ key: 'nvidia.com/gpu.product', operator: 'In', values: ['A100'] }],
    tolerations: [{ key: 'gpu', operator: '', value: 'true', effect: 'NoSchedule' }],
    cpu_millis: '4000',
    memory_bytes: '17179869184',
    donors: ['donor-b'],
  };

  it('converts a valid request, defaulting an empty toleration operator to Equal', () => {
    expect(placeRequestFromProto(base)).toEqual({
      pod: { originCluster: 'origin-a', namespace: 'ml', name: 'train-0', uid: 'u-1' },
      resource: 'nvidia.com/gpu',
      gpus: 2,
      nodeRequirements: [{ key: 'nvidia.com/gpu.product', operator: 'In', values: ['A100'] }],
      tolerations: [{ key: 'gpu', operator: 'Equal', value: 'true', effect: 'NoSchedule' }],
      cpuMillis: 4000,
      memoryBytes: 17179869184,
      donors: ['donor-b'],
    });
  });

  it.each([
    ['no pod', { pod: null }, 'pod'],
    ['zero gpus', { gpus: 0 }, 'gpus'],
    [
      'bad operator',
      { node_requirements: [{ key: 'k', operator: 'Near', values: [] }] },
      'node_requirements[0].operator',
    ],
    [
      'Gt without integer',
      { node_requirements: [{ key: 'k', operator: 'Gt', values: ['x'] }] },
      'node_requirements[0].values',
    ],
    ['bad donor id', { donors: ['Donor_B'] }, 'donors[0]'],
    ['negative cpu', { cpu_millis: '-1' }, 'cpu_millis'],
  ] as [string, Partial<PlaceRequest__Output>, string][])('refuses %s', (_what, over, field) => {
    expect(fieldOf(() => placeRequestFromProto({ ...base, ...over }))).toBe(field);
  });
});

describe('components and placement results', () => {
  it('accepts only the two stream components', () => {
    expect(componentFromProto('COMPONENT_AGENT')).toBe('agent');
    expect(componentFromProto('COMPONENT_VIRTUAL_NODE')).toBe('virtual-node');
    expect(fieldOf(() => componentFromProto('COMPONENT_UNSPECIFIED'))).toBe('hello.component');
  });

  it('carries a refusal as reason and code, not as an error', () => {
    expect(
      placementResultToProto({
        placed: false,
        code: 'NO_FIT',
        reason: 'no node fits 4 nvidia.com/gpu',
        verdicts: [{ donor: 'donor-b', node: 'gpu-1', reason: 'only 2 free', score: 0 }],
      }),
    ).toEqual({
      reason: 'no node fits 4 nvidia.com/gpu',
      reason_code: 'NO_FIT',
      verdicts: [{ donor_cluster: 'donor-b', node: 'gpu-1', reason: 'only 2 free', score: 0 }],
    });
  });
});
