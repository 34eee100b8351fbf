import type { V1Pod, V1PodSpec } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  ANNOTATION_DONOR_NODE,
  bindingFor,
  gpuDemand,
  offloadCandidacy,
  placeRequestFor,
  type PlacementContext,
} from './placement.js';

const GPU = ['nvidia.com/gpu', 'nvidia.com/mig-*', 'amd.com/gpu'];

function pod(spec: Partial<V1PodSpec> = {}, extra: Partial<V1Pod> = {}): V1Pod {
  return {
    metadata: { name: 'train', namespace: 'ml', uid: 'u-1', ...extra.metadata },
    spec: {
      containers: [
        {
          name: 'c',
          image: 'img',
          resources: {
            requests: { cpu: '500m', memory: '1Gi', 'nvidia.com/gpu': '2' },
            limits: { 'nvidia.com/gpu': '2' },
          },
        },
      ],
      ...spec,
    },
    status: extra.status ?? {
      phase: 'Pending',
      conditions: [
        {
          type: 'PodScheduled',
          status: 'False',
          reason: 'Unschedulable',
          lastTransitionTime: '2026-05-01T10:00:00Z' as unknown as Date,
        },
      ],
    },
  };
}

describe('offloadCandidacy', () => {
  const opts = { gpuResources: GPU, namespaceOptedIn: true };
  it('an Unschedulable GPU pod in an opted-in namespace is a candidate since it became Unschedulable', () => {
    expect(offloadCandidacy(pod(), opts)).toEqual({
      candidate: true,
      unschedulableSince: Date.parse('2026-05-01T10:00:00Z'),
    });
  });
  it.each([
    { name: 'bound', p: pod({ nodeName: 'n1' }), o: opts, reason: 'bound' },
    {
      name: 'namespace not opted in',
      p: pod(),
      o: { ...opts, namespaceOptedIn: false },
      reason: 'namespace not opted in',
    },
    {
      name: 'no GPU request',
      p: pod({ containers: [{ name: 'c', image: 'img', resources: { requests: { cpu: '1' } } }] }),
      o: opts,
      reason: 'no GPU request',
    },
    {
      name: 'still being scheduled',
      p: pod({}, { status: { phase: 'Pending', conditions: [] } }),
      o: opts,
      reason: 'not Unschedulable',
    },
    {
      name: 'gated',
      p: pod(
        {},
        {
          status: {
            phase: 'Pending',
            conditions: [{ type: 'PodScheduled', status: 'False', reason: 'SchedulingGated' }],
          },
        },
      ),
      o: opts,
      reason: 'not Unschedulable',
    },
    {
      name: 'a preemption will make room locally',
      p: pod(
        {},
        {
          status: {
            phase: 'Pending',
            nominatedNodeName: 'gpu-1',
            conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable' }],
          },
        },
      ),
      o: opts,
      reason: 'preemption pending on gpu-1',
    },
    {
      name: 'a DaemonSet pod',
      p: pod(
        {},
        {
          metadata: {
            ownerReferences: [{ apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'd', uid: 'x' }],
          },
        },
      ),
      o: opts,
      reason: 'DaemonSet pod',
    },
  ])('not when $name', ({ p, o, reason }) => {
    expect(offloadCandidacy(p, o)).toEqual({ candidate: false, reason });
  });
});

describe('gpuDemand', () => {
  it('counts init containers the way the scheduler does', () => {
    const p = pod({
      initContainers: [
        { name: 'i', image: 'img', resources: { limits: { 'nvidia.com/gpu': '4' } } },
      ],
    });
    expect(gpuDemand(p, GPU)).toEqual({ resource: 'nvidia.com/gpu', gpus: 4 });
  });
  it('refuses pods mixing GPU resources', () => {
    const p = pod({
      containers: [
        { name: 'a', image: 'img', resources: { limits: { 'nvidia.com/gpu': '1' } } },
        { name: 'b', image: 'img', resources: { limits: { 'amd.com/gpu': '1' } } },
      ],
    });
    const d = gpuDemand(p, GPU);
    expect(d && 'error' in d && d.error).toMatch(/one GPU resource/);
  });
});

