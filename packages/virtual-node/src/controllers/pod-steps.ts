import type { V1ConfigMap, V1Pod, V1Secret } from '@kubernetes/client-node';
import type { PodRef } from '@spillway/api';
import {
  ANNOTATION_DONOR,
  ANNOTATION_REMOTE_POD,
  ANNOTATION_RESERVATION,
  ErrorCode,
  MERGE_PATCH,
  SpillwayError,
  apiMessage,
  isConflict,
  isNotFound,
  isSpillwayError,
  podReferences,
  toSpillwayError,
  type Logger,
} from '@spillway/common';
import {
  REASON_NOT_OFFLOADED,
  REASON_OFFLOADED,
  REASON_OFFLOAD_FAILED,
  REASON_OFFLOAD_REFUSED,
} from '../events.js';
import { ANNOTATION_DONOR_NODE, placeRequestFor } from '../forge/placement.js';
import { failedStatus, mirrorStatus, statusDiffers } from '../forge/status.js';
import type { RemotePodRecord } from '../remote.js';
import { donorOfNode, type ShimContext } from './context.js';
import type { HeldReservation, RemoteAnnotations } from './pod-decision.js';

/**
 * The side effects of the pod lifecycle controller, one small named step each: every one
 * talks to the API server or the broker and decides nothing beyond what its result says.
 * What to do, and when, is `decide`'s (pod-decision.ts).
 */

function strip<T extends { metadata?: { managedFields?: unknown } }>(o: T): T {
  const copy = { ...o, metadata: { ...o.metadata } };
  delete copy.metadata.managedFields;
  return copy;
}

export function refOf(ctx: ShimContext, pod: V1Pod): PodRef {
  return {
    origin_cluster: ctx.originCluster,
    namespace: pod.metadata!.namespace!,
    name: pod.metadata!.name!,
    uid: pod.metadata!.uid!,
  };
}

function hostOf(pod: V1Pod): string {
  return pod.spec?.nodeName ?? '';
}

// ---- the origin pod ---------------------------------------------------------------------

/** Removes the origin pod for good, as a kubelet does once its containers are gone. */
export async function finalize(
  ctx: ShimContext,
  pod: V1Pod,
  log: Logger,
  why: string,
): Promise<void> {
  try {
    await ctx.core.deleteNamespacedPod({
      name: pod.metadata!.name!,
      namespace: pod.metadata!.namespace!,
      gracePeriodSeconds: 0,
      body: { gracePeriodSeconds: 0, preconditions: { uid: pod.metadata!.uid! } },
    });
    log.info({ why }, 'removed origin pod');
  } catch (err) {
    if (!isNotFound(err) && !isConflict(err)) throw err;
  }
}

/**
 * Writes the pod's status as a kubelet does (an update of pods/status, guarded by the pod's
 * resourceVersion). When the cache lags behind a write of ours the guard fails: the pod is
 * read again and, if `recompute` gives a status for it, written once more right away.
 */
export async function writeStatus(
  ctx: ShimContext,
  pod: V1Pod,
  status: V1Pod['status'],
  log: Logger,
  recompute?: (fresh: V1Pod) => V1Pod['status'],
): Promise<void> {
  if (!status || !statusDiffers(pod.status, status)) return;
  const name = pod.metadata!.name!;
  const namespace = pod.metadata!.namespace!;
  let body = status;
  try {
    await ctx.core.replaceNamespacedPodStatus({ name, namespace, body: { ...pod, status } });
  } catch (err) {
    if (!isConflict(err) || !recompute) throw err;
    const fresh = await ctx.core.readNamespacedPod({ name, namespace });
    if (fresh.metadata?.uid !== pod.metadata?.uid) return;
    const again = recompute(fresh);
    if (!again || !statusDiffers(fresh.status, again)) return;
    body = again;
    await ctx.core.replaceNamespacedPodStatus({
      name,
      namespace,
      body: { ...fresh, status: body },
    });
  }
  if (body.phase !== pod.status?.phase)
    log.info({ phase: body.phase, reason: body.reason }, 'pod phase changed');
}

/** Fails the origin pod with a reason, as a kubelet fails a pod it cannot run. */
export async function fail(
  ctx: ShimContext,
  pod: V1Pod,
  reason: string,
  message: string,
  log: Logger,
): Promise<void> {
  await writeStatus(ctx, pod, failedStatus(pod, reason, message, new Date()), log);
}

/** Mirrors the remote copy's status onto the origin pod. */
export async function mirror(
  ctx: ShimContext,
  pod: V1Pod,
  rec: RemotePodRecord,
  log: Logger,
): Promise<void> {
  const desired = (p: V1Pod): V1Pod['status'] =>
    mirrorStatus(
      p,
      { status: rec.status, deleted: rec.deleted, donor: rec.donor },
      { hostIP: ctx.nodeOptions.nodeAddress, now: new Date() },
    );
  const status = desired(pod)!;
  await writeStatus(ctx, pod, status, log, desired);
  if (
    status.phase === 'Failed' &&
    status.reason === 'RemotePodDeleted' &&
    pod.status?.phase !== 'Failed'
  )
    ctx.events.emit(pod, {
      type: 'Warning',
      reason: 'RemotePodDeleted',
      message: status.message ?? 'the remote pod was deleted',
      host: hostOf(pod),
    });
}

