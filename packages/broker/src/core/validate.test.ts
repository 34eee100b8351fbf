import { describe, expect, it } from 'vitest';
import { SpillwayError } from '@spillway/common';
import type { NodeInventory } from '../model.js';
import type { PlacementRequest } from './api.js';
import {
  validateCapacityUpdate,
  validateClusterPatch,
  validateJoinTokenInput,
  validatePeeringInput,
  validatePlacementRequest,
} from './validate.js';

function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof SpillwayError && err.code === 'INVALID_ARGUMENT') return err.field;
    throw err;
  }
  throw new Error('expected INVALID_ARGUMENT');
}

const base: PlacementRequest = {
  pod: { originCluster: 'lab', namespace: 'ml', name: 'p', uid: 'u' },
  resource: 'nvidia.com/gpu',
  gpus: 1,
  nodeRequirements: [],
  tolerations: [],
  cpuMillis: 0,
  memoryBytes: 0,
  donors: [],
};

describe('validatePlacementRequest', () => {
  it('fills the origin and defaults, and copies the input', () => {
    const input = {
      ...base,
      pod: { ...base.pod, originCluster: '' },
      tolerations: [{ key: 'gpu' } as never],
    };
    const out = validatePlacementRequest('lab', input);
    expect(out.pod.originCluster).toBe('lab');
    expect(out.tolerations).toEqual([{ key: 'gpu', operator: 'Equal', value: '', effect: '' }]);
    expect(out).not.toBe(input);
  });

  it.each<[string, Partial<PlacementRequest>, string]>([
    ['zero GPUs', { gpus: 0 }, 'gpus'],
    ['too many GPUs', { gpus: 65 }, 'gpus'],
    ['fractional GPUs', { gpus: 0.5 }, 'gpus'],
    ['string GPUs', { gpus: '2' as never }, 'gpus'],
    ['no resource', { resource: '' }, 'resource'],
    ['negative memory', { memoryBytes: -5 }, 'memoryBytes'],
    ['fractional cpu', { cpuMillis: 1.5 }, 'cpuMillis'],
    ['another origin', { pod: { ...base.pod, originCluster: 'other' } }, 'pod.originCluster'],
    ['no pod name', { pod: { ...base.pod, name: '' } }, 'pod.name'],
    [
      'bad operator',
      { nodeRequirements: [{ key: 'a', operator: 'Like' as never, values: [] }] },
      'nodeRequirements[0].operator',
    ],
    [
      'In without values',
      { nodeRequirements: [{ key: 'a', operator: 'In', values: [] }] },
      'nodeRequirements[0].values',
    ],
    [
      'empty-key Equal toleration',
      { tolerations: [{ key: '', operator: 'Equal', value: 'x', effect: '' }] },
      'tolerations[0].key',
    ],
    ['bad donor id', { donors: ['UPPER'] }, 'donors[0]'],
    ['unknown policy', { policy: 'greedy' as never }, 'policy'],
  ])('refuses %s', (_n, over, field) => {
    expect(fieldOf(() => validatePlacementRequest('lab', { ...base, ...over }))).toBe(field);
  });
});

describe('validateClusterPatch', () => {
  it('keeps only what was given', () => {
    expect(validateClusterPatch({ cordoned: true })).toEqual({ cordoned: true });
    expect(
      validateClusterPatch({
        policy: { maxGpus: 4, nodeSelector: { pool: 'lend' }, podSecurity: 'restricted' },
      }),
    ).toEqual({
      policy: { maxGpus: 4, nodeSelector: { pool: 'lend' }, podSecurity: 'restricted' },
    });
  });

  it.each<[unknown, string]>([
    [{ cordon: true }, 'cordon'],
    [{ cordoned: 'yes' }, 'cordoned'],
    [{ policy: { maxGpus: 1.5 } }, 'policy.maxGpus'],
    [{ policy: { maxGpusPerOrigin: -1 } }, 'policy.maxGpusPerOrigin'],
    [{ policy: { costPerGpuHour: Number.NaN } }, 'policy.costPerGpuHour'],
    [{ policy: { podSecurity: 'privileged' } }, 'policy.podSecurity'],
    [{ policy: { nodeSelector: ['a'] } }, 'policy.nodeSelector'],
    [{ policy: { nodeSelector: { pool: 3 } } }, 'policy.nodeSelector[pool]'],
    [{ policy: { owner: 'me' } }, 'policy.owner'],
  ])('refuses %j', (patch, field) => {
    expect(fieldOf(() => validateClusterPatch(patch as never))).toBe(field);
  });
});

describe('join tokens and peerings', () => {
  it('defaults the token TTL', () => {
    expect(validateJoinTokenInput({ clusterId: 'c1', role: 'donor' }, 900_000)).toEqual({
      clusterId: 'c1',
      role: 'donor',
      ttlMs: 900_000,
    });
  });

  it('normalizes a peering and refuses self-peering', () => {
    expect(validatePeeringInput({ origin: 'a', donor: 'b', gpuProducts: ['x', 'x'] })).toEqual({
      origin: 'a',
      donor: 'b',
      maxGpus: 0,
      gpuProducts: ['x'],
    });
    expect(fieldOf(() => validatePeeringInput({ origin: 'a', donor: 'a' }))).toBe('donor');
    expect(fieldOf(() => validatePeeringInput({ origin: 'a', donor: 'b', maxGpus: 2.5 }))).toBe(
      'maxGpus',
    );
  });
});

describe('validateCapacityUpdate', () => {
  const node = (name: string, free: number): NodeInventory => ({
    name,
    gpus: { 'nvidia.com/gpu': { allocatable: 8, free } },
    gpuProduct: 'NVIDIA-L4',
    gpuMemoryMiB: 24576,
    labels: {},
    taints: [],
    ready: true,
    cordoned: false,
    cpuAllocatableMillis: 0,
    cpuFreeMillis: 0,
    memoryAllocatableBytes: 0,
    memoryFreeBytes: 0,
    offloadedPodUids: [],
  });
  const report = { full: true, nodes: [node('a', 1)], removedNodes: [], sequence: 1 };

  it('accepts a well-formed report', () => {
    expect(() => validateCapacityUpdate(report)).not.toThrow();
  });

  it.each([
    ['a node named twice', { nodes: [node('a', 1), node('a', 2)] }, 'nodes[1].name'],
    ['a negative sequence', { sequence: -1 }, 'sequence'],
    ['a fractional sequence', { sequence: 1.5 }, 'sequence'],
    ['more free than allocatable', { nodes: [node('a', 9)] }, 'nodes[0].gpus[nvidia.com/gpu].free'],
    ['an unnamed node', { nodes: [node('', 1)] }, 'nodes[0].name'],
  ])('refuses %s, naming the field', (_what, patch, field) => {
    expect(fieldOf(() => validateCapacityUpdate({ ...report, ...patch }))).toBe(field);
  });
});
