import type { CoreV1Event, V1PodStatus } from '@kubernetes/client-node';

/**
 * How a donor takes its GPUs back: guests run at a priority the donor chooses, and the
 * donor's own kube-scheduler preempts them when a local pod needs their GPUs. Spillway evicts
 * nothing itself; these pure rules say at which priority guests run, how long their notice
 * is, and how a preemption is recognised on either side.
 */

/** `preempt`: guests give way to the donor's own pods. `never`: default workloads do not preempt them. */
export const RECLAIM_MODES = ['preempt', 'never'] as const;
export type ReclaimMode = (typeof RECLAIM_MODES)[number];

/** The PriorityClass the donor's agent installs for guests, unless told another name. */
export const DEFAULT_GUEST_PRIORITY_CLASS = 'spillway-guest';
/** Guests' priority under `preempt`: below every pod without a PriorityClass (0). */
export const DEFAULT_PREEMPTIBLE_GUEST_PRIORITY = -1000;
/** Guests' priority under `never`: the same as pods without a PriorityClass, which preempt only lower ones. */
export const DEFAULT_KEPT_GUEST_PRIORITY = 0;
/** Kubernetes' own default termination grace period, seconds. */
export const DEFAULT_TERMINATION_GRACE_SECONDS = 30;

/** The pod condition the scheduler sets on a victim before it deletes it. */
export const DISRUPTION_TARGET = 'DisruptionTarget';
/** That condition's reason when the scheduler preempts. */
export const PREEMPTION_BY_SCHEDULER = 'PreemptionByScheduler';
/** The Event reason the scheduler records on a victim, naming the preemptor as its related object. */
export const PREEMPTED_EVENT_REASON = 'Preempted';
/** The reason an origin pod ends with when its donor took the GPUs back. */
export const REASON_RECLAIMED = 'Reclaimed';

/** The donor's reclaim policy, as the agent applies it. */
export interface GuestPriorityPolicy {
  reclaim: ReclaimMode;
  priorityClassName: string;
  priority: number;
  /** The longest termination grace period a guest gets, seconds. */
  maxGracePeriodSeconds: number;
}

/**
 * The guests' priority: the donor's choice if given, else the mode's default. Under `never`
 * a priority below 0 would let every default workload preempt guests: refused, naming why.
 */
export function guestPriority(reclaim: ReclaimMode, chosen: number | undefined): number {
  if (chosen === undefined)
    return reclaim === 'preempt' ? DEFAULT_PREEMPTIBLE_GUEST_PRIORITY : DEFAULT_KEPT_GUEST_PRIORITY;
  if (reclaim === 'never' && chosen < 0)
    throw new Error(
      `--guest-priority ${chosen} is below 0 with --reclaim never: pods without a PriorityClass (priority 0) would preempt guests`,
    );
  return chosen;
}

/** The notice a guest gets: what its origin asked for (Kubernetes' 30 s if nothing), at most the donor's cap. */
export function guestGracePeriod(asked: number | undefined, maxSeconds: number): number {
  const want = asked ?? DEFAULT_TERMINATION_GRACE_SECONDS;
  return Math.max(0, Math.min(want, maxSeconds));
}

/** The scheduler has preempted this pod (its DisruptionTarget condition says so). */
export function preemptedByScheduler(status: V1PodStatus | undefined): boolean {
  return (status?.conditions ?? []).some(
    (c) =>
      c.type === DISRUPTION_TARGET && c.status === 'True' && c.reason === PREEMPTION_BY_SCHEDULER,
  );
}

/** The pod an Event of the scheduler's says preempted its pod: namespace/name, when named. */
export function preemptorOf(e: CoreV1Event): string | undefined {
  if (e.reason !== PREEMPTED_EVENT_REASON) return undefined;
  const r = e.related;
  if (r?.kind && r.kind !== 'Pod') return undefined;
  if (r?.name) return r.namespace ? `${r.namespace}/${r.name}` : r.name;
  return undefined;
}
