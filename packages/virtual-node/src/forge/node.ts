import type {
  V1Lease,
  V1Node,
  V1NodeCondition,
  V1NodeStatus,
  V1Taint,
} from '@kubernetes/client-node';
import {
  GFD_PRODUCT_LABEL,
  LABEL_DONOR,
  LABEL_MANAGED_BY,
  MANAGED_BY_VALUE,
  VIRTUAL_NODE_LABEL_TYPE,
  VIRTUAL_NODE_TAINT_KEY,
  VIRTUAL_NODE_TYPE_VALUE,
  virtualNodeName,
} from '@spillway/common';
import type { DonorHealth, DonorView } from './donor.js';

/** Pure: the virtual Node of a donor, its conditions and its Lease. */

export const VIRTUAL_NODE_TAINT: V1Taint = {
  key: VIRTUAL_NODE_TAINT_KEY,
  value: 'true',
  effect: 'NoSchedule',
};

/** Marks the label prefix of per-product labels: spillway.io/gpu-product.<product>=true. */
export const GPU_PRODUCT_LABEL_PREFIX = 'spillway.io/gpu-product.';
/** On the Node: the shim set spec.unschedulable because the donor is cordoned. */
export const ANNOTATION_CORDONED_BY_DONOR = 'spillway.io/cordoned-by-donor';
export const HOSTNAME_LABEL = 'kubernetes.io/hostname';
export const ZONE_LABEL = 'topology.kubernetes.io/zone';
/** Pods per virtual node: the donor's scheduler, not this number, is the real limit. */
export const VIRTUAL_NODE_PODS = '1000';
const VIRTUAL_NODE_CPU = '10000';
const VIRTUAL_NODE_MEMORY = '64Ti';

export interface VirtualNodeOptions {
  /** InternalIP the API server dials for logs. */
  nodeAddress: string;
  kubeletPort: number;
  /** status.nodeInfo.kubeletVersion, e.g. the origin API server's version. */
  kubeletVersion: string;
  shimVersion: string;
}

/** A label value must be ≤ 63 characters of [A-Za-z0-9._-], starting and ending alphanumeric. */
export function isLabelValue(v: string): boolean {
  return v.length <= 63 && /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/.test(v);
}

/** The labels Spillway owns on a virtual node (other labels, e.g. an admin's, are left alone). */
export function virtualNodeLabels(view: DonorView): Record<string, string> {
  const name = virtualNodeName(view.donor);
  const labels: Record<string, string> = {
    [VIRTUAL_NODE_LABEL_TYPE]: VIRTUAL_NODE_TYPE_VALUE,
    [LABEL_DONOR]: view.donor,
    [LABEL_MANAGED_BY]: MANAGED_BY_VALUE,
    [HOSTNAME_LABEL]: name,
    'kubernetes.io/os': 'linux',
    'kubernetes.io/role': 'agent',
    // Each donor is its own failure domain: a lost donor does not count against the
    // disruption budget of the origin's real zones in the node lifecycle controller.
    [ZONE_LABEL]: name,
  };
  const products = view.products.filter(isLabelValue);
  // A label holds one value: the GPU Feature Discovery label only when the donor lends one product.
  if (products.length === 1) labels[GFD_PRODUCT_LABEL] = products[0]!;
  for (const p of products) {
    if (GPU_PRODUCT_LABEL_PREFIX.length + p.length - 'spillway.io/'.length <= 63)
      labels[`${GPU_PRODUCT_LABEL_PREFIX}${p}`] = 'true';
  }
  return labels;
}

/** Capacity = what the donor lends this origin now plus what this origin's pods use there. */
export function virtualNodeResources(view: DonorView): Record<string, string> {
  const out: Record<string, string> = {
    cpu: VIRTUAL_NODE_CPU,
    memory: VIRTUAL_NODE_MEMORY,
    pods: VIRTUAL_NODE_PODS,
    'ephemeral-storage': '100Ti',
  };
  for (const r of new Set([...Object.keys(view.lendable), ...Object.keys(view.inUse)])) {
    out[r] = String((view.lendable[r] ?? 0) + (view.inUse[r] ?? 0));
  }
  return out;
}

