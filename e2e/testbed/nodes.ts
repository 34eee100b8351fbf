import type { V1Node, V1Taint } from '@kubernetes/client-node';

/** Annotation (and value) by which the test bed's kwok picks the nodes it simulates. */
export const KWOK_NODE_ANNOTATION = 'kwok.x-k8s.io/node';
export const KWOK_NODE_ANNOTATION_VALUE = 'fake';
export const KWOK_NODE_SELECTOR = `${KWOK_NODE_ANNOTATION}=${KWOK_NODE_ANNOTATION_VALUE}`;

export const GPU_RESOURCE = 'nvidia.com/gpu';

/** GPU models with the product and memory (MiB) labels GPU Feature Discovery puts on a node. */
export const GPU_MODELS = {
  'A100-80GB': { product: 'NVIDIA-A100-SXM4-80GB', memoryMiB: 81920, family: 'ampere' },
  'A100-40GB': { product: 'NVIDIA-A100-SXM4-40GB', memoryMiB: 40960, family: 'ampere' },
  'H100-80GB': { product: 'NVIDIA-H100-80GB-HBM3', memoryMiB: 81559, family: 'hopper' },
  L4: { product: 'NVIDIA-L4', memoryMiB: 23034, family: 'ada-lovelace' },
  T4: { product: 'Tesla-T4', memoryMiB: 15360, family: 'turing' },
} as const;
export type GpuModel = keyof typeof GPU_MODELS;

/** A fake node for kwok to simulate. */
export interface FakeNodeSpec {
  name: string;
  /** Defaults: 32 CPUs, 256Gi memory, 110 pods. */
  cpu?: string;
  memory?: string;
  pods?: number;
  /** Whole GPUs (`nvidia.com/gpu`) and their model; no `gpu` means a node without GPUs. */
  gpu?: { count: number; model: GpuModel };
  /**
   * MIG slices by profile, e.g. `{ '1g.10gb': 7 }` advertises `nvidia.com/mig-1g.10gb: 7`
   * (GPU Feature Discovery's "mixed" strategy).
   */
  mig?: Record<string, number>;
  /** Extended resources of other vendors or kinds, e.g. `{ 'amd.com/gpu': 2 }`. */
  extraResources?: Record<string, string | number>;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  taints?: V1Taint[];
  unschedulable?: boolean;
}

/** A node with `count` whole GPUs of `model` (default A100-80GB). */
export function gpuNode(
  name: string,
  count: number,
  model: GpuModel = 'A100-80GB',
  extra: Omit<FakeNodeSpec, 'name' | 'gpu'> = {},
): FakeNodeSpec {
  return { ...extra, name, gpu: { count, model } };
}

/** A node whose GPUs are split into MIG slices, e.g. `migNode('n', { '1g.10gb': 7 })`. */
export function migNode(
  name: string,
  slices: Record<string, number>,
  model: GpuModel = 'A100-80GB',
  extra: Omit<FakeNodeSpec, 'name' | 'mig'> = {},
): FakeNodeSpec {
  return { ...extra, name, mig: slices, gpu: extra.gpu ?? { count: 0, model } };
}

/** A node without GPUs. */
export function cpuNode(name: string, extra: Omit<FakeNodeSpec, 'name'> = {}): FakeNodeSpec {
  return { ...extra, name };
}

/** The Node object the test bed creates for a spec: kwok takes it over from there. */
export function fakeNodeObject(spec: FakeNodeSpec): V1Node {
  const resources: Record<string, string> = {
    cpu: spec.cpu ?? '32',
    memory: spec.memory ?? '256Gi',
    pods: String(spec.pods ?? 110),
    'ephemeral-storage': '1Ti',
  };
  const labels: Record<string, string> = {
    'kubernetes.io/hostname': spec.name,
    'kubernetes.io/os': 'linux',
    'kubernetes.io/arch': 'amd64',
    type: 'kwok',
  };
  if (spec.gpu) {
    const model = GPU_MODELS[spec.gpu.model];
    resources[GPU_RESOURCE] = String(spec.gpu.count);
    Object.assign(labels, {
      'nvidia.com/gpu.present': 'true',
      'nvidia.com/gpu.product': model.product,
      'nvidia.com/gpu.memory': String(model.memoryMiB),
      'nvidia.com/gpu.family': model.family,
      'nvidia.com/gpu.count': String(spec.gpu.count),
    });
  }
  if (spec.mig) {
    labels['nvidia.com/mig.strategy'] = 'mixed';
    labels['nvidia.com/mig.capable'] = 'true';
    for (const [profile, count] of Object.entries(spec.mig)) {
      resources[`nvidia.com/mig-${profile}`] = String(count);
      labels[`nvidia.com/mig-${profile}.count`] = String(count);
    }
  }
  for (const [name, quantity] of Object.entries(spec.extraResources ?? {})) {
    resources[name] = String(quantity);
  }
  Object.assign(labels, spec.labels);
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: spec.name,
      labels,
      annotations: {
        [KWOK_NODE_ANNOTATION]: KWOK_NODE_ANNOTATION_VALUE,
        'node.alpha.kubernetes.io/ttl': '0',
        ...spec.annotations,
      },
    },
    spec: {
      ...(spec.taints ? { taints: spec.taints } : {}),
      ...(spec.unschedulable ? { unschedulable: true } : {}),
    },
    status: { capacity: { ...resources }, allocatable: { ...resources } },
  };
}
