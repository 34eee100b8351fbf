import { invalid, validateClusterId } from '@spillway/common';
import { labelRequirement } from '../placement/constraints.js';
import type {
  CandidateVerdict as ProtoCandidateVerdict,
  CapacityReport__Output,
  Component as ProtoComponent,
  LabelRequirement__Output,
  NodeCapacity__Output,
  Peering as ProtoPeering,
  PeeringState as ProtoPeeringState,
  PlaceRequest__Output,
  PlaceResponse,
  PodRef as ProtoPodRef,
  PodRef__Output,
  Reservation as ProtoReservation,
  Toleration__Output,
} from '@spillway/api';
import type {
  LabelRequirement,
  PeeringState,
  PeeringView,
  PlacementRequest,
  PlacementResult,
  Toleration,
} from '../core/api.js';
import type {
  CapacityUpdate,
  Component,
  NodeInventory,
  PodRef,
  ReservationRecord,
  Taint,
} from '../model.js';

/**
 * Pure translation between the gRPC contract and the broker's model, with the validation
 * every field needs on the way in. Anything malformed throws INVALID_ARGUMENT naming the
 * field, so a handler can refuse the message before it touches the core.
 */

export const LIMITS = {
  nodesPerReport: 5_000,
  gpuCount: 1_000_000,
  gpusPerPod: 1_000_000,
  labelsPerNode: 256,
  taintsPerNode: 64,
  resourcesPerNode: 64,
  offloadedPodsPerNode: 1_000,
  requirements: 64,
  tolerations: 64,
  values: 256,
  donors: 256,
  string: 1_024,
  podsPerSync: 10_000,
} as const;

/** A bounded string; `required` refuses the empty string. */
export function str(
  value: unknown,
  field: string,
  opts: { required?: boolean; max?: number } = {},
): string {
  if (value === undefined || value === null) value = '';
  if (typeof value !== 'string') throw invalid(field, 'must be a string');
  const max = opts.max ?? LIMITS.string;
  if (value.length > max) throw invalid(field, `must be at most ${max} characters`);
  if (opts.required && value.length === 0) throw invalid(field, 'is required');
  return value;
}

/** int64 fields arrive as decimal strings (longs: String); they must be safe integers. */
export function int(
  value: unknown,
  field: string,
  opts: { min?: number; max?: number } = {},
): number {
  const n =
    typeof value === 'number'
      ? value
      : typeof value === 'string' && value !== ''
        ? Number(value)
        : 0;
  if (!Number.isSafeInteger(n)) throw invalid(field, `${JSON.stringify(value)} is not an integer`);
  const min = opts.min ?? 0;
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  if (n < min || n > max) throw invalid(field, `${n} is out of range [${min}, ${max}]`);
  return n;
}

export function list<T>(value: T[] | undefined | null, field: string, max: number): T[] {
  const v = value ?? [];
  if (!Array.isArray(v)) throw invalid(field, 'must be a list');
  if (v.length > max) throw invalid(field, `at most ${max} entries (got ${v.length})`);
  return v;
}

/** Kubernetes object names (DNS subdomain) for nodes, namespaces and pods. */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
/** Extended resource names, e.g. nvidia.com/gpu or nvidia.com/mig-1g.10gb. */
const RESOURCE_NAME =
  /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const TAINT_EFFECTS = new Set(['NoSchedule', 'PreferNoSchedule', 'NoExecute']);

export function dnsName(value: unknown, field: string): string {
  const s = str(value, field, { required: true, max: 253 });
  if (!DNS_SUBDOMAIN.test(s))
    throw invalid(field, `${JSON.stringify(s)} is not a valid Kubernetes name`);
  return s;
}

export function resourceName(value: unknown, field: string): string {
  const s = str(value, field, { required: true, max: 253 });
  if (!RESOURCE_NAME.test(s))
    throw invalid(field, `${JSON.stringify(s)} is not a valid resource name`);
  return s;
}

export function clusterId(value: unknown, field: string): string {
  return validateClusterId(str(value, field, { required: true, max: 40 }), field);
}

// ---- components -------------------------------------------------------------------------

export function componentFromProto(
  value: ProtoComponent | undefined,
  field = 'hello.component',
): Component {
  if (value === 'COMPONENT_AGENT' || value === 1) return 'agent';
  if (value === 'COMPONENT_VIRTUAL_NODE' || value === 2) return 'virtual-node';
  throw invalid(field, 'must be COMPONENT_AGENT or COMPONENT_VIRTUAL_NODE');
}

