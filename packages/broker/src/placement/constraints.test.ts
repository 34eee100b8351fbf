import { describe, expect, it } from 'vitest';
import { SpillwayError } from '@spillway/common';
import {
  gpuRequestOf,
  nodeRequirementsOf,
  placementRequestFromPod,
  tolerationsOf,
  type ContainerLike,
  type PodLike,
} from './constraints.js';

const c = (requests?: Record<string, string>, limits?: Record<string, string>): ContainerLike => ({
  resources: { ...(requests ? { requests } : {}), ...(limits ? { limits } : {}) },
});

function pod(spec: PodLike['spec'], meta: PodLike['metadata'] = {}): PodLike {
  return { metadata: { name: 'train', namespace: 'ml', uid: 'uid-1', ...meta }, spec };
}

function refusal(fn: () => unknown): SpillwayError {
  try {
    fn();
  } catch (err) {
    if (err instanceof SpillwayError) return err;
    throw err;
  }
  throw new Error('expected a SpillwayError');
}

describe('gpuRequestOf', () => {
  it.each<[string, PodLike, { resource: string; gpus: number } | undefined]>([
    ['no GPUs', pod({ containers: [c({ cpu: '1' })] }), undefined],
    ['zero GPUs', pod({ containers: [c({ 'nvidia.com/gpu': '0' })] }), undefined],
    [
      'one container',
      pod({ containers: [c({ 'nvidia.com/gpu': '2' })] }),
      { resource: 'nvidia.com/gpu', gpus: 2 },
    ],
    [
      'limits imply requests',
      pod({ containers: [c(undefined, { 'nvidia.com/gpu': '4' })] }),
      { resource: 'nvidia.com/gpu', gpus: 4 },
    ],
    [
      'sum over containers',
      pod({
        containers: [
          c({ 'nvidia.com/gpu': '1' }),
          c(undefined, { 'nvidia.com/gpu': '2' }),
          c({ cpu: '1' }),
        ],
      }),
      { resource: 'nvidia.com/gpu', gpus: 3 },
    ],
    [
      'init containers take the max',
      pod({
        containers: [c({ 'nvidia.com/gpu': '1' })],
        initContainers: [c({ 'nvidia.com/gpu': '3' }), c({ 'nvidia.com/gpu': '2' })],
      }),
      { resource: 'nvidia.com/gpu', gpus: 3 },
    ],
    [
      'init smaller than app',
      pod({
        containers: [c({ 'nvidia.com/gpu': '4' })],
        initContainers: [c({ 'nvidia.com/gpu': '1' })],
      }),
      { resource: 'nvidia.com/gpu', gpus: 4 },
    ],
    [
      'sidecar init containers add to the app',
      pod({
        containers: [c({ 'nvidia.com/gpu': '2' })],
        initContainers: [{ ...c({ 'nvidia.com/gpu': '1' }), restartPolicy: 'Always' }],
      }),
      { resource: 'nvidia.com/gpu', gpus: 3 },
    ],
    [
      'MIG profile by prefix',
      pod({ containers: [c({ 'nvidia.com/mig-1g.10gb': '1' })] }),
      { resource: 'nvidia.com/mig-1g.10gb', gpus: 1 },
    ],
    ['AMD', pod({ containers: [c({ 'amd.com/gpu': '1' })] }), { resource: 'amd.com/gpu', gpus: 1 }],
    [
      'exponent form',
      pod({ containers: [c({ 'nvidia.com/gpu': '1e1' })] }),
      { resource: 'nvidia.com/gpu', gpus: 10 },
    ],
    ['untracked resource', pod({ containers: [c({ 'intel.com/gpu': '1' })] }), undefined],
  ])('%s', (_name, p, expected) => {
    expect(gpuRequestOf(p)).toEqual(expected);
  });

  it('honours a configured resource list', () => {
    const p = pod({ containers: [c({ 'intel.com/gpu': '1' })] });
    expect(gpuRequestOf(p, ['intel.com/gpu'])).toEqual({ resource: 'intel.com/gpu', gpus: 1 });
    expect(
      gpuRequestOf(pod({ containers: [c({ 'nvidia.com/gpu': '1' })] }), ['intel.com/gpu']),
    ).toBeUndefined();
  });

  it.each<[string, PodLike, string, RegExp]>([
    [
      'two GPU resources',
      pod({ containers: [c({ 'nvidia.com/gpu': '1' }), c({ 'amd.com/gpu': '1' })] }),
      'spec.containers[1].resources.requests[amd.com/gpu]',
      /both nvidia.com\/gpu and amd.com\/gpu/,
    ],
    [
      'fractional GPU',
      pod({ containers: [c({ 'nvidia.com/gpu': '500m' })] }),
      'spec.containers[0].resources.requests[nvidia.com/gpu]',
      /whole number/,
    ],
    [
      'negative GPU',
      pod({ containers: [c(undefined, { 'nvidia.com/gpu': '-1' })] }),
      'spec.containers[0].resources.limits[nvidia.com/gpu]',
      /negative/,
    ],
    [
      'absurd count',
      pod({ containers: [c({ 'nvidia.com/gpu': '65' })] }),
      'spec.containers[0].resources.requests[nvidia.com/gpu]',
      /more than the 64/,
    ],
    [
      'absurd in sum',
      pod({ containers: [c({ 'nvidia.com/gpu': '40' }), c({ 'nvidia.com/gpu': '40' })] }),
      'spec.containers[0].resources.requests[nvidia.com/gpu]',
      /80 nvidia.com\/gpu in all/,
    ],
    [
      'unparseable',
      pod({ containers: [c({ 'nvidia.com/gpu': 'two' })] }),
      'spec.containers[0].resources.requests[nvidia.com/gpu]',
      /not a Kubernetes quantity/,
    ],
    [
      'request differs from limit',
      pod({ containers: [c({ 'nvidia.com/gpu': '1' }, { 'nvidia.com/gpu': '2' })] }),
      'spec.containers[0].resources.requests[nvidia.com/gpu]',
      /differs from limit 2/,
    ],
    [
      'bad init container',
      pod({ containers: [], initContainers: [c({ 'nvidia.com/gpu': '1.5' })] }),
      'spec.initContainers[0].resources.requests[nvidia.com/gpu]',
      /whole number/,
    ],
  ])('refuses %s with INVALID_ARGUMENT naming the field', (_name, p, field, message) => {
    const err = refusal(() => gpuRequestOf(p));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.field).toBe(field);
    expect(err.message).toMatch(message);
    expect(err.message.startsWith(field)).toBe(true);
  });
});

