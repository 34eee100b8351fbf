import { bytesOf, cpuMillisOf, integerQuantity } from './quantity.js';

/** GPU resource names Spillway tracks unless configured otherwise; `*` is a wildcard. */
export const DEFAULT_GPU_RESOURCES = ['nvidia.com/gpu', 'nvidia.com/mig-*', 'amd.com/gpu'] as const;

/** GPU Feature Discovery labels. */
export const GFD_PRODUCT_LABEL = 'nvidia.com/gpu.product';
export const GFD_MEMORY_LABEL = 'nvidia.com/gpu.memory';
export const GFD_COUNT_LABEL = 'nvidia.com/gpu.count';

export function isGpuResource(
  name: string,
  patterns: readonly string[] = DEFAULT_GPU_RESOURCES,
): boolean {
  return patterns.some((p) => (p.endsWith('*') ? name.startsWith(p.slice(0, -1)) : name === p));
}

/** The parts of a pod spec that resource arithmetic needs (client-node's V1Pod fits). */
export interface PodResourceShape {
  spec?: {
    containers?: {
      resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> };
    }[];
    initContainers?: {
      resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> };
      restartPolicy?: string;
    }[];
    overhead?: Record<string, unknown>;
  };
}

export interface PodRequests {
  cpuMillis: number;
  memoryBytes: number;
  /** Extended resources tracked as GPUs, by name. */
  gpus: Record<string, number>;
}

type Res = { requests?: Record<string, unknown>; limits?: Record<string, unknown> } | undefined;

function amountsOf(res: Res, gpuPatterns: readonly string[], where: string): PodRequests {
  const out: PodRequests = { cpuMillis: 0, memoryBytes: 0, gpus: {} };
  const requests = res?.requests ?? {};
  const limits = res?.limits ?? {};
  const q = (v: unknown): string | number => (typeof v === 'number' ? v : String(v));
  // Kubernetes defaults a missing request to the limit.
  const get = (name: string): unknown => requests[name] ?? limits[name];
  if (get('cpu') !== undefined) out.cpuMillis = cpuMillisOf(q(get('cpu')), `${where}.cpu`);
  if (get('memory') !== undefined) out.memoryBytes = bytesOf(q(get('memory')), `${where}.memory`);
  for (const name of new Set([...Object.keys(requests), ...Object.keys(limits)])) {
    if (isGpuResource(name, gpuPatterns)) {
      const n = integerQuantity(q(get(name)), `${where}["${name}"]`);
      if (n !== 0) out.gpus[name] = n;
    }
  }
  return out;
}

function addInto(a: PodRequests, b: PodRequests): void {
  a.cpuMillis += b.cpuMillis;
  a.memoryBytes += b.memoryBytes;
  for (const [k, v] of Object.entries(b.gpus)) a.gpus[k] = (a.gpus[k] ?? 0) + v;
}

function maxInto(a: PodRequests, b: PodRequests): void {
  a.cpuMillis = Math.max(a.cpuMillis, b.cpuMillis);
  a.memoryBytes = Math.max(a.memoryBytes, b.memoryBytes);
  for (const [k, v] of Object.entries(b.gpus)) a.gpus[k] = Math.max(a.gpus[k] ?? 0, v);
}

/**
 * A pod's effective requests as the scheduler computes them: the sum over containers (plus
 * sidecar init containers), or the largest regular init container if that is larger, plus
 * overhead.
 */
export function podRequests(
  pod: PodResourceShape,
  gpuPatterns: readonly string[] = DEFAULT_GPU_RESOURCES,
): PodRequests {
  const sum: PodRequests = { cpuMillis: 0, memoryBytes: 0, gpus: {} };
  (pod.spec?.containers ?? []).forEach((c, i) =>
    addInto(sum, amountsOf(c.resources, gpuPatterns, `spec.containers[${i}].resources`)),
  );
  const init: PodRequests = { cpuMillis: 0, memoryBytes: 0, gpus: {} };
  const sidecars: PodRequests = { cpuMillis: 0, memoryBytes: 0, gpus: {} };
  (pod.spec?.initContainers ?? []).forEach((c, i) => {
    const a = amountsOf(c.resources, gpuPatterns, `spec.initContainers[${i}].resources`);
    if (c.restartPolicy === 'Always') {
      addInto(sidecars, a);
    } else {
      // A regular init container runs alongside the sidecars started before it.
      const withSidecars: PodRequests = { ...sidecars, gpus: { ...sidecars.gpus } };
      addInto(withSidecars, a);
      maxInto(init, withSidecars);
    }
  });
  addInto(sum, sidecars);
  maxInto(sum, init);
  if (pod.spec?.overhead)
    addInto(sum, amountsOf({ requests: pod.spec.overhead }, gpuPatterns, 'spec.overhead'));
  return sum;
}

/** Pods in these phases no longer hold node resources. */
export function isTerminalPhase(phase: string | undefined): boolean {
  return phase === 'Succeeded' || phase === 'Failed';
}