/**
 * Writes the annotations that name the remote copy; the first time, says on the pod that it
 * was offloaded. Returns the patched pod: it carries the resourceVersion a status write needs.
 */
export async function annotate(
  ctx: ShimContext,
  pod: V1Pod,
  a: RemoteAnnotations,
  rec: RemotePodRecord,
  log: Logger,
): Promise<V1Pod> {
  const patched = await ctx.core.patchNamespacedPod(
    {
      name: pod.metadata!.name!,
      namespace: pod.metadata!.namespace!,
      body: {
        metadata: {
          annotations: { [ANNOTATION_DONOR]: a.donor, [ANNOTATION_REMOTE_POD]: a.remotePod },
        },
      },
    },
    MERGE_PATCH,
  );
  if (a.first) {
    const on = rec.nodeName ? ` (node ${rec.nodeName})` : '';
    // Best effort and off the pod's path to Running.
    ctx.events.emit(pod, {
      type: 'Normal',
      reason: REASON_OFFLOADED,
      message: `Offloaded to ${a.donor}${on} as ${a.remotePod}`,
      host: hostOf(pod),
    });
    log.info({ remote: a.remotePod, donorNode: rec.nodeName }, 'offloaded');
  }
  return patched;
}

// ---- placement ------------------------------------------------------------------------

export type PlaceOutcome =
  | { kind: 'placed'; reservation: HeldReservation }
  /** The donor has no room now: place again later. */
  | { kind: 'no-room'; code: string; reason: string }
  /** The pod cannot be offloaded as it is: no retry changes that. */
  | { kind: 'invalid'; message: string };

/** Asks the broker for room on this donor, for a pod scheduled here by the scheduler or by nodeName. */
export async function place(ctx: ShimContext, pod: V1Pod, donor: string): Promise<PlaceOutcome> {
  const built = placeRequestFor(pod, {
    originCluster: ctx.originCluster,
    gpuResources: ctx.config.gpuResources,
    donorOfNode: (n) => donorOfNode(ctx, n),
    donors: [donor],
  });
  if ('error' in built) return { kind: 'invalid', message: built.error };
  let res;
  try {
    res = await ctx.broker.place(built.request);
  } catch (err) {
    if (!isSpillwayError(err, ErrorCode.INVALID_ARGUMENT)) throw err;
    return { kind: 'invalid', message: err.message };
  }
  if (!res.reservation) return { kind: 'no-room', code: res.reason_code, reason: res.reason };
  return { kind: 'placed', reservation: { id: res.reservation.id, node: res.reservation.node } };
}

/** Says on the pod that no donor room was found this time, and that it is retried. */
export async function recordNoRoom(
  ctx: ShimContext,
  pod: V1Pod,
  donor: string,
  outcome: { code: string; reason: string },
): Promise<void> {
  await ctx.events.record(pod, {
    type: 'Warning',
    reason: REASON_NOT_OFFLOADED,
    message: `donor ${donor} cannot run this pod now (${outcome.code || 'NO_FIT'}): ${outcome.reason}; retrying`,
    host: hostOf(pod),
  });
}

/** Records the reservation on the pod, so a restarted shim uses it instead of placing again. */
export async function annotateReservation(
  ctx: ShimContext,
  pod: V1Pod,
  r: HeldReservation,
): Promise<void> {
  await ctx.core.patchNamespacedPod(
    {
      name: pod.metadata!.name!,
      namespace: pod.metadata!.namespace!,
      body: {
        metadata: {
          annotations: { [ANNOTATION_RESERVATION]: r.id, [ANNOTATION_DONOR_NODE]: r.node || null },
        },
      },
    },
    MERGE_PATCH,
  );
}

/**
 * Its reservation lapsed while the broker or this shim was away: its GPUs may have gone to
 * another pod, so the annotations go and the pod asks for room on the donor again.
 */
export async function recoverLapsedReservation(
  ctx: ShimContext,
  pod: V1Pod,
  reservation: string,
  err: SpillwayError,
  log: Logger,
): Promise<void> {
  await ctx.core.patchNamespacedPod(
    {
      name: pod.metadata!.name!,
      namespace: pod.metadata!.namespace!,
      body: {
        metadata: {
          annotations: { [ANNOTATION_RESERVATION]: null, [ANNOTATION_DONOR_NODE]: null },
        },
      },
    },
    MERGE_PATCH,
  );
  log.info({ reservation, err: err.message }, 'reservation no longer live; placing again');
}

/** Gives a reservation back; a failure is logged, not thrown: the reservation's TTL ends it. */
export async function release(
  ctx: ShimContext,
  reservation: string,
  reason: string,
  log: Logger,
): Promise<void> {
  try {
    await ctx.broker.release({ reservation_id: reservation, reason });
  } catch (err) {
    log.warn({ err, reservation }, 'could not release the reservation; it lapses at its TTL');
  }
}

