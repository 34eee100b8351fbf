import type {
  V1ContainerStatus,
  V1Pod,
  V1PodCondition,
  V1PodStatus,
} from '@kubernetes/client-node';
import {
  DISRUPTION_TARGET,
  PREEMPTION_BY_SCHEDULER,
  REASON_RECLAIMED,
  isTerminalPhase,
  preemptedByScheduler,
} from '@spillway/common';

/**
 * Pure: donor pod status → origin pod status, the way a kubelet would post it for a pod on
 * its node.
 */

/** Conditions the kubelet posts; every other type (PodScheduled, DisruptionTarget, readiness gates) belongs to others in the origin. */
export const KUBELET_CONDITIONS: ReadonlySet<string> = new Set([
  'PodReadyToStartContainers',
  'Initialized',
  'ContainersReady',
  'Ready',
]);

const PHASES = new Set(['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown']);

/** The status fields the shim writes for a pod on a virtual node, and compares before writing. */
export const MIRRORED_FIELDS = [
  'phase',
  'conditions',
  'hostIP',
  'hostIPs',
  'qosClass',
  'nominatedNodeName',
  'reason',
  'message',
  'podIP',
  'podIPs',
  'startTime',
  'initContainerStatuses',
  'containerStatuses',
  'ephemeralContainerStatuses',
] as const satisfies readonly (keyof V1PodStatus)[];

export interface RemoteView {
  /** The donor pod's status (v1.PodStatus JSON). */
  status: V1PodStatus;
  /** The donor pod is gone. */
  deleted: boolean;
  donor: string;
}

export interface MirrorOptions {
  /** The virtual node's InternalIP, posted as hostIP like a kubelet posts its node's. */
  hostIP: string;
  now: Date;
}

function stamp(d: Date): Date {
  // Kubernetes Time has second precision; strings pass the serializer unchanged.
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z') as unknown as Date;
}

function mergeConditions(
  origin: readonly V1PodCondition[] | undefined,
  remote: readonly V1PodCondition[] | undefined,
): V1PodCondition[] {
  const kept = (origin ?? []).filter((c) => !KUBELET_CONDITIONS.has(c.type));
  const mirrored = (remote ?? []).filter((c) => KUBELET_CONDITIONS.has(c.type));
  return [...kept, ...mirrored];
}

/** Kubelet's status for a container it lost track of when its pod ended. */
function lostContainer(
  name: string,
  image: string,
  prev: V1ContainerStatus | undefined,
  now: Date,
): V1ContainerStatus {
  if (prev?.state?.terminated) return { ...prev, ready: false, started: false };
  return {
    name,
    image: prev?.image ?? image,
    imageID: prev?.imageID ?? '',
    ...(prev?.containerID ? { containerID: prev.containerID } : {}),
    ready: false,
    started: false,
    restartCount: prev?.restartCount ?? 0,
    ...(prev?.lastState ? { lastState: prev.lastState } : {}),
    state: {
      terminated: {
        exitCode: 137,
        reason: 'ContainerStatusUnknown',
        message: 'The container could not be located when the pod was terminated',
        ...(prev?.state?.running?.startedAt ? { startedAt: prev.state.running.startedAt } : {}),
        finishedAt: stamp(now),
      },
    },
  };
}

/**
 * The origin pod Failed with `reason` and `message`. Containers that were known to run are
 * reported terminated as a kubelet reports containers it lost; a pod that never ran gets no
 * container statuses, as after a kubelet's admission refusal.
 */
export function failedStatus(
  origin: V1Pod,
  reason: string,
  message: string,
  now: Date,
): V1PodStatus {
  const cur = origin.status ?? {};
  const ran = (cur.containerStatuses ?? []).length > 0;
  const byName = new Map((cur.containerStatuses ?? []).map((c) => [c.name, c]));
  const at = stamp(now);
  const notReady = (type: string): V1PodCondition => ({
    type,
    status: 'False',
    reason: 'PodFailed',
    lastTransitionTime: at,
  });
  const conditions = [
    ...(cur.conditions ?? []).filter((c) => !KUBELET_CONDITIONS.has(c.type)),
    ...(ran
      ? (cur.conditions ?? []).filter(
          (c) =>
            KUBELET_CONDITIONS.has(c.type) && c.type !== 'Ready' && c.type !== 'ContainersReady',
        )
      : []),
    notReady('ContainersReady'),
    notReady('Ready'),
  ];
  return {
    ...cur,
    phase: 'Failed',
    reason,
    message,
    conditions,
    ...(ran
      ? {
          containerStatuses: (origin.spec?.containers ?? []).map((c) =>
            lostContainer(c.name, c.image ?? '', byName.get(c.name), now),
          ),
        }
      : {}),
  };
}

/**
 * The origin pod Failed because its donor took the GPUs back (its scheduler preempted the
 * copy for a pod of its own). The DisruptionTarget condition is the one Kubernetes sets on
 * a preempted pod, so a Job's podFailurePolicy can tell a reclaim from a crash.
 */