describe('placeRequestFor', () => {
  const ctx: PlacementContext = {
    originCluster: 'origin',
    gpuResources: GPU,
    donorOfNode: (n) => (n.startsWith('spillway-') ? n.slice('spillway-'.length) : undefined),
  };

  it('carries the pod, its GPU demand, cpu/memory and its node constraints', () => {
    const r = placeRequestFor(
      pod({
        nodeSelector: { 'nvidia.com/gpu.product': 'NVIDIA-H100-80GB-HBM3' },
        affinity: {
          nodeAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: {
              nodeSelectorTerms: [
                {
                  matchExpressions: [
                    { key: 'nvidia.com/gpu.memory', operator: 'Gt', values: ['40000'] },
                  ],
                },
              ],
            },
          },
        },
        tolerations: [
          { key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' },
          { key: 'spillway.io/virtual-node', operator: 'Exists' },
          {
            key: 'node.kubernetes.io/not-ready',
            operator: 'Exists',
            effect: 'NoExecute',
            tolerationSeconds: 300,
          },
        ],
      }),
      ctx,
    );
    expect(r).toEqual({
      request: {
        pod: { origin_cluster: 'origin', namespace: 'ml', name: 'train', uid: 'u-1' },
        resource_name: 'nvidia.com/gpu',
        gpus: 2,
        node_requirements: [
          { key: 'nvidia.com/gpu.product', operator: 'In', values: ['NVIDIA-H100-80GB-HBM3'] },
          { key: 'nvidia.com/gpu.memory', operator: 'Gt', values: ['40000'] },
        ],
        tolerations: [
          { key: 'nvidia.com/gpu', operator: 'Exists', value: '', effect: 'NoSchedule' },
        ],
        cpu_millis: 500,
        memory_bytes: 1024 ** 3,
        donors: [],
      },
    });
  });

  it.each([
    {
      name: 'hostname of a virtual node',
      spec: { nodeSelector: { 'kubernetes.io/hostname': 'spillway-donor-a' } },
      donors: ['donor-a'],
    },
    {
      name: 'the donor label and type',
      spec: { nodeSelector: { 'spillway.io/donor': 'donor-b', type: 'virtual-kubelet' } },
      donors: ['donor-b'],
    },
    {
      name: 'matchFields on virtual node names',
      spec: {
        affinity: {
          nodeAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: {
              nodeSelectorTerms: [
                {
                  matchFields: [
                    {
                      key: 'metadata.name',
                      operator: 'In',
                      values: ['spillway-donor-a', 'spillway-donor-b'],
                    },
                  ],
                },
              ],
            },
          },
        },
      },
      donors: ['donor-a', 'donor-b'],
    },
  ])('selecting virtual nodes by $name restricts donors, not donor nodes', ({ spec, donors }) => {
    const r = placeRequestFor(pod(spec), ctx);
    expect(r).toMatchObject({ request: { donors, node_requirements: [] } });
  });

  it('turns a per-product label of a virtual node into a product requirement', () => {
    const r = placeRequestFor(
      pod({ nodeSelector: { 'spillway.io/gpu-product.NVIDIA-L4': 'true' } }),
      ctx,
    );
    expect(r).toMatchObject({
      request: {
        node_requirements: [
          { key: 'nvidia.com/gpu.product', operator: 'In', values: ['NVIDIA-L4'] },
        ],
      },
    });
  });

  it("intersects the pod's donors with the ones the caller allows", () => {
    const r = placeRequestFor(pod({ nodeSelector: { 'spillway.io/donor': 'donor-b' } }), {
      ...ctx,
      donors: ['donor-a'],
    });
    expect(r).toEqual({ error: 'the pod selects no donor this origin is peered with' });
  });

  it.each([
    {
      name: 'several node selector terms',
      spec: {
        affinity: {
          nodeAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: {
              nodeSelectorTerms: [
                { matchExpressions: [{ key: 'a', operator: 'Exists' }] },
                { matchExpressions: [{ key: 'b', operator: 'Exists' }] },
              ],
            },
          },
        },
      },
      error: /2 alternative terms/,
    },
    {
      name: 'an origin node by name',
      spec: { nodeSelector: { 'kubernetes.io/hostname': 'gpu-7' } },
      error: /origin nodes/,
    },
    {
      name: 'no GPU',
      spec: { containers: [{ name: 'c', image: 'img' }] },
      error: /requests none of/,
    },
  ])('refuses $name with a reason', ({ spec, error }) => {
    const r = placeRequestFor(pod(spec), ctx);
    expect('error' in r && r.error).toMatch(error);
  });
});

describe('bindingFor', () => {
  it('targets the virtual node, carries the reservation as annotations and guards the uid', () => {
    const b = bindingFor(pod(), 'spillway-donor-b', {
      id: 'r-1',
      origin_cluster: 'origin',
      donor_cluster: 'donor-b',
      node: 'donor-b-gpu-1',
      resource_name: 'nvidia.com/gpu',
      gpus: 2,
      pod: null,
      expires_at: '',
    });
    expect(b).toEqual({
      apiVersion: 'v1',
      kind: 'Binding',
      metadata: {
        name: 'train',
        namespace: 'ml',
        uid: 'u-1',
        annotations: {
          'spillway.io/reservation': 'r-1',
          'spillway.io/donor': 'donor-b',
          [ANNOTATION_DONOR_NODE]: 'donor-b-gpu-1',
        },
      },
      target: { apiVersion: 'v1', kind: 'Node', name: 'spillway-donor-b' },
    });
  });
});
