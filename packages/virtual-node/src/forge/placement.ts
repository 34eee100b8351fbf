import type {
  V1Binding,
  V1NodeSelectorRequirement,
  V1Pod,
  V1PodCondition,
} from '@kubernetes/client-node';
import type {
  LabelRequirement,
  PlaceRequest,
  Reservation__Output,
  Toleration,
} from '@spillway/api';
import {
  ANNOTATION_DONOR,
  ANNOTATION_RESERVATION,
  GFD_PRODUCT_LABEL,
  LABEL_DONOR,
  VIRTUAL_NODE_LABEL_TYPE,
  VIRTUAL_NODE_TAINT_KEY,
  podRequests,
} from '@spillway/common';
import { GPU_PRODUCT_LABEL_PREFIX, HOSTNAME_LABEL, ZONE_LABEL } from './node.js';

/** Pure: which pods to offload, what to ask the broker for them, and how to bind them. */

/** On an origin pod: the donor node its reservation holds GPUs on. */
export const ANNOTATION_DONOR_NODE = 'spillway.io/donor-node';
export const OFFLOAD_ENABLED = 'enabled';

export type Candidacy =
  { candidate: true; unschedulableSince: number } | { candidate: false; reason: string };

function scheduledCondition(pod: V1Pod): V1PodCondition | undefined {
  return pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
}

/** The GPU resources a pod requests (name → count), or the error that makes it unplaceable. */
export function gpuDemand(
  pod: V1Pod,
  gpuResources: readonly string[],
): { resource: string; gpus: number } | { error: string } | undefined {
  let gpus: Record<string, number>;
  try {
    gpus = podRequests(pod, gpuResources).gpus;
  } catch (err) {
    return { error: (err as Error).message };
  }
  const names = Object.keys(gpus).filter((k) => (gpus[k] ?? 0) > 0);
  if (names.length === 0) return undefined;
  if (names.length > 1)
    return {
      error: `the pod requests ${names.join(' and ')}; Spillway offloads pods that use one GPU resource`,
    };
  return { resource: names[0]!, gpus: gpus[names[0]!]! };
}

/**
 * Whether the overflow binder should offload this pod: unbound, Unschedulable by the
 * scheduler, asking for a GPU resource, in an opted-in namespace, and not waiting on a
 * preemption that will make room locally.
 */
export function offloadCandidacy(
  pod: V1Pod,
  opts: { gpuResources: readonly string[]; namespaceOptedIn: boolean },
): Candidacy {
  if (pod.spec?.nodeName) return { candidate: false, reason: 'bound' };
  if (pod.metadata?.deletionTimestamp) return { candidate: false, reason: 'deleting' };
  if (pod.status?.phase && pod.status.phase !== 'Pending')
    return { candidate: false, reason: `phase ${pod.status.phase}` };
  if (!opts.namespaceOptedIn) return { candidate: false, reason: 'namespace not opted in' };
  if (pod.metadata?.ownerReferences?.some((o) => o.kind === 'DaemonSet'))
    return { candidate: false, reason: 'DaemonSet pod' };
  const cond = scheduledCondition(pod);
  if (cond?.status !== 'False' || cond.reason !== 'Unschedulable')
    return { candidate: false, reason: 'not Unschedulable' };
  if (pod.status?.nominatedNodeName)
    return { candidate: false, reason: `preemption pending on ${pod.status.nominatedNodeName}` };
  if (!gpuDemand(pod, opts.gpuResources)) return { candidate: false, reason: 'no GPU request' };
  const t = cond.lastTransitionTime ? new Date(cond.lastTransitionTime).getTime() : NaN;
  return { candidate: true, unschedulableSince: Number.isFinite(t) ? t : 0 };
}

export interface PlacementContext {
  originCluster: string;
  gpuResources: readonly string[];
  /** Virtual node name → donor. */
  donorOfNode: (nodeName: string) => string | undefined;
  /** Restrict the placement to these donors (a pod bound to a virtual node by others). */
  donors?: readonly string[];
  /** A gang member that asks for no GPU goes with its gang: 0 of this resource. */
  noGpuResource?: string;
}

interface Requirements {
  requirements: LabelRequirement[];
  /** Donors the pod's own selectors name; undefined when they name none. */
  donors: string[] | undefined;
}

function intersect(a: string[] | undefined, b: string[]): string[] {
  return a === undefined ? b : a.filter((x) => b.includes(x));
}

/**
 * The pod's node constraints as the broker matches them on donor nodes. Labels that only the
 * virtual node carries (type, hostname, zone, donor) say which donors the pod accepts and are
 * not sent on; the per-product labels become a product requirement.
 */