export function reclaimedStatus(origin: V1Pod, donor: string, now: Date): V1PodStatus {
  const message = `donor ${donor} reclaimed its GPUs: its scheduler preempted the pod for one of its own`;
  const failed = failedStatus(origin, REASON_RECLAIMED, message, now);
  const disruption: V1PodCondition = {
    type: DISRUPTION_TARGET,
    status: 'True',
    reason: PREEMPTION_BY_SCHEDULER,
    message,
    lastTransitionTime: stamp(now),
  };
  return {
    ...failed,
    conditions: [
      ...(failed.conditions ?? []).filter((c) => c.type !== DISRUPTION_TARGET),
      disruption,
    ],
  };
}

/**
 * The origin status a kubelet would post for its pod given the donor's pod. The origin keeps
 * what Kubernetes owns there (PodScheduled and other non-kubelet conditions, QoS class,
 * nominated node); phase, kubelet conditions, container statuses, IPs and start time come
 * from the donor. A terminal origin pod never changes again; a remote pod that is gone
 * while the origin pod still runs ends it as Failed.
 */
export function mirrorStatus(origin: V1Pod, remote: RemoteView, opts: MirrorOptions): V1PodStatus {
  const cur = origin.status ?? {};
  if (isTerminalPhase(cur.phase)) return cur;
  const r = remote.status;
  if (preemptedByScheduler(r) && (remote.deleted || isTerminalPhase(r.phase)))
    return reclaimedStatus(origin, remote.donor, opts.now);
  if (remote.deleted && !isTerminalPhase(r.phase)) {
    return failedStatus(
      origin,
      'RemotePodDeleted',
      `the pod was deleted on donor ${remote.donor} before it finished`,
      opts.now,
    );
  }
  const phase = r.phase && PHASES.has(r.phase) ? r.phase : 'Pending';
  // Fields nobody here owns (e.g. resource claim statuses) are carried over untouched.
  const out: V1PodStatus = { ...cur };
  for (const k of MIRRORED_FIELDS) delete out[k];
  out.phase = phase;
  out.conditions = mergeConditions(cur.conditions, r.conditions);
  out.hostIP = opts.hostIP;
  out.hostIPs = [{ ip: opts.hostIP }];
  if (cur.qosClass ?? r.qosClass) out.qosClass = cur.qosClass ?? r.qosClass!;
  if (cur.nominatedNodeName) out.nominatedNodeName = cur.nominatedNodeName;
  if (r.reason) out.reason = r.reason;
  if (r.message) out.message = r.message;
  if (r.podIP) out.podIP = r.podIP;
  if (r.podIPs?.length) out.podIPs = r.podIPs;
  if (r.startTime) out.startTime = r.startTime;
  if (r.initContainerStatuses?.length) out.initContainerStatuses = r.initContainerStatuses;
  if (r.containerStatuses?.length) out.containerStatuses = r.containerStatuses;
  if (r.ephemeralContainerStatuses?.length)
    out.ephemeralContainerStatuses = r.ephemeralContainerStatuses;
  return out;
}

/** SCREAMING_SNAKE error codes as the CamelCase reasons pod statuses use: POD_REFUSED → PodRefused. */
export function reasonFromCode(code: string): string {
  const parts = code
    .toLowerCase()
    .split(/[_\s-]+/)
    .filter(Boolean);
  const camel = parts.map((p) => p[0]!.toUpperCase() + p.slice(1)).join('');
  return camel || 'OffloadFailed';
}

const DATE_STRING = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;

/**
 * A canonical JSON of an API object for comparing: Dates and RFC 3339 strings become the
 * same second-precision string (informer caches hold both), undefined and empty fields drop.
 */
export function canonical(v: unknown): string {
  const walk = (x: unknown): unknown => {
    if (x instanceof Date) return x.toISOString().replace(/\.\d{3}Z$/, 'Z');
    if (typeof x === 'string' && DATE_STRING.test(x)) {
      const d = new Date(x);
      return Number.isNaN(d.getTime()) ? x : d.toISOString().replace(/\.\d{3}Z$/, 'Z');
    }
    if (Array.isArray(x)) return x.map(walk);
    if (x !== null && typeof x === 'object') {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(x).sort()) {
        const val = walk((x as Record<string, unknown>)[k]);
        if (val === undefined || val === null) continue;
        if (Array.isArray(val) && val.length === 0) continue;
        if (typeof val === 'object' && !Array.isArray(val) && Object.keys(val).length === 0)
          continue;
        out[k] = val;
      }
      return out;
    }
    return x;
  };
  return JSON.stringify(walk(v)) ?? '';
}

/** Whether posting `desired` would change the pod's status. */
export function statusDiffers(current: V1PodStatus | undefined, desired: V1PodStatus): boolean {
  const pick = (s: V1PodStatus | undefined): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const k of MIRRORED_FIELDS) out[k] = s?.[k];
    return out;
  };
  return canonical(pick(current)) !== canonical(pick(desired));
}