export function componentToProto(c: Component): 'COMPONENT_AGENT' | 'COMPONENT_VIRTUAL_NODE' {
  return c === 'agent' ? 'COMPONENT_AGENT' : 'COMPONENT_VIRTUAL_NODE';
}

// ---- pods -------------------------------------------------------------------------------

export function podRefFromProto(p: PodRef__Output | null | undefined, field = 'pod'): PodRef {
  if (!p) throw invalid(field, 'is required');
  return {
    originCluster: clusterId(p.origin_cluster, `${field}.origin_cluster`),
    namespace: dnsName(p.namespace, `${field}.namespace`),
    name: dnsName(p.name, `${field}.name`),
    uid: str(p.uid, `${field}.uid`, { required: true, max: 128 }),
  };
}

export function podRefToProto(p: PodRef): ProtoPodRef {
  return { origin_cluster: p.originCluster, namespace: p.namespace, name: p.name, uid: p.uid };
}

// ---- capacity ---------------------------------------------------------------------------

function nodeFromProto(n: NodeCapacity__Output, field: string): NodeInventory {
  const name = dnsName(n.name, `${field}.name`);
  const gpus: NodeInventory['gpus'] = {};
  const entries = Object.entries(n.gpus ?? {});
  if (entries.length > LIMITS.resourcesPerNode)
    throw invalid(`${field}.gpus`, `at most ${LIMITS.resourcesPerNode} resources`);
  for (const [res, amount] of entries) {
    const f = `${field}.gpus[${res}]`;
    resourceName(res, `${field}.gpus`);
    const allocatable = int(amount.allocatable, `${f}.allocatable`, { max: LIMITS.gpuCount });
    const free = int(amount.free, `${f}.free`, { max: LIMITS.gpuCount });
    if (free > allocatable)
      throw invalid(`${f}.free`, `${free} exceeds allocatable ${allocatable}`);
    gpus[res] = { allocatable, free };
  }
  const labelEntries = Object.entries(n.labels ?? {});
  if (labelEntries.length > LIMITS.labelsPerNode)
    throw invalid(`${field}.labels`, `at most ${LIMITS.labelsPerNode} labels`);
  const labels: Record<string, string> = {};
  for (const [k, v] of labelEntries) {
    labels[str(k, `${field}.labels`, { required: true, max: 317 })] = str(
      v,
      `${field}.labels[${k}]`,
      { max: 63 },
    );
  }
  const taints: Taint[] = list(n.taints, `${field}.taints`, LIMITS.taintsPerNode).map((t, i) => {
    const effect = str(t.effect, `${field}.taints[${i}].effect`, { required: true });
    if (!TAINT_EFFECTS.has(effect))
      throw invalid(
        `${field}.taints[${i}].effect`,
        `${JSON.stringify(effect)} is not a taint effect`,
      );
    return {
      key: str(t.key, `${field}.taints[${i}].key`, { required: true, max: 317 }),
      value: str(t.value, `${field}.taints[${i}].value`, { max: 63 }),
      effect,
    };
  });
  const cpuAllocatableMillis = int(n.cpu_allocatable_millis, `${field}.cpu_allocatable_millis`);
  const cpuFreeMillis = int(n.cpu_free_millis, `${field}.cpu_free_millis`);
  const memoryAllocatableBytes = int(
    n.memory_allocatable_bytes,
    `${field}.memory_allocatable_bytes`,
  );
  const memoryFreeBytes = int(n.memory_free_bytes, `${field}.memory_free_bytes`);
  return {
    name,
    gpus,
    gpuProduct: str(n.gpu_product, `${field}.gpu_product`, { max: 253 }),
    gpuMemoryMiB: int(n.gpu_memory_mib, `${field}.gpu_memory_mib`, { max: 16 * 1024 * 1024 }),
    labels,
    taints,
    ready: n.ready === true,
    cordoned: n.cordoned === true,
    cpuAllocatableMillis,
    cpuFreeMillis,
    memoryAllocatableBytes,
    memoryFreeBytes,
    offloadedPodUids: list(
      n.offloaded_pod_uids,
      `${field}.offloaded_pod_uids`,
      LIMITS.offloadedPodsPerNode,
    ).map((u, i) => str(u, `${field}.offloaded_pod_uids[${i}]`, { required: true, max: 128 })),
  };
}