function requirementsOf(pod: V1Pod, ctx: PlacementContext): Requirements | { error: string } {
  const out: LabelRequirement[] = [];
  let donors: string[] | undefined;
  const visit = (r: V1NodeSelectorRequirement, field: string): string | undefined => {
    const values = r.values ?? [];
    if (r.key === VIRTUAL_NODE_LABEL_TYPE) return undefined;
    if (r.key === LABEL_DONOR && r.operator === 'In') {
      donors = intersect(donors, values);
      return undefined;
    }
    if ((r.key === HOSTNAME_LABEL || r.key === ZONE_LABEL) && r.operator === 'In') {
      const named = values.map((v) => ctx.donorOfNode(v)).filter((d): d is string => !!d);
      // Only virtual-node names say anything about donors; a real node's name cannot match one.
      if (named.length === 0)
        return `${field}: selects origin nodes (${values.join(', ')}), which no donor has`;
      donors = intersect(donors, named);
      return undefined;
    }
    if (r.key.startsWith(GPU_PRODUCT_LABEL_PREFIX)) {
      out.push({
        key: GFD_PRODUCT_LABEL,
        operator: r.operator === 'DoesNotExist' ? 'NotIn' : 'In',
        values: [r.key.slice(GPU_PRODUCT_LABEL_PREFIX.length)],
      });
      return undefined;
    }
    out.push({ key: r.key, operator: r.operator, values: [...values] });
    return undefined;
  };
  for (const [key, value] of Object.entries(pod.spec?.nodeSelector ?? {})) {
    const err = visit({ key, operator: 'In', values: [value] }, `spec.nodeSelector[${key}]`);
    if (err) return { error: err };
  }
  const required = pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
  if (required) {
    const terms = required.nodeSelectorTerms ?? [];
    if (terms.length > 1)
      return {
        error: `the pod's required node affinity has ${terms.length} alternative terms; Spillway offloads pods with one`,
      };
    const term = terms[0];
    for (const [i, f] of (term?.matchFields ?? []).entries()) {
      if (f.key === 'metadata.name' && f.operator === 'In') {
        const named = (f.values ?? [])
          .map((v) => ctx.donorOfNode(v))
          .filter((d): d is string => !!d);
        if (named.length === 0)
          return { error: `required node affinity matchFields[${i}] selects origin nodes by name` };
        donors = intersect(donors, named);
      } else {
        return { error: `required node affinity matchFields[${i}] cannot be matched on a donor` };
      }
    }
    for (const [i, e] of (term?.matchExpressions ?? []).entries()) {
      const err = visit(e, `required node affinity matchExpressions[${i}]`);
      if (err) return { error: err };
    }
  }
  return { requirements: out, donors };
}

function tolerationsOf(pod: V1Pod): Toleration[] {
  return (pod.spec?.tolerations ?? [])
    .filter(
      // The virtual node's taint and the origin's node-condition taints mean nothing on a donor.
      (t) => t.key !== VIRTUAL_NODE_TAINT_KEY && !(t.key ?? '').startsWith('node.kubernetes.io/'),
    )
    .map((t) => ({
      key: t.key ?? '',
      operator: t.operator ?? 'Equal',
      value: t.value ?? '',
      effect: t.effect ?? '',
    }));
}

/** The PlaceRequest for an origin pod, or why it cannot be offloaded. */
export function placeRequestFor(
  pod: V1Pod,
  ctx: PlacementContext,
): { request: PlaceRequest } | { error: string } {
  const uid = pod.metadata?.uid;
  const name = pod.metadata?.name;
  if (!uid || !name) return { error: 'the pod has no name or uid' };
  const demand =
    gpuDemand(pod, ctx.gpuResources) ??
    (ctx.noGpuResource ? { resource: ctx.noGpuResource, gpus: 0 } : undefined);
  if (!demand) return { error: `the pod requests none of ${ctx.gpuResources.join(', ')}` };
  if ('error' in demand) return demand;
  const reqs = requirementsOf(pod, ctx);
  if ('error' in reqs) return reqs;
  let donors = reqs.donors;
  if (ctx.donors) donors = intersect(donors, [...ctx.donors]);
  if (donors !== undefined && donors.length === 0)
    return { error: 'the pod selects no donor this origin is peered with' };
  const totals = podRequests(pod, ctx.gpuResources);
  return {
    request: {
      pod: {
        origin_cluster: ctx.originCluster,
        namespace: pod.metadata?.namespace ?? 'default',
        name,
        uid,
      },
      resource_name: demand.resource,
      gpus: demand.gpus,
      node_requirements: reqs.requirements,
      tolerations: tolerationsOf(pod),
      cpu_millis: totals.cpuMillis,
      memory_bytes: totals.memoryBytes,
      donors: donors ?? [],
    },
  };
}

/**
 * The Binding that puts a pod on a donor's virtual node. The API server copies its
 * annotations onto the pod in the same write, so the reservation travels with the binding;
 * the uid makes it fail for a re-created pod of the same name.
 */
export function bindingFor(
  pod: V1Pod,
  nodeName: string,
  reservation: Reservation__Output,
): V1Binding {
  return {
    apiVersion: 'v1',
    kind: 'Binding',
    metadata: {
      name: pod.metadata!.name!,
      namespace: pod.metadata!.namespace!,
      ...(pod.metadata?.uid ? { uid: pod.metadata.uid } : {}),
      annotations: {
        [ANNOTATION_RESERVATION]: reservation.id,
        [ANNOTATION_DONOR]: reservation.donor_cluster,
        ...(reservation.node ? { [ANNOTATION_DONOR_NODE]: reservation.node } : {}),
      },
    },
    target: { apiVersion: 'v1', kind: 'Node', name: nodeName },
  };
}
