import type { V1Pod } from '@kubernetes/client-node';
import {
  ANNOTATION_DONOR,
  ANNOTATION_REMOTE_POD,
  ANNOTATION_RESERVATION,
  ErrorCode,
  isTerminalPhase,
} from '@spillway/common';
import { ANNOTATION_DONOR_NODE } from '../forge/placement.js';
import type { RemotePodRecord } from '../remote.js';
import { AWAIT_DONOR_SYNC_MS, DONOR_UNREACHABLE_RETRY_MS, deleteRecheckMs } from './delays.js';

/**
 * Pure: what the pod lifecycle controller does next for one origin pod on a virtual node,
 * from the pod, what the shim knows of its remote copy and what the broker says of its
 * donor. No I/O here; `PodLifecycle` reads the state, calls `decide` and runs the one named
 * step the action names.
 */

/** What is known of the donor behind the pod's virtual node, read from the registry. */
export interface DonorFacts {
  name: string;
  /** The broker's peering state lists the donor (or has not arrived yet, so nothing is known). */
  peered: boolean;
  /** Reachable and taking commands right now. */
  reachable: boolean;
  /** The broker says the donor is down, not merely that the broker cannot be reached. */
  knownDown: boolean;
  /** The donor's pods have been listed: only then does a missing record mean a missing pod. */
  synced: boolean;
}

/** The origin pod's annotations that name its remote copy, to be written. */
export interface RemoteAnnotations {
  donor: string;
  /** remoteNamespace/remoteName */
  remotePod: string;
  /** The pod had no remote-pod annotation yet: this is when it is offloaded. */
  first: boolean;
}

/** A reservation the binder (or an earlier reconcile) already holds for the pod. */
export interface HeldReservation {
  id: string;
  /** The donor node the reservation is on, when the broker chose one. */
  node: string | undefined;
}

export type PodAction =
  /** Nothing to do until something changes. */
  | { kind: 'none'; why: string }
  /** Fail the origin pod with this reason, as a kubelet fails a pod it cannot run. */
  | { kind: 'fail'; reason: string; message: string }
  /** Remove the origin pod for good; first release a reservation that was never used. */
  | { kind: 'finalize'; why: string; release?: { reservation: string; reason: string } }
  /** Nothing is known of the remote pod yet: list the donor's pods (if it can be reached) and look again. */
  | { kind: 'await-sync'; listDonor: boolean; retryMs: number }
  /** The donor cannot be asked now: look again later. */
  | { kind: 'retry'; why: string; retryMs: number }
  /** The origin pod is being deleted: delete its remote copy with the pod's grace period. */
  | { kind: 'delete-remote'; graceSeconds: number | undefined; recheckMs: number }
  /** The origin pod ended here while its copy still runs there: stop the copy at once. */
  | { kind: 'stop-remote' }
  /** The remote copy exists: write the annotations that name it, and mirror its status. */
  | {
      kind: 'mirror';
      record: RemotePodRecord;
      annotate: RemoteAnnotations | undefined;
      mirror: boolean;
    }
  /** No remote copy yet: create it, placing the pod first unless it holds a reservation. */
  | { kind: 'create'; reservation: HeldReservation | undefined };

export type PodActionKind = PodAction['kind'];

/** The annotations to write so the origin pod names its remote copy, or undefined if they already do. */
export function remoteAnnotations(
  pod: V1Pod,
  donor: string,
  rec: RemotePodRecord,
): RemoteAnnotations | undefined {
  const a = pod.metadata?.annotations ?? {};
  const remotePod = rec.remoteName ? `${rec.remoteNamespace}/${rec.remoteName}` : '';
  if (!remotePod || (a[ANNOTATION_DONOR] === donor && a[ANNOTATION_REMOTE_POD] === remotePod))
    return undefined;
  return { donor, remotePod, first: !a[ANNOTATION_REMOTE_POD] };
}

/** The reservation the pod's annotations hold, if any. */
export function heldReservation(pod: V1Pod): HeldReservation | undefined {
  const a = pod.metadata?.annotations ?? {};
  const id = a[ANNOTATION_RESERVATION];
  return id ? { id, node: a[ANNOTATION_DONOR_NODE] } : undefined;
}

/** A record of a copy that still runs (or may): it exists, is not deleted, has not ended. */
function runsThere(rec: RemotePodRecord | undefined): rec is RemotePodRecord {
  return !!rec && !rec.deleted && !isTerminalPhase(rec.status.phase);
}