/** The donor will never run this pod: it fails here with the donor's reason, as on a real node. */
export async function refuse(
  ctx: ShimContext,
  pod: V1Pod,
  donor: string,
  reservation: string | undefined,
  reason: string,
  message: string,
  log: Logger,
): Promise<void> {
  const msg = `donor ${donor} refused the pod: ${message}`;
  if (reservation) await release(ctx, reservation, msg, log);
  await ctx.events.record(pod, {
    type: 'Warning',
    reason: REASON_OFFLOAD_REFUSED,
    message: msg,
    host: hostOf(pod),
  });
  await fail(ctx, pod, reason, msg, log);
  log.warn({ reason, message }, 'donor refused the pod');
}

// ---- the remote pod ----------------------------------------------------------------------

export interface References {
  configMaps: string[];
  secrets: string[];
}

/**
 * The ConfigMaps and Secrets the pod references, read now. A missing required one is
 * NOT_FOUND and said on the pod, like a kubelet's CreateContainerConfigError: the pod waits
 * for the object.
 */
export async function readReferences(ctx: ShimContext, pod: V1Pod): Promise<References> {
  try {
    return await references(ctx, pod);
  } catch (err) {
    const e = toSpillwayError(err);
    if (e.code !== ErrorCode.NOT_FOUND) throw err;
    await ctx.events.record(pod, {
      type: 'Warning',
      reason: REASON_OFFLOAD_FAILED,
      message: e.message,
      host: hostOf(pod),
    });
    throw e;
  }
}

async function references(ctx: ShimContext, pod: V1Pod): Promise<References> {
  const namespace = pod.metadata!.namespace!;
  const refs = podReferences(pod);
  const read = async <T>(
    kind: string,
    ref: { name: string; optional: boolean },
    fn: () => Promise<T>,
  ): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (err) {
      if (isNotFound(err)) {
        if (ref.optional) return undefined;
        throw new SpillwayError(
          ErrorCode.NOT_FOUND,
          `${kind} "${ref.name}" not found in namespace ${namespace}; the pod waits for it`,
        );
      }
      throw new SpillwayError(
        ErrorCode.UNAVAILABLE,
        `reading ${kind} ${ref.name}: ${apiMessage(err)}`,
        {
          cause: err,
        },
      );
    }
  };
  const configMaps: string[] = [];
  for (const r of refs.configMaps) {
    const cm = await read<V1ConfigMap>('configmap', r, () =>
      ctx.core.readNamespacedConfigMap({ name: r.name, namespace }),
    );
    if (cm) configMaps.push(JSON.stringify(strip(cm)));
  }
  const secrets: string[] = [];
  for (const r of refs.secrets) {
    const s = await read<V1Secret>('secret', r, () =>
      ctx.core.readNamespacedSecret({ name: r.name, namespace }),
    );
    if (s) secrets.push(JSON.stringify(strip(s)));
  }
  return { configMaps, secrets };
}

/**
 * Creates the pod on the donor and records it as assumed (Pending there) until the donor
 * reports on it; its reports may be here already, and then win. Errors are thrown as they
 * come: `createFailure` says what each means.
 */
export async function createRemote(
  ctx: ShimContext,
  pod: V1Pod,
  donor: string,
  reservation: HeldReservation,
  refs: References,
  log: Logger,
): Promise<void> {
  const res = await ctx.broker.createPod({
    donor_cluster: donor,
    pod: refOf(ctx, pod),
    reservation_id: reservation.id,
    pod_json: JSON.stringify(strip({ ...pod, status: {} })),
    config_maps_json: refs.configMaps,
    secrets_json: refs.secrets,
    node_name: reservation.node ?? '',
  });
  ctx.remote.created({
    uid: pod.metadata!.uid!,
    donor,
    namespace: pod.metadata!.namespace!,
    name: pod.metadata!.name!,
    remoteNamespace: res.remote_namespace,
    remoteName: res.remote_name,
    nodeName: reservation.node ?? '',
    status: { phase: 'Pending' },
    deleted: false,
    observedMs: -1,
    receivedMs: Date.now(),
    assumed: true,
  });
  log.info(
    { remote: `${res.remote_namespace}/${res.remote_name}`, alreadyExisted: res.already_existed },
    'created remote pod',
  );
}

/**
 * Asks the donor to delete the remote copy; a grace of -1 means the pod's own. Returns
 * whether the donor had no such pod.
 */
export async function deleteRemote(
  ctx: ShimContext,
  pod: V1Pod,
  donor: string,
  graceSeconds: number,
): Promise<{ notFound: boolean }> {
  const res = await ctx.broker.deletePod({
    donor_cluster: donor,
    pod: refOf(ctx, pod),
    grace_period_seconds: graceSeconds,
  });
  return { notFound: res.not_found };
}

/** Deletes the remote copy of a force-deleted origin pod; one already gone is fine. */
export async function reapRemote(ctx: ShimContext, tomb: V1Pod, donor: string): Promise<void> {
  try {
    await deleteRemote(ctx, tomb, donor, 0);
  } catch (err) {
    if (!isSpillwayError(err, ErrorCode.NOT_FOUND) && !isSpillwayError(err, ErrorCode.NO_PEERING))
      throw err;
  }
}
