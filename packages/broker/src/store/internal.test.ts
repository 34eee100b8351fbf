import { describe, expect, it } from 'vitest';
import { SpillwayError } from '@spillway/common';
import type { ClusterInventory, NodeInventory, ReserveRequest } from '../model.js';
import {
  mergeCapacity,
  quotaViolation,
  reservableGpus,
  reportedFree,
  validateReserveRequest,
} from './internal.js';

const GPU = 'nvidia.com/gpu';

function node(name: string, free: number, extra: Partial<NodeInventory> = {}): NodeInventory {
  return {
    name,
    gpus: { [GPU]: { allocatable: 8, free } },
    gpuProduct: 'NVIDIA-L4',
    gpuMemoryMiB: 24576,
    labels: {},
    taints: [],
    ready: true,
    cordoned: false,
    cpuAllocatableMillis: 1000,
    cpuFreeMillis: 1000,
    memoryAllocatableBytes: 1,
    memoryFreeBytes: 1,
    offloadedPodUids: [],
    ...extra,
  };
}

const request: ReserveRequest = {
  id: 'r1',
  origin: 'o',
  donor: 'd',
  node: 'n1',
  resource: GPU,
  gpus: 2,
  pod: { originCluster: 'o', namespace: 'ns', name: 'p', uid: 'u1' },
  ttlMs: 1000,
  peeringMaxGpus: 0,
  donorMaxGpus: 0,
  donorMaxGpusPerOrigin: 0,
};

describe('reservableGpus', () => {
  it.each([
    ['absent node', undefined, 0],
    ['not ready', node('n', 4, { ready: false }), 0],
    ['cordoned', node('n', 4, { cordoned: true }), 0],
    ['ready', node('n', 4), 4],
  ])('reported free on %s', (_name, n, want) => {
    expect(reportedFree(n, GPU)).toBe(want);
  });

  it('subtracts open claims of the same resource not yet in offloadedPodUids', () => {
    const n = node('n', 5, { offloadedPodUids: ['seen'] });
    const claim = (resource: string, gpus: number, uid: string) =>
      ({ state: 'open', node: 'n', resource, gpus, pod: { uid } }) as const;
    const open = [
      claim(GPU, 2, 'new'),
      claim(GPU, 1, 'seen'),
      claim('nvidia.com/mig-1g.10gb', 3, 'other'),
    ];
    expect(reservableGpus(n, GPU, open)).toBe(3);
    expect(reservableGpus(n, 'amd.com/gpu', open)).toBe(0);
  });
});

describe('quotaViolation', () => {
  it.each([
    [{ peeringMaxGpus: 3 }, { total: 0, origin: 2 }, 'peeringMaxGpus'],
    [{ donorMaxGpusPerOrigin: 3 }, { total: 0, origin: 2 }, 'donorMaxGpusPerOrigin'],
    [{ donorMaxGpus: 5 }, { total: 4, origin: 0 }, 'donorMaxGpus'],
  ])('names the limit %j passes', (limits, usage, field) => {
    expect(quotaViolation({ ...request, ...limits }, usage)).toContain(`(${field})`);
  });

  it('allows reaching a limit exactly, and treats 0 as no limit', () => {
    expect(
      quotaViolation({ ...request, peeringMaxGpus: 4, donorMaxGpus: 4 }, { total: 2, origin: 2 }),
    ).toBeUndefined();
    expect(quotaViolation(request, { total: 1e6, origin: 1e6 })).toBeUndefined();
  });
});

describe('mergeCapacity', () => {
  const now = new Date('2026-01-01T00:00:00.000Z');
  const prev: ClusterInventory = {
    clusterId: 'd',
    nodes: [node('a', 1), node('b', 1)],
    updatedAt: 'x',
    sequence: 5,
  };

  it('merges a delta: upsert, remove, keep the rest, sorted by name', () => {
    const next = mergeCapacity(
      prev,
      'd',
      { full: false, nodes: [node('c', 3), node('a', 0)], removedNodes: ['b'], sequence: 6 },
      now,
    );
    expect(next?.nodes.map((n) => [n.name, n.gpus[GPU]?.free])).toEqual([
      ['a', 0],
      ['c', 3],
    ]);
    expect(next?.sequence).toBe(6);
  });

  it('drops a stale delta but applies a stale full snapshot', () => {
    expect(
      mergeCapacity(prev, 'd', { full: false, nodes: [], removedNodes: ['a'], sequence: 4 }, now),
    ).toBeUndefined();
    expect(
      mergeCapacity(
        prev,
        'd',
        { full: true, nodes: [node('z', 1)], removedNodes: [], sequence: 1 },
        now,
      )?.nodes.map((n) => n.name),
    ).toEqual(['z']);
  });
});

describe('validation', () => {
  it.each([
    [{ gpus: 0 }, 'gpus'],
    [{ gpus: 1.5 }, 'gpus'],
    [{ ttlMs: -1 }, 'ttlMs'],
    [{ node: '' }, 'node'],
    [{ donorMaxGpus: -1 }, 'donorMaxGpus'],
    [{ pod: { ...request.pod, uid: '' } }, 'pod.uid'],
  ])('rejects %j naming %s', (patch, field) => {
    let err: unknown;
    try {
      validateReserveRequest({ ...request, ...patch });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SpillwayError);
    expect(err).toMatchObject({ code: 'INVALID_ARGUMENT', field });
  });
});
