import type { V1Node, V1Pod } from '@kubernetes/client-node';
import type { NodeCapacity } from '@spillway/api';
import {
  GFD_MEMORY_LABEL,
  GFD_PRODUCT_LABEL,
  LABEL_ORIGIN_UID,
  VIRTUAL_NODE_LABEL_TYPE,
  VIRTUAL_NODE_TYPE_VALUE,
  cpuMillisOf,
  integerQuantity,
  isGpuResource,
  isTerminalPhase,
  bytesOf,
  podRequests,
} from '@spillway/common';

/** The donor's own rules for what it lends, applied before anything reaches the broker. */
export interface InventoryPolicy {
  gpuResources: readonly string[];
  /** Only nodes carrying all these labels are lent. */
  nodeSelector: Readonly<Record<string, string>>;
  /** GPUs per node (per resource) kept back for local use. */
  reservedGpusPerNode: number;
  /** How long a preempted guest's GPUs stay counted after it ends (ReclaimHold); 0: not at all. */
  reclaimHoldMs?: number;
}

export type NodeVerdict =
  { eligible: true; capacity: NodeCapacity } | { eligible: false; reason: string };

function isReady(node: V1Node): boolean {
  return (node.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

/** nvidia.com/gpu.memory is in MiB; tolerate a unit suffix some labelers add. */
function gpuMemoryMiB(labels: Record<string, string>): number {
  const raw = labels[GFD_MEMORY_LABEL];
  if (!raw) return 0;
  const n = Number.parseInt(raw, 10);
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/**
 * The node a pod holds resources on: the one it is bound to or, while it waits for the
 * victims of its preemption to go, the one the scheduler nominated for it.
 */
export function nodeHeldBy(pod: V1Pod): string | undefined {
  return pod.spec?.nodeName || pod.status?.nominatedNodeName || undefined;
}

/** Requests of the pods that hold resources on a node: bound or nominated there, not terminated. */
export function podsHoldingResources(pods: Iterable<V1Pod>, nodeName: string): V1Pod[] {
  const out: V1Pod[] = [];
  for (const p of pods) {
    if (nodeHeldBy(p) === nodeName && !isTerminalPhase(p.status?.phase)) out.push(p);
  }
  return out;
}

/**
 * One node's lendable capacity: allocatable of each GPU resource minus the requests of the
 * pods bound to it, minus what the donor keeps back. Nodes that are NotReady, cordoned,
 * outside the donor's node selector or without GPUs are not lent, with the reason.
 */
export function computeNode(
  node: V1Node,
  podsOnNode: readonly V1Pod[],
  policy: InventoryPolicy,
): NodeVerdict {
  const name = node.metadata?.name ?? '';
  const labels = node.metadata?.labels ?? {};
  // A virtual node advertises GPUs another cluster lends: lending them on would count them twice.
  if (labels[VIRTUAL_NODE_LABEL_TYPE] === VIRTUAL_NODE_TYPE_VALUE)
    return { eligible: false, reason: 'virtual node' };
  if (!isReady(node)) return { eligible: false, reason: 'NotReady' };
  if (node.spec?.unschedulable) return { eligible: false, reason: 'cordoned' };
  for (const [k, v] of Object.entries(policy.nodeSelector)) {
    if (labels[k] !== v)
      return { eligible: false, reason: `excluded by donor node selector ${k}=${v}` };
  }
  const allocatable = node.status?.allocatable ?? {};
  const gpus: NonNullable<NodeCapacity['gpus']> = {};
  const used: Record<string, number> = {};
  let cpuUsed = 0;
  let memUsed = 0;
  const offloaded: string[] = [];
  for (const pod of podsOnNode) {
    let req;
    try {
      req = podRequests(pod, policy.gpuResources);
    } catch {
      // The API server validated this pod; an unparsable quantity here is not ours to judge.
      continue;
    }
    cpuUsed += req.cpuMillis;
    memUsed += req.memoryBytes;
    for (const [r, n] of Object.entries(req.gpus)) used[r] = (used[r] ?? 0) + n;
    const originUid = pod.metadata?.labels?.[LABEL_ORIGIN_UID];
    if (originUid) offloaded.push(originUid);
  }
  for (const [resource, q] of Object.entries(allocatable)) {
    if (!isGpuResource(resource, policy.gpuResources)) continue;
    let alloc: number;
    try {
      alloc = integerQuantity(q, `node ${name} allocatable ${resource}`);
    } catch {
      continue;
    }
    if (alloc <= 0) continue;
    const free = Math.max(0, alloc - (used[resource] ?? 0) - policy.reservedGpusPerNode);
    gpus[resource] = { allocatable: String(alloc), free: String(free) };
  }
  if (Object.keys(gpus).length === 0) return { eligible: false, reason: 'no GPUs' };
  const cpuAlloc = allocatable.cpu
    ? cpuMillisOf(allocatable.cpu, `node ${name} allocatable cpu`)
    : 0;
  const memAlloc = allocatable.memory
    ? bytesOf(allocatable.memory, `node ${name} allocatable memory`)
    : 0;
  return {
    eligible: true,
    capacity: {
      name,
      gpus,
      gpu_product: labels[GFD_PRODUCT_LABEL] ?? '',
      gpu_memory_mib: String(gpuMemoryMiB(labels)),
      labels: { ...labels },
      taints: (node.spec?.taints ?? []).map((t) => ({
        key: t.key,
        value: t.value ?? '',
        effect: t.effect,
      })),
      ready: true,
      cordoned: false,
      cpu_allocatable_millis: String(cpuAlloc),
      cpu_free_millis: String(Math.max(0, cpuAlloc - cpuUsed)),
      memory_allocatable_bytes: String(memAlloc),
      memory_free_bytes: String(Math.max(0, memAlloc - memUsed)),
      offloaded_pod_uids: offloaded.sort(),
    },
  };
}

/** A stable string for change detection between reports. */
export function capacityKey(c: NodeCapacity): string {
  return stableStringify(c);
}

function stableStringify(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableStringify(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

export interface InventoryDiff {
  upserts: NodeCapacity[];
  removed: string[];
}

/** What changed between the last report and now, node by node. */
export function diffInventory(
  previous: ReadonlyMap<string, string>,
  current: ReadonlyMap<string, NodeCapacity>,
): InventoryDiff {
  const upserts: NodeCapacity[] = [];
  const removed: string[] = [];
  for (const [name, cap] of current) {
    if (previous.get(name) !== capacityKey(cap)) upserts.push(cap);
  }
  for (const name of previous.keys()) if (!current.has(name)) removed.push(name);
  return { upserts, removed: removed.sort() };
}