const CONDITION_TYPES = [
  'Ready',
  'MemoryPressure',
  'DiskPressure',
  'PIDPressure',
  'NetworkUnavailable',
] as const;

function sameCondition(a: V1NodeCondition | undefined, b: V1NodeCondition): boolean {
  return a !== undefined && a.status === b.status;
}

/**
 * The node's conditions. lastTransitionTime moves only when a condition's status changes;
 * lastHeartbeatTime is `now`.
 */
export function nodeConditions(
  health: DonorHealth,
  previous: readonly V1NodeCondition[] | undefined,
  now: Date,
): V1NodeCondition[] {
  const stamp = now.toISOString();
  const desired: Record<(typeof CONDITION_TYPES)[number], Omit<V1NodeCondition, 'type'>> = {
    Ready: {
      status: health.ready ? 'True' : 'False',
      reason: health.reason,
      message: health.message,
    },
    MemoryPressure: {
      status: 'False',
      reason: 'DonorHasSufficientMemory',
      message: 'memory is accounted for by the donor',
    },
    DiskPressure: {
      status: 'False',
      reason: 'DonorHasNoDiskPressure',
      message: 'disk is accounted for by the donor',
    },
    PIDPressure: {
      status: 'False',
      reason: 'DonorHasSufficientPID',
      message: 'process IDs are accounted for by the donor',
    },
    NetworkUnavailable: {
      status: 'False',
      reason: 'DonorNetworkReady',
      message: "pods use the donor's network",
    },
  };
  return CONDITION_TYPES.map((type) => {
    const c: V1NodeCondition = { type, ...desired[type] };
    const prev = previous?.find((p) => p.type === type);
    const transition = sameCondition(prev, c) ? prev!.lastTransitionTime : undefined;
    return {
      ...c,
      lastHeartbeatTime: stamp as unknown as Date,
      lastTransitionTime: (transition ?? stamp) as unknown as Date,
    };
  });
}

/** The node status the shim posts (every field of it is the shim's to own). */
export function virtualNodeStatus(
  view: DonorView,
  health: DonorHealth,
  previous: readonly V1NodeCondition[] | undefined,
  opts: VirtualNodeOptions,
  now: Date,
): V1NodeStatus {
  const resources = virtualNodeResources(view);
  return {
    capacity: resources,
    allocatable: { ...resources },
    conditions: nodeConditions(health, previous, now),
    addresses: [
      { type: 'InternalIP', address: opts.nodeAddress },
      { type: 'Hostname', address: virtualNodeName(view.donor) },
    ],
    daemonEndpoints: { kubeletEndpoint: { Port: opts.kubeletPort } },
    nodeInfo: {
      architecture: 'amd64',
      operatingSystem: 'linux',
      kubeletVersion: opts.kubeletVersion,
      kubeProxyVersion: '',
      containerRuntimeVersion: `spillway://${opts.shimVersion}`,
      kernelVersion: '',
      osImage: `Spillway virtual node for donor ${view.donor}`,
      machineID: '',
      systemUUID: '',
      bootID: '',
    },
    phase: 'Running',
  };
}

/** The Node to create for a donor. */
export function virtualNodeObject(
  view: DonorView,
  health: DonorHealth,
  opts: VirtualNodeOptions,
  now: Date,
): V1Node {
  const cordon = view.state === 'Cordoned' || view.deleting;
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: virtualNodeName(view.donor),
      labels: virtualNodeLabels(view),
      annotations: {
        'node.alpha.kubernetes.io/ttl': '0',
        ...(cordon ? { [ANNOTATION_CORDONED_BY_DONOR]: 'true' } : {}),
      },
    },
    spec: {
      taints: [{ ...VIRTUAL_NODE_TAINT }],
      ...(cordon ? { unschedulable: true } : {}),
    },
    status: virtualNodeStatus(view, health, undefined, opts, now),
  };
}

