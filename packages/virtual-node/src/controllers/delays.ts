import { backoffDelay, type WorkQueueOptions } from '@spillway/common';

/**
 * Every retry and back-off of the shim's controllers, in one place, each with why it has the
 * value it has. Durations a user may want to change are flags in config.ts instead.
 */

// ---- work queues (base and cap of the per-key back-off after an error) ----------------

/**
 * Pod lifecycle: errors are mostly API-server or broker hiccups, so the first retry comes
 * quickly; the cap keeps a pod that keeps failing from being forgotten for long. 100 qps
 * with a burst of 300 lets a restarted shim walk a few hundred pods without stalling while
 * keeping it from flooding the API server in a storm of events.
 */
export const POD_QUEUE: WorkQueueOptions = {
  name: 'pod-lifecycle',
  baseMs: 200,
  maxMs: 30_000,
  qps: 100,
  burst: 300,
};

/**
 * Donor sync (ListPods through the broker): a failed listing usually means the donor or the
 * broker is briefly away, so wait a little longer than for a pod; 15 s caps how stale a
 * reconnected donor's view can stay.
 */
export const DONOR_SYNC_QUEUE: WorkQueueOptions = {
  name: 'donor-sync',
  baseMs: 500,
  maxMs: 15_000,
};

/** Overflow binder: a failed placement or binding is retried soon, at most every 30 s. */
export const BINDER_QUEUE: WorkQueueOptions = {
  name: 'overflow-binder',
  baseMs: 500,
  maxMs: 30_000,
};

/** Virtual nodes: a failed Node write is retried soon, at most every 30 s. */
export const NODE_QUEUE: WorkQueueOptions = {
  name: 'virtual-nodes',
  baseMs: 200,
  maxMs: 30_000,
};

// ---- pod lifecycle -----------------------------------------------------------------

/**
 * A write lost a race with another writer (409): our cache is a moment behind; by the
 * time this passes it has usually caught up, so the retry reads the winner's version.
 */
export const CONFLICT_RETRY_MS = 100;

/**
 * Nothing is known of the pod on its donor until the donor's pods have been listed; the
 * listing is already queued and takes a round trip through the broker, about this long.
 */
export const AWAIT_DONOR_SYNC_MS = 1_000;

/**
 * The donor cannot be reached right now (broker stream down, donor not Ready): its return
 * re-queues the pod through the registry, so this is only a safety net, kept short so a
 * missed notification costs little.
 */
export const DONOR_UNREACHABLE_RETRY_MS = 2_000;

/**
 * After asking a donor to remove orphans: it reports each deletion, and this relists it in
 * case that message was lost. Long enough for the donor to delete with a short grace.
 */
export const ORPHAN_RECHECK_MS = 10_000;

/** Kubernetes' default terminationGracePeriodSeconds, when the pod does not say. */
export const DEFAULT_GRACE_SECONDS = 30;
/** Beyond the grace period, time for the donor's report of the deletion to arrive. */
export const DELETE_REPORT_SLACK_SECONDS = 2;
/** Never look again sooner than this after asking for a deletion, even with grace 0. */
export const DELETE_RECHECK_MIN_MS = 2_000;

/**
 * When to look again at a pod whose remote copy was asked to stop: once its grace period
 * (and a little) is over, in case the donor's report of the deletion was lost.
 */
export function deleteRecheckMs(graceSeconds: number | undefined): number {
  const grace = graceSeconds ?? DEFAULT_GRACE_SECONDS;
  return Math.max(DELETE_RECHECK_MIN_MS, (grace + DELETE_REPORT_SLACK_SECONDS) * 1000);
}

/**
 * A pod no donor fits yet is placed again with exponential back-off from 1 s (capacity often
 * frees within seconds, as a pod ends) up to --place-retry-max; 20 % jitter spreads pods that
 * failed together so they do not all ask again in the same instant.
 */
export const PLACE_RETRY_BASE_MS = 1_000;
export const PLACE_RETRY_JITTER = 0.2;

/** The delay before placing again a pod that found no room `attempts` times in a row. */
export function placeRetryMs(attempts: number, maxMs: number, random?: () => number): number {
  return backoffDelay(attempts - 1, {
    baseMs: PLACE_RETRY_BASE_MS,
    maxMs,
    jitter: PLACE_RETRY_JITTER,
    ...(random ? { random } : {}),
  });
}

// ---- overflow binder ------------------------------------------------------------------

/**
 * How long a pod we bound is trusted to be bound while the cache still shows it unbound:
 * far longer than a watch event takes, short enough that a binding that was in fact lost
 * is retried soon.
 */
export const BOUND_MEMORY_MS = 30_000;

/**
 * We bound the pod but the cache does not show it yet: the informer's update normally comes
 * within milliseconds; this is the fallback if it is slow.
 */
export const BOUND_RECHECK_MS = 1_000;

/**
 * The broker stream is down or has not sent the peering state yet: the reconnect re-queues
 * waiting pods; this is the fallback.
 */
export const BROKER_AWAY_RETRY_MS = 2_000;

/** The chosen donor's virtual node is not registered yet: the node controller does it within moments. */
export const NODE_NOT_REGISTERED_RETRY_MS = 1_000;

// ---- virtual nodes -------------------------------------------------------------------

/** Renew Leases at least this often even with a very short --lease-duration, sparing the API server. */
export const LEASE_RENEW_MIN_MS = 1_000;

/** Look again just after a donor's NotReady deadline, so the node turns NotReady on time. */
export const NOT_READY_SLACK_MS = 50;

/** A removed peering's node waits for its pods to be failed or gone; look again this soon. */
export const NODE_REMOVAL_RECHECK_MS = 1_000;

/** How soon a gang waiting for its pods looks again (any pod of it changing requeues too). */
export const GANG_RECHECK_MS = 2_000;
/** How often a gang past --gang-timeout looks again. */
export const GANG_GAVE_UP_RECHECK_MS = 60_000;
/** How long a gang's owning object (JobSet, PodGroup, Job, ...) read is reused. */
export const GANG_OWNER_CACHE_MS = 15_000;