describe('nodeRequirementsOf', () => {
  const term =
    'spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms';
  const affinity = (terms: unknown[]): PodLike['spec'] =>
    ({
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms },
        },
      },
    }) as PodLike['spec'];

  it('merges nodeSelector and a single required term', () => {
    const p = pod({
      nodeSelector: { 'nvidia.com/gpu.product': 'NVIDIA-A100-SXM4-80GB' },
      ...affinity([
        {
          matchExpressions: [
            { key: 'nvidia.com/gpu.memory', operator: 'Gt', values: ['40000'] },
            { key: 'zone', operator: 'NotIn', values: ['a', 'b'] },
            { key: 'spot', operator: 'DoesNotExist' },
          ],
        },
      ]),
    });
    expect(nodeRequirementsOf(p)).toEqual([
      { key: 'nvidia.com/gpu.product', operator: 'In', values: ['NVIDIA-A100-SXM4-80GB'] },
      { key: 'nvidia.com/gpu.memory', operator: 'Gt', values: ['40000'] },
      { key: 'zone', operator: 'NotIn', values: ['a', 'b'] },
      { key: 'spot', operator: 'DoesNotExist', values: [] },
    ]);
  });

  it('drops keys the origin matches itself', () => {
    const p = pod({ nodeSelector: { type: 'virtual-kubelet', pool: 'gpu' } });
    expect(nodeRequirementsOf(p, ['type'])).toEqual([
      { key: 'pool', operator: 'In', values: ['gpu'] },
    ]);
  });

  it.each<[string, unknown[], string, RegExp]>([
    [
      'several ORed terms',
      [
        { matchExpressions: [{ key: 'a', operator: 'Exists' }] },
        { matchExpressions: [{ key: 'b', operator: 'Exists' }] },
      ],
      term,
      /exactly one required node selector term/,
    ],
    ['no terms', [], term, /at least one/],
    ['an empty term', [{}], `${term}[0].matchExpressions`, /matches no node/],
    [
      'matchFields',
      [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['n1'] }] }],
      `${term}[0].matchFields`,
      /cannot be honoured/,
    ],
    [
      'unknown operator',
      [{ matchExpressions: [{ key: 'a', operator: 'Like', values: ['x'] }] }],
      `${term}[0].matchExpressions[0].operator`,
      /not one of/,
    ],
    [
      'In without values',
      [{ matchExpressions: [{ key: 'a', operator: 'In', values: [] }] }],
      `${term}[0].matchExpressions[0].values`,
      /at least one value/,
    ],
    [
      'Exists with values',
      [{ matchExpressions: [{ key: 'a', operator: 'Exists', values: ['x'] }] }],
      `${term}[0].matchExpressions[0].values`,
      /takes no values/,
    ],
    [
      'Gt with a non-integer',
      [{ matchExpressions: [{ key: 'a', operator: 'Gt', values: ['4x'] }] }],
      `${term}[0].matchExpressions[0].values`,
      /one integer value/,
    ],
    [
      'missing key',
      [{ matchExpressions: [{ operator: 'Exists' }] }],
      `${term}[0].matchExpressions[0].key`,
      /label key/,
    ],
  ])('refuses %s', (_name, terms, field, message) => {
    const err = refusal(() => nodeRequirementsOf(pod(affinity(terms))));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.field).toBe(field);
    expect(err.message).toMatch(message);
  });
});

