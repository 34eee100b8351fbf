import type { V1Node, V1Pod, V1PodSpec } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { originFit } from './origin-fit.js';

const GPU = ['nvidia.com/gpu', 'nvidia.com/mig-*', 'amd.com/gpu'];

function pod(gpus: Record<string, string>, spec: Partial<V1PodSpec> = {}): V1Pod {
  return {
    metadata: { name: 'train', namespace: 'ml', uid: 'u-1' },
    spec: { containers: [{ name: 'c', image: 'img', resources: { limits: gpus } }], ...spec },
  };
}

function node(
  name: string,
  capacity: Record<string, string>,
  opts: { product?: string; cordoned?: boolean; virtual?: boolean } = {},
): V1Node {
  const labels: Record<string, string> = {};
  if (opts.product) labels['nvidia.com/gpu.product'] = opts.product;
  if (opts.virtual) Object.assign(labels, { type: 'virtual-kubelet', 'spillway.io/donor': 'd' });
  return {
    metadata: { name, labels },
    spec: opts.cordoned ? { unschedulable: true } : {},
    status: { capacity, allocatable: capacity },
  };
}

const A100 = 'NVIDIA-A100-SXM4-80GB';
const H100 = 'NVIDIA-H100-80GB-HBM3';
const a100x4 = node('a100-0', { 'nvidia.com/gpu': '4' }, { product: A100 });
const h100Virtual = node(
  'spillway-donor-b',
  { 'nvidia.com/gpu': '8' },
  { product: H100, virtual: true },
);
const onH100 = { nodeSelector: { 'nvidia.com/gpu.product': H100 } };

describe('originFit', () => {
  const cases: {
    name: string;
    pod: V1Pod;
    nodes: V1Node[];
    never: boolean;
    reason?: RegExp;
  }[] = [
    {
      name: 'no nodes at all',
      pod: pod({ 'nvidia.com/gpu': '1' }),
      nodes: [],
      never: true,
      reason: /no origin node has nvidia.com\/gpu/,
    },
    {
      name: 'only CPU nodes',
      pod: pod({ 'nvidia.com/gpu': '1' }),
      nodes: [node('cpu', { cpu: '8' })],
      never: true,
    },
    {
      name: 'a node that has it',
      pod: pod({ 'nvidia.com/gpu': '2' }),
      nodes: [a100x4],
      never: false,
    },
    {
      name: 'a cordoned node that has it still counts',
      pod: pod({ 'nvidia.com/gpu': '2' }),
      nodes: [node('c', { 'nvidia.com/gpu': '4' }, { cordoned: true })],
      never: false,
    },
    {
      name: 'virtual nodes never count',
      pod: pod({ 'nvidia.com/gpu': '1' }),
      nodes: [h100Virtual],
      never: true,
    },
    {
      name: 'more GPUs than any node holds',
      pod: pod({ 'nvidia.com/gpu': '8' }),
      nodes: [a100x4, node('b', { 'nvidia.com/gpu': '2' })],
      never: true,
      reason: /asks for 8 nvidia.com\/gpu and no origin node has more than 4/,
    },
    {
      name: 'exactly what the biggest node holds',
      pod: pod({ 'nvidia.com/gpu': '4' }),
      nodes: [a100x4],
      never: false,
    },
    {
      name: 'another GPU resource than the origin has',
      pod: pod({ 'amd.com/gpu': '1' }),
      nodes: [a100x4],
      never: true,
      reason: /no origin node has amd.com\/gpu/,
    },
    {
      name: 'a product the origin lacks (nodeSelector)',
      pod: pod({ 'nvidia.com/gpu': '1' }, onH100),
      nodes: [a100x4],
      never: true,
      reason: /GPU product.*origin has NVIDIA-A100/,
    },
    {
      name: 'a product the origin has',
      pod: pod({ 'nvidia.com/gpu': '1' }, { nodeSelector: { 'nvidia.com/gpu.product': A100 } }),
      nodes: [a100x4],
      never: false,
    },
    {
      name: 'the product only on nodes too small',
      pod: pod({ 'nvidia.com/gpu': '4' }, onH100),
      nodes: [a100x4, node('h', { 'nvidia.com/gpu': '2' }, { product: H100 })],
      never: true,
    },
    {
      name: 'per-product label of a virtual node',
      pod: pod(
        { 'nvidia.com/gpu': '1' },
        { nodeSelector: { [`spillway.io/gpu-product.${H100}`]: 'true' } },
      ),
      nodes: [a100x4],
      never: true,
    },
    {
      name: 'a product the origin lacks (required affinity In)',
      pod: pod(
        { 'nvidia.com/gpu': '1' },
        {
          affinity: {
            nodeAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: {
                nodeSelectorTerms: [
                  {
                    matchExpressions: [
                      { key: 'nvidia.com/gpu.product', operator: 'In', values: [H100] },
                    ],
                  },
                ],
              },
            },
          },
        },
      ),
      nodes: [a100x4],
      never: true,
    },
    {
      name: 'affinity NotIn the product the origin has',
      pod: pod(
        { 'nvidia.com/gpu': '1' },
        {
          affinity: {
            nodeAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: {
                nodeSelectorTerms: [
                  {
                    matchExpressions: [
                      { key: 'nvidia.com/gpu.product', operator: 'NotIn', values: [A100] },
                    ],
                  },
                ],
              },
            },
          },
        },
      ),
      nodes: [a100x4],
      never: true,
    },
    {
      name: 'one of two affinity terms matches',
      pod: pod(
        { 'nvidia.com/gpu': '1' },
        {
          affinity: {
            nodeAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: {
                nodeSelectorTerms: [
                  {
                    matchExpressions: [
                      { key: 'nvidia.com/gpu.product', operator: 'In', values: [H100] },
                    ],
                  },
                  {
                    matchExpressions: [
                      { key: 'nvidia.com/gpu.product', operator: 'In', values: [A100] },
                    ],
                  },
                ],
              },
            },
          },
        },
      ),
      nodes: [a100x4],
      never: false,
    },
    {
      name: 'selectors other than the product do not decide',
      pod: pod({ 'nvidia.com/gpu': '1' }, { nodeSelector: { zone: 'far' } }),
      nodes: [a100x4],
      never: false,
    },
    { name: 'no GPU request: not for this path', pod: pod({}), nodes: [], never: false },
    {
      name: 'two GPU resources: not for this path',
      pod: pod({ 'nvidia.com/gpu': '1', 'amd.com/gpu': '1' }),
      nodes: [],
      never: false,
    },
  ];
  it.each(cases)('$name', (c) => {
    const fit = originFit(c.pod, c.nodes, GPU);
    expect(fit.never).toBe(c.never);
    if (c.reason && fit.never) expect(fit.reason).toMatch(c.reason);
  });
});