export function capacityFromProto(r: CapacityReport__Output): CapacityUpdate {
  const nodes = list(r.nodes, 'capacity.nodes', LIMITS.nodesPerReport).map((n, i) =>
    nodeFromProto(n, `capacity.nodes[${i}]`),
  );
  const seen = new Set<string>();
  for (const [i, n] of nodes.entries()) {
    if (seen.has(n.name))
      throw invalid(`capacity.nodes[${i}].name`, `node ${n.name} is listed twice`);
    seen.add(n.name);
  }
  return {
    full: r.full === true,
    nodes,
    removedNodes: list(r.removed_nodes, 'capacity.removed_nodes', LIMITS.nodesPerReport).map(
      (n, i) => dnsName(n, `capacity.removed_nodes[${i}]`),
    ),
    sequence: int(r.sequence, 'capacity.sequence'),
  };
}

// ---- placement --------------------------------------------------------------------------

function requirementFromProto(r: LabelRequirement__Output, field: string): LabelRequirement {
  const key = str(r.key, `${field}.key`, { required: true, max: 317 });
  const operator = str(r.operator, `${field}.operator`, { required: true });
  const values = list(r.values, `${field}.values`, LIMITS.values).map((v, i) =>
    str(v, `${field}.values[${i}]`, { max: 63 }),
  );
  return labelRequirement(key, operator, values, field);
}

function tolerationFromProto(t: Toleration__Output, field: string): Toleration {
  // Kubernetes defaults an empty operator to Equal.
  const operator = str(t.operator, `${field}.operator`) || 'Equal';
  if (operator !== 'Exists' && operator !== 'Equal')
    throw invalid(`${field}.operator`, 'must be Exists or Equal');
  const effect = str(t.effect, `${field}.effect`);
  if (effect !== '' && !TAINT_EFFECTS.has(effect))
    throw invalid(`${field}.effect`, `${JSON.stringify(effect)} is not a taint effect`);
  return {
    key: str(t.key, `${field}.key`, { max: 317 }),
    operator,
    value: str(t.value, `${field}.value`, { max: 63 }),
    effect,
  };
}

/** Validates a PlaceRequest; the pod's origin must be the caller (checked by the handler). */
export function placeRequestFromProto(
  r: PlaceRequest__Output,
  /** 0 for a gang member that only goes with its gang. */
  minGpus = 1,
): PlacementRequest {
  return {
    pod: podRefFromProto(r.pod, 'pod'),
    resource: resourceName(r.resource_name, 'resource_name'),
    gpus: int(r.gpus, 'gpus', { min: minGpus, max: LIMITS.gpusPerPod }),
    nodeRequirements: list(r.node_requirements, 'node_requirements', LIMITS.requirements).map(
      (q, i) => requirementFromProto(q, `node_requirements[${i}]`),
    ),
    tolerations: list(r.tolerations, 'tolerations', LIMITS.tolerations).map((t, i) =>
      tolerationFromProto(t, `tolerations[${i}]`),
    ),
    cpuMillis: int(r.cpu_millis, 'cpu_millis'),
    memoryBytes: int(r.memory_bytes, 'memory_bytes'),
    donors: list(r.donors, 'donors', LIMITS.donors).map((d, i) => clusterId(d, `donors[${i}]`)),
  };
}

export function reservationToProto(r: ReservationRecord): ProtoReservation {
  return {
    id: r.id,
    origin_cluster: r.origin,
    donor_cluster: r.donor,
    node: r.node,
    resource_name: r.resource,
    gpus: r.gpus,
    pod: podRefToProto(r.pod),
    expires_at: r.expiresAt,
  };
}

export function placementResultToProto(result: PlacementResult): PlaceResponse {
  const verdicts: ProtoCandidateVerdict[] = result.verdicts.map((v) => ({
    donor_cluster: v.donor,
    node: v.node,
    reason: v.reason,
    score: v.score,
  }));
  if (result.placed) return { reservation: reservationToProto(result.reservation), verdicts };
  return { reason: result.reason, reason_code: result.code, verdicts };
}

// ---- peerings ---------------------------------------------------------------------------

function peeringToProto(p: PeeringView): ProtoPeering {
  return {
    origin_cluster: p.origin,
    donor_cluster: p.donor,
    max_gpus: p.maxGpus,
    gpu_products: p.gpuProducts,
    donor_state: p.donorState,
    lendable: { ...p.lendable },
    in_use: { ...p.inUse },
    donor_gpu_products: p.donorGpuProducts,
    tenant_namespace: p.tenantNamespace,
    pod_security: p.podSecurity,
    deleting_since: p.deletingSince ?? '',
  };
}

export function peeringStateToProto(s: PeeringState): ProtoPeeringState {
  return { as_origin: s.asOrigin.map(peeringToProto), as_donor: s.asDonor.map(peeringToProto) };
}