describe('tolerationsOf', () => {
  it('defaults operator to Equal and fills empty strings', () => {
    expect(
      tolerationsOf(
        pod({
          tolerations: [
            { key: 'gpu', value: 'yes', effect: 'NoSchedule' },
            { operator: 'Exists' },
            { key: 'x', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 30 },
          ],
        }),
      ),
    ).toEqual([
      { key: 'gpu', operator: 'Equal', value: 'yes', effect: 'NoSchedule' },
      { key: '', operator: 'Exists', value: '', effect: '' },
      { key: 'x', operator: 'Exists', value: '', effect: 'NoExecute' },
    ]);
  });

  it.each([
    [{ key: 'a', operator: 'Maybe' }, 'spec.tolerations[0].operator'],
    [{ value: 'v' }, 'spec.tolerations[0].key'],
    [{ key: 'a', operator: 'Exists', value: 'v' }, 'spec.tolerations[0].value'],
  ])('refuses %j', (t, field) => {
    expect(refusal(() => tolerationsOf(pod({ tolerations: [t] }))).field).toBe(field);
  });
});

describe('placementRequestFromPod', () => {
  it('builds the whole request', () => {
    const p = pod({
      containers: [
        c({ 'nvidia.com/gpu': '2', cpu: '500m', memory: '1Gi' }),
        c(undefined, { cpu: '1', memory: '512Mi' }),
      ],
      initContainers: [c({ cpu: '4', memory: '128Mi' })],
      overhead: { cpu: '100m' },
      nodeSelector: { 'nvidia.com/gpu.product': 'NVIDIA-H100' },
      tolerations: [{ key: 'gpu', operator: 'Exists' }],
    });
    expect(
      placementRequestFromPod(p, { origin: 'lab', donors: ['donor-a'], policy: 'spread' }),
    ).toEqual({
      pod: { originCluster: 'lab', namespace: 'ml', name: 'train', uid: 'uid-1' },
      resource: 'nvidia.com/gpu',
      gpus: 2,
      nodeRequirements: [
        { key: 'nvidia.com/gpu.product', operator: 'In', values: ['NVIDIA-H100'] },
      ],
      tolerations: [{ key: 'gpu', operator: 'Exists', value: '', effect: '' }],
      // max(500m + 1, 4) + 100m overhead
      cpuMillis: 4100,
      memoryBytes: 2 ** 30 + 512 * 2 ** 20,
      donors: ['donor-a'],
      policy: 'spread',
    });
  });

  it('defaults the namespace', () => {
    const p = {
      metadata: { name: 'x', uid: 'u' },
      spec: { containers: [c({ 'nvidia.com/gpu': '1' })] },
    };
    expect(placementRequestFromPod(p, { origin: 'lab' }).pod.namespace).toBe('default');
  });

  it.each<[string, PodLike, string]>([
    ['no uid', pod({ containers: [c({ 'nvidia.com/gpu': '1' })] }, { uid: '' }), 'metadata.uid'],
    [
      'no name',
      { metadata: { uid: 'u' }, spec: { containers: [c({ 'nvidia.com/gpu': '1' })] } },
      'metadata.name',
    ],
    ['no GPU', pod({ containers: [c({ cpu: '1' })] }), 'spec.containers'],
    [
      'negative memory',
      pod({ containers: [c({ 'nvidia.com/gpu': '1', memory: '-1Gi' })] }),
      'spec.containers[0].resources.requests[memory]',
    ],
    [
      'bad cpu',
      pod({ containers: [c({ 'nvidia.com/gpu': '1', cpu: 'lots' })] }),
      'spec.containers[0].resources.requests[cpu]',
    ],
  ])('refuses %s', (_name, p, field) => {
    const err = refusal(() => placementRequestFromPod(p, { origin: 'lab' }));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.field).toBe(field);
  });
});