/** Labels to change on an existing node: owned labels set, stale product labels removed. */
export function labelPatch(
  current: Readonly<Record<string, string>> | undefined,
  desired: Readonly<Record<string, string>>,
): Record<string, string | null> | undefined {
  const patch: Record<string, string | null> = {};
  for (const [k, v] of Object.entries(desired)) if (current?.[k] !== v) patch[k] = v;
  for (const k of Object.keys(current ?? {})) {
    const owned = k.startsWith(GPU_PRODUCT_LABEL_PREFIX) || k === GFD_PRODUCT_LABEL;
    if (owned && !(k in desired)) patch[k] = null;
  }
  return Object.keys(patch).length > 0 ? patch : undefined;
}

export interface SpecChange {
  taints?: V1Taint[];
  unschedulable?: boolean;
  /** Value of the cordoned-by-donor annotation; null removes it. */
  cordonAnnotation?: string | null;
}

/**
 * Spec changes for an existing node: our taint back if someone removed it (others' taints,
 * e.g. the node lifecycle controller's, stay), and cordon/uncordon following the donor —
 * an admin's own cordon is never lifted.
 */
export function specChange(node: V1Node, view: DonorView): SpecChange | undefined {
  const out: SpecChange = {};
  const taints = node.spec?.taints ?? [];
  if (
    !taints.some((t) => t.key === VIRTUAL_NODE_TAINT.key && t.effect === VIRTUAL_NODE_TAINT.effect)
  ) {
    out.taints = [...taints, { ...VIRTUAL_NODE_TAINT }];
  }
  const wantCordon = view.state === 'Cordoned' || view.deleting;
  const ours = node.metadata?.annotations?.[ANNOTATION_CORDONED_BY_DONOR] === 'true';
  const cordoned = node.spec?.unschedulable === true;
  if (wantCordon && !cordoned) {
    out.unschedulable = true;
    out.cordonAnnotation = 'true';
  } else if (!wantCordon && cordoned && ours) {
    out.unschedulable = false;
    out.cordonAnnotation = null;
  } else if (!cordoned && ours) {
    out.cordonAnnotation = null;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

function conditionKey(c: V1NodeCondition): string {
  return `${c.type}=${c.status}/${c.reason ?? ''}/${c.message ?? ''}`;
}

/**
 * Whether the posted status differs from the desired one in anything but heartbeat times,
 * or its heartbeat is older than `maxAgeMs`.
 */
export function nodeStatusStale(
  current: V1NodeStatus | undefined,
  desired: V1NodeStatus,
  now: Date,
  maxAgeMs: number,
): boolean {
  if (!current) return true;
  const norm = (m: Record<string, string> | undefined): string =>
    JSON.stringify(Object.entries(m ?? {}).sort(([a], [b]) => a.localeCompare(b)));
  if (norm(current.capacity) !== norm(desired.capacity)) return true;
  if (norm(current.allocatable) !== norm(desired.allocatable)) return true;
  const cc = (current.conditions ?? []).map(conditionKey).sort().join('|');
  const dc = (desired.conditions ?? []).map(conditionKey).sort().join('|');
  if (cc !== dc) return true;
  if (JSON.stringify(current.addresses ?? []) !== JSON.stringify(desired.addresses ?? []))
    return true;
  if (
    current.daemonEndpoints?.kubeletEndpoint?.Port !==
    desired.daemonEndpoints?.kubeletEndpoint?.Port
  )
    return true;
  if (current.nodeInfo?.kubeletVersion !== desired.nodeInfo?.kubeletVersion) return true;
  const ready = current.conditions?.find((c) => c.type === 'Ready');
  const beat = ready?.lastHeartbeatTime ? new Date(ready.lastHeartbeatTime).getTime() : 0;
  return now.getTime() - beat >= maxAgeMs;
}

/** Kubernetes MicroTime: RFC 3339 with exactly six fractional digits. */
export function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** The node's Lease in kube-node-lease, owned by the Node so it goes when the node goes. */
export function nodeLease(
  node: { name: string; uid: string | undefined },
  leaseDurationSeconds: number,
  now: Date,
): V1Lease {
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: {
      name: node.name,
      namespace: 'kube-node-lease',
      ...(node.uid
        ? {
            ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: node.name, uid: node.uid }],
          }
        : {}),
    },
    spec: {
      holderIdentity: node.name,
      leaseDurationSeconds,
      // The serializer passes strings through; a Date would lose the microsecond format.
      renewTime: microTime(now) as unknown as Date,
    },
  };
}