export function decide(pod: V1Pod, rec: RemotePodRecord | undefined, donor: DonorFacts): PodAction {
  if (!pod.metadata?.uid) return { kind: 'none', why: 'the pod has no uid yet' };
  const deleting = !!pod.metadata.deletionTimestamp;
  const terminal = isTerminalPhase(pod.status?.phase);

  // The donor's peering is gone: nothing can run there for this origin any more.
  if (!donor.peered) {
    if (deleting) return { kind: 'finalize', why: 'peering removed' };
    if (terminal) return { kind: 'none', why: 'ended; peering removed' };
    return {
      kind: 'fail',
      reason: 'PeeringRemoved',
      message: `the peering with donor ${donor.name} was removed`,
    };
  }

  if (deleting) return decideDeletion(pod, rec, donor);

  // Ended here (e.g. failed after a refusal): never brought back, never created again.
  if (terminal) {
    if (runsThere(rec) && donor.reachable) return { kind: 'stop-remote' };
    return { kind: 'none', why: 'ended' };
  }

  if (rec) {
    // A kubelet that cannot see its pods posts nothing; the node lifecycle controller owns
    // their readiness meanwhile. Nor is there anything to post before the donor's first word
    // on the copy: its report follows the create within moments.
    const annotate = remoteAnnotations(pod, donor.name, rec);
    const mirror = donor.reachable && !rec.assumed;
    if (!annotate && !mirror)
      return {
        kind: 'none',
        why: donor.reachable ? 'awaiting the donor report' : 'donor unreachable',
      };
    return { kind: 'mirror', record: rec, annotate, mirror };
  }

  // No remote pod known. Until the donor's pods have been listed, that proves nothing.
  if (!donor.synced)
    return { kind: 'await-sync', listDonor: donor.reachable, retryMs: AWAIT_DONOR_SYNC_MS };
  if (pod.metadata.annotations?.[ANNOTATION_REMOTE_POD])
    // It was created there and the donor no longer has it.
    return {
      kind: 'fail',
      reason: 'RemotePodLost',
      message: `the pod no longer exists on donor ${donor.name}`,
    };
  if (!donor.reachable)
    return { kind: 'retry', why: 'donor unreachable', retryMs: DONOR_UNREACHABLE_RETRY_MS };
  return { kind: 'create', reservation: heldReservation(pod) };
}

/** The origin pod is being deleted: its remote copy goes first, as a kubelet's containers do. */
function decideDeletion(
  pod: V1Pod,
  rec: RemotePodRecord | undefined,
  donor: DonorFacts,
): PodAction {
  if (rec?.deleted) return { kind: 'finalize', why: 'remote pod gone' };
  // A kubelet that is gone cannot confirm; the donor removes the pod on OffloadSync.
  if (donor.knownDown)
    return { kind: 'finalize', why: 'donor unreachable; its copy is removed when it returns' };
  if (!rec) {
    if (!donor.synced)
      return { kind: 'await-sync', listDonor: donor.reachable, retryMs: AWAIT_DONOR_SYNC_MS };
    const held = heldReservation(pod);
    if (held && !pod.metadata?.annotations?.[ANNOTATION_REMOTE_POD])
      return {
        kind: 'finalize',
        why: 'no remote pod',
        release: { reservation: held.id, reason: 'origin pod deleted before it was offloaded' },
      };
    return { kind: 'finalize', why: 'no remote pod' };
  }
  if (!donor.reachable)
    return { kind: 'retry', why: 'donor unreachable', retryMs: DONOR_UNREACHABLE_RETRY_MS };
  const grace = pod.metadata?.deletionGracePeriodSeconds;
  return { kind: 'delete-remote', graceSeconds: grace, recheckMs: deleteRecheckMs(grace) };
}

/** What to do about a pod the API no longer has (or has again under another uid). */
export type TombstoneAction =
  | { kind: 'keep' }
  /** Forget it; first delete its remote copy on `deleteRemoteOn` when that donor can be asked. */
  | { kind: 'reap'; deleteRemoteOn: string | undefined };

export function decideTombstone(
  tomb: V1Pod | undefined,
  pod: V1Pod | undefined,
  rec: RemotePodRecord | undefined,
  donor: { name: string; reachable: boolean } | undefined,
): TombstoneAction {
  if (!tomb || (pod && pod.metadata?.uid === tomb.metadata?.uid)) return { kind: 'keep' };
  // The origin pod was force-deleted: its remote copy must not outlive it. An unreachable
  // donor is cleaned up by OffloadSync when it returns.
  const deleteRemote = donor && (!rec || !rec.deleted) && donor.reachable;
  return { kind: 'reap', deleteRemoteOn: deleteRemote ? donor.name : undefined };
}

/** Donor refusals that no retry will change: the origin pod fails, as after a kubelet's admission refusal. */
const PERMANENT = new Set<string>([
  ErrorCode.POD_REFUSED,
  ErrorCode.INVALID_ARGUMENT,
  ErrorCode.PERMISSION_DENIED,
  ErrorCode.QUOTA_EXCEEDED,
  ErrorCode.PAYLOAD_TOO_LARGE,
]);

/**
 * How a failed CreatePod is handled: a reservation that lapsed while the broker or the shim
 * was away is given up and the pod placed again; a permanent refusal fails the pod; anything
 * else is retried with the queue's back-off.
 */
export function createFailure(e: {
  code: string;
  field?: string | undefined;
}): 'lapsed' | 'refused' | 'retry' {
  if (e.code === ErrorCode.CONFLICT && e.field === 'reservation_id') return 'lapsed';
  return PERMANENT.has(e.code) ? 'refused' : 'retry';
}
