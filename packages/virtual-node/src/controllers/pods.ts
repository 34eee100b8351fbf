import type { V1ConfigMap, V1Pod, V1Secret } from '@kubernetes/client-node';
import type { PodEventReport__Output, PodRef, PodStatusEvent__Output } from '@spillway/api';
import {
  ANNOTATION_DONOR,
  ANNOTATION_REMOTE_POD,
  ANNOTATION_RESERVATION,
  ErrorCode,
  MERGE_PATCH,
  SpillwayError,
  WorkQueue,
  apiMessage,
  backoffDelay,
  isConflict,
  isNotFound,
  isSpillwayError,
  isTerminalPhase,
  podReferences,
  runWorkers,
  toSpillwayError,
  virtualNodeName,
  type Logger,
} from '@spillway/common';
import type { DonorChange } from '../donors.js';
import { ANNOTATION_DONOR_NODE, placeRequestFor } from '../forge/placement.js';
import { failedStatus, mirrorStatus, reasonFromCode, statusDiffers } from '../forge/status.js';
import { recordFromEvent, recordFromList, type RemotePodRecord } from '../remote.js';
import { donorOfNode, podKey, podsOnNode, splitKey, type ShimContext } from './context.js';

/** Event reasons the pod controller writes. */
export const REASON_OFFLOADED = 'Offloaded';
export const REASON_OFFLOAD_FAILED = 'OffloadFailed';
export const REASON_OFFLOAD_REFUSED = 'OffloadRefused';

/** Donor refusals that no retry will change: the origin pod fails, as after a kubelet's admission refusal. */
const PERMANENT = new Set<string>([
  ErrorCode.POD_REFUSED,
  ErrorCode.INVALID_ARGUMENT,
  ErrorCode.PERMISSION_DENIED,
  ErrorCode.QUOTA_EXCEEDED,
  ErrorCode.PAYLOAD_TOO_LARGE,
]);

function strip<T extends { metadata?: { managedFields?: unknown } }>(o: T): T {
  const copy = { ...o, metadata: { ...o.metadata } };
  delete copy.metadata.managedFields;
  return copy;
}

function refOf(ctx: ShimContext, pod: V1Pod): PodRef {
  return {
    origin_cluster: ctx.originCluster,
    namespace: pod.metadata!.namespace!,
    name: pod.metadata!.name!,
    uid: pod.metadata!.uid!,
  };
}

/**
 * The kubelet of the virtual nodes: for every pod bound to one it creates the pod on the
 * donor, mirrors the donor's status back, deletes the remote pod before letting the origin
 * pod go, and fails pods whose remote copy was refused or lost. Keyed by namespace/name;
 * each reconcile re-reads the pod from the cache and the remote pod from what the donor
 * last reported. A second queue, keyed by donor, re-lists each donor's pods (ListPods) on
 * every (re)connect so a restarted shim rebuilds its state without touching anything.
 */
export class PodLifecycle {
  readonly queue = new WorkQueue<string>({
    name: 'pod-lifecycle',
    baseMs: 200,
    maxMs: 30_000,
    qps: 100,
    burst: 300,
  });
  readonly donorSync = new WorkQueue<string>({ name: 'donor-sync', baseMs: 500, maxMs: 15_000 });
  private readonly log: Logger;
  /** Origin pods gone from the API whose remote pod may still exist. */
  private readonly tombstones = new Map<string, V1Pod>();
  /** Pods bound to a virtual node by others that no donor fits yet, by key → attempts. */
  private readonly placeAttempts = new Map<string, number>();
  private workers: Promise<void>[] = [];
  private resyncTimer: NodeJS.Timeout | undefined;

  constructor(private readonly ctx: ShimContext) {
    this.log = ctx.logger.child({ controller: 'pod-lifecycle' });
  }

  private ours(pod: V1Pod): string | undefined {
    return donorOfNode(this.ctx, pod.spec?.nodeName);
  }

  start(): void {
    const { ctx } = this;
    const onPod = (p: V1Pod): void => {
      if (!p.spec?.nodeName) return;
      if (p.spec.nodeName.startsWith('spillway-') || this.ours(p)) this.queue.add(podKey(p));
    };
    ctx.pods.informer.on('add', onPod);
    ctx.pods.informer.on('update', onPod);
    ctx.pods.informer.on('delete', (p) => {
      if (!p.spec?.nodeName || !this.ours(p)) return;
      this.tombstones.set(podKey(p), p);
      this.queue.add(podKey(p));
    });
    ctx.donors.on('changed', (changes: DonorChange[]) => {
      for (const c of changes) {
        // Only reachability matters to the pods; lending changes all the time.
        if (!c.reachability && ctx.remote.isSynced(c.donor)) continue;
        // Reachable again (or for the first time): learn what runs there before acting.
        if (c.after && ctx.donors.reachable(c.donor)) this.donorSync.add(c.donor);
        this.requeueNode(virtualNodeName(c.donor));
      }
    });
    for (const p of ctx.pods.informer.list()) onPod(p);
    this.workers.push(
      runWorkers(this.queue, (k) => this.reconcileQuietly(k), {
        concurrency: ctx.config.workers,
        logger: this.log,
      }),
      runWorkers(this.donorSync, (d) => this.syncDonor(d), { concurrency: 2, logger: this.log }),
    );
    this.resyncTimer = setInterval(() => this.resyncAll(), ctx.config.resyncInterval);
    this.resyncTimer.unref();
  }

  /** After the broker stream (re)connects: every donor's pods are listed again. */
  resyncAll(): void {
    for (const v of this.ctx.donors.list()) this.donorSync.add(v.donor);
  }

  requeue(keys: string[]): void {
    for (const k of keys) this.queue.add(k);
  }

  private requeueNode(nodeName: string): void {
    for (const p of podsOnNode(this.ctx, nodeName)) this.queue.add(podKey(p));
  }

  async stop(): Promise<void> {
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.queue.shutdown();
    this.donorSync.shutdown();
    await Promise.all(this.workers);
  }

  // ---- from the broker ------------------------------------------------------------------

  onPodStatus(e: PodStatusEvent__Output): void {
    const rec = recordFromEvent(e);
    if (!rec) return;
    if (this.ctx.remote.upsert(rec)) this.queue.add(`${rec.namespace}/${rec.name}`);
  }

  onPodEvent(e: PodEventReport__Output): void {
    const pod = e.pod ? this.ctx.pods.informer.get(e.pod.name, e.pod.namespace) : undefined;
    if (!pod || pod.metadata?.uid !== e.pod?.uid) return;
    this.ctx.events.emit(pod, {
      type: e.type === 'Warning' ? 'Warning' : 'Normal',
      reason: e.reason || 'Remote',
      message: `on donor ${e.donor_cluster}: ${e.message}`,
      host: pod.spec?.nodeName ?? '',
      ...(e.count > 0 ? { count: e.count } : {}),
    });
  }

  /**
   * Lists the donor's pods of this origin and applies the snapshot; then tells the donor,
   * through OffloadSync, which pods this origin still wants, so it removes orphans (pods
   * whose origin pod was deleted while the donor or the shim was away).
   */
  async syncDonor(donor: string): Promise<void> {
    const { ctx } = this;
    if (!ctx.donors.reachable(donor)) return;
    const asOf = Date.now();
    const res = await ctx.broker.listPods({ donor_cluster: donor });
    const records = res.pods
      .map((p) => recordFromList(donor, p, asOf))
      .filter((r): r is RemotePodRecord => r !== undefined);
    const changed = ctx.remote.applySnapshot(donor, records, asOf);
    const nodeName = virtualNodeName(donor);
    const wanted = podsOnNode(ctx, nodeName).filter((p) => p.metadata?.uid);
    const wantedUids = new Set(wanted.map((p) => p.metadata!.uid!));
    const orphans = records.filter((r) => !wantedUids.has(r.uid));
    for (const r of records)
      if (changed.includes(r.uid)) this.queue.add(`${r.namespace}/${r.name}`);
    this.requeueNode(nodeName);
    this.log.info(
      { donor, remotePods: records.length, originPods: wanted.length, orphans: orphans.length },
      'synced remote pods',
    );
    if (orphans.length > 0) {
      const sent = ctx.send({
        offload_sync: {
          donor_cluster: donor,
          pods: wanted.map((p) => refOf(ctx, p)),
          as_of_unix_ms: asOf,
        },
      });
      this.log.info(
        { donor, orphans: orphans.map((o) => `${o.remoteNamespace}/${o.remoteName}`), sent },
        'asked the donor to remove pods this origin no longer has',
      );
      // The donor reports each deletion; look again later in case the message was lost.
      this.donorSync.addAfter(donor, 10_000);
    }
  }

  // ---- reconcile ------------------------------------------------------------------------

  /** A write that lost a race with another writer is routine: look again, without a warning. */
  private async reconcileQuietly(key: string): Promise<void> {
    try {
      await this.reconcile(key);
    } catch (err) {
      if (!isConflict(err)) throw err;
      this.log.debug({ pod: key }, 'conflict; reconciling again');
      this.queue.addAfter(key, 100);
    }
  }

  async reconcile(key: string): Promise<void> {
    const { ctx } = this;
    const { namespace, name } = splitKey(key);
    const pod = ctx.pods.informer.get(name, namespace);
    const tomb = this.tombstones.get(key);
    if (tomb && (!pod || pod.metadata?.uid !== tomb.metadata?.uid)) {
      await this.reapTombstone(key, tomb);
      if (!pod) return;
    }
    if (!pod) return;
    const donor = this.ours(pod);
    if (!donor) return;
    const uid = pod.metadata?.uid;
    if (!uid) return;
    const rec = ctx.remote.get(uid);
    const log = this.log.child({ pod: key, donor });

    // The donor's peering is gone: nothing can run there for this origin any more.
    if (ctx.donors.hasState && !ctx.donors.get(donor)) {
      if (pod.metadata?.deletionTimestamp) await this.finalize(pod, log, 'peering removed');
      else if (!isTerminalPhase(pod.status?.phase))
        await this.writeStatus(
          pod,
          failedStatus(
            pod,
            'PeeringRemoved',
            `the peering with donor ${donor} was removed`,
            new Date(),
          ),
          log,
        );
      return;
    }

    if (pod.metadata?.deletionTimestamp) {
      await this.deleting(pod, donor, rec, log);
      return;
    }

    if (isTerminalPhase(pod.status?.phase)) {
      // Ended here (e.g. failed after a refusal) while its copy still runs there: stop it.
      if (
        rec &&
        !rec.deleted &&
        !isTerminalPhase(rec.status.phase) &&
        ctx.donors.reachable(donor)
      ) {
        await ctx.broker.deletePod({
          donor_cluster: donor,
          pod: refOf(ctx, pod),
          grace_period_seconds: 0,
        });
      }
      return;
    }

    if (rec) {
      const current = await this.ensureAnnotations(pod, donor, rec, log);
      // A kubelet that cannot see its pods posts nothing; the node lifecycle controller
      // owns their readiness meanwhile. Nor is there anything to post before the donor's
      // first word on the copy: its report follows the create within moments.
      if (ctx.donors.reachable(donor) && !rec.assumed) await this.mirror(current, rec, log);
      return;
    }

    // No remote pod known. Until the donor's pods have been listed, that proves nothing.
    if (!ctx.remote.isSynced(donor)) {
      if (ctx.donors.reachable(donor)) this.donorSync.add(donor);
      this.queue.addAfter(key, 1_000);
      return;
    }
    if (pod.metadata?.annotations?.[ANNOTATION_REMOTE_POD]) {
      // It was created there and the donor no longer has it.
      await this.writeStatus(
        pod,
        failedStatus(
          pod,
          'RemotePodLost',
          `the pod no longer exists on donor ${donor}`,
          new Date(),
        ),
        log,
      );
      return;
    }
    if (!ctx.donors.reachable(donor)) {
      this.queue.addAfter(key, 2_000);
      return;
    }
    await this.create(pod, donor, log);
  }

  private async reapTombstone(key: string, tomb: V1Pod): Promise<void> {
    const { ctx } = this;
    const uid = tomb.metadata?.uid ?? '';
    const donor = this.ours(tomb);
    const rec = ctx.remote.get(uid);
    if (donor && (!rec || !rec.deleted) && ctx.donors.reachable(donor)) {
      // The origin pod was force-deleted: its remote copy must not outlive it.
      try {
        await ctx.broker.deletePod({
          donor_cluster: donor,
          pod: refOf(ctx, tomb),
          grace_period_seconds: 0,
        });
      } catch (err) {
        if (
          !isSpillwayError(err, ErrorCode.NOT_FOUND) &&
          !isSpillwayError(err, ErrorCode.NO_PEERING)
        )
          throw err;
      }
    }
    // An unreachable donor is cleaned up by OffloadSync when it returns.
    this.tombstones.delete(key);
    ctx.remote.forget(uid);
    ctx.events.forgetPod(uid);
    this.placeAttempts.delete(key);
  }

  private async deleting(
    pod: V1Pod,
    donor: string,
    rec: RemotePodRecord | undefined,
    log: Logger,
  ): Promise<void> {
    const { ctx } = this;
    if (rec?.deleted) {
      await this.finalize(pod, log, 'remote pod gone');
      return;
    }
    if (ctx.donors.knownDown(donor)) {
      // A kubelet that is gone cannot confirm; the donor removes the pod on OffloadSync.
      await this.finalize(pod, log, 'donor unreachable; its copy is removed when it returns');
      return;
    }
    if (!rec) {
      if (!ctx.remote.isSynced(donor)) {
        if (ctx.donors.reachable(donor)) this.donorSync.add(donor);
        this.queue.addAfter(podKey(pod), 1_000);
        return;
      }
      const reservation = pod.metadata?.annotations?.[ANNOTATION_RESERVATION];
      if (reservation && !pod.metadata?.annotations?.[ANNOTATION_REMOTE_POD])
        await ctx.broker
          .release({
            reservation_id: reservation,
            reason: 'origin pod deleted before it was offloaded',
          })
          .catch(() => undefined);
      await this.finalize(pod, log, 'no remote pod');
      return;
    }
    if (!ctx.donors.reachable(donor)) {
      this.queue.addAfter(podKey(pod), 2_000);
      return;
    }
    const grace = pod.metadata?.deletionGracePeriodSeconds;
    const res = await ctx.broker.deletePod({
      donor_cluster: donor,
      pod: refOf(ctx, pod),
      grace_period_seconds: grace ?? -1,
    });
    if (res.not_found) {
      await this.finalize(pod, log, 'remote pod gone');
      return;
    }
    // The donor reports the deletion; look again in case that report is lost.
    this.queue.addAfter(podKey(pod), Math.max(2_000, ((grace ?? 30) + 2) * 1000));
  }

  /** Removes the origin pod for good, as a kubelet does once its containers are gone. */
  private async finalize(pod: V1Pod, log: Logger, why: string): Promise<void> {
    try {
      await this.ctx.core.deleteNamespacedPod({
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
  private async writeStatus(
    pod: V1Pod,
    status: V1Pod['status'],
    log: Logger,
    recompute?: (fresh: V1Pod) => V1Pod['status'],
  ): Promise<void> {
    if (!status || !statusDiffers(pod.status, status)) return;
    const name = pod.metadata!.name!;
    const namespace = pod.metadata!.namespace!;
    let base = pod;
    let body = status;
    try {
      await this.ctx.core.replaceNamespacedPodStatus({
        name,
        namespace,
        body: { ...base, status },
      });
    } catch (err) {
      if (!isConflict(err) || !recompute) throw err;
      const fresh = await this.ctx.core.readNamespacedPod({ name, namespace });
      if (fresh.metadata?.uid !== pod.metadata?.uid) return;
      const again = recompute(fresh);
      if (!again || !statusDiffers(fresh.status, again)) return;
      base = fresh;
      body = again;
      await this.ctx.core.replaceNamespacedPodStatus({
        name,
        namespace,
        body: { ...base, status: body },
      });
    }
    if (body.phase !== pod.status?.phase)
      log.info({ phase: body.phase, reason: body.reason }, 'pod phase changed');
  }

  private async mirror(pod: V1Pod, rec: RemotePodRecord, log: Logger): Promise<void> {
    const desired = (p: V1Pod): V1Pod['status'] =>
      mirrorStatus(
        p,
        { status: rec.status, deleted: rec.deleted, donor: rec.donor },
        { hostIP: this.ctx.nodeOptions.nodeAddress, now: new Date() },
      );
    const status = desired(pod)!;
    await this.writeStatus(pod, status, log, desired);
    if (
      status.phase === 'Failed' &&
      status.reason === 'RemotePodDeleted' &&
      pod.status?.phase !== 'Failed'
    )
      this.ctx.events.emit(pod, {
        type: 'Warning',
        reason: 'RemotePodDeleted',
        message: status.message ?? 'the remote pod was deleted',
        host: pod.spec?.nodeName ?? '',
      });
  }

  private async ensureAnnotations(
    pod: V1Pod,
    donor: string,
    rec: RemotePodRecord,
    log: Logger,
  ): Promise<V1Pod> {
    const a = pod.metadata?.annotations ?? {};
    const remote = rec.remoteName ? `${rec.remoteNamespace}/${rec.remoteName}` : '';
    if (!remote || (a[ANNOTATION_DONOR] === donor && a[ANNOTATION_REMOTE_POD] === remote))
      return pod;
    const first = !a[ANNOTATION_REMOTE_POD];
    // The patched pod carries the new resourceVersion the status write needs.
    const patched = await this.ctx.core.patchNamespacedPod(
      {
        name: pod.metadata!.name!,
        namespace: pod.metadata!.namespace!,
        body: {
          metadata: { annotations: { [ANNOTATION_DONOR]: donor, [ANNOTATION_REMOTE_POD]: remote } },
        },
      },
      MERGE_PATCH,
    );
    if (first) {
      const on = rec.nodeName ? ` (node ${rec.nodeName})` : '';
      // Best effort and off the pod's path to Running.
      this.ctx.events.emit(pod, {
        type: 'Normal',
        reason: REASON_OFFLOADED,
        message: `Offloaded to ${donor}${on} as ${remote}`,
        host: pod.spec?.nodeName ?? '',
      });
      log.info({ remote, donorNode: rec.nodeName }, 'offloaded');
    }
    return patched;
  }

  /** Creates the remote pod: the reservation first (pods bound by others), then references. */
  private async create(pod: V1Pod, donor: string, log: Logger): Promise<void> {
    const { ctx } = this;
    const key = podKey(pod);
    let reservation = pod.metadata?.annotations?.[ANNOTATION_RESERVATION];
    let donorNode = pod.metadata?.annotations?.[ANNOTATION_DONOR_NODE];
    if (!reservation) {
      // Scheduled here by the scheduler or by nodeName: ask the broker for room on this donor.
      const built = placeRequestFor(pod, {
        originCluster: ctx.originCluster,
        gpuResources: ctx.config.gpuResources,
        donorOfNode: (n) => donorOfNode(ctx, n),
        donors: [donor],
      });
      if ('error' in built) {
        await this.refuse(pod, donor, undefined, 'CannotOffload', built.error, log);
        return;
      }
      let res;
      try {
        res = await ctx.broker.place(built.request);
      } catch (err) {
        if (!isSpillwayError(err, ErrorCode.INVALID_ARGUMENT)) throw err;
        await this.refuse(pod, donor, undefined, 'CannotOffload', err.message, log);
        return;
      }
      if (!res.reservation) {
        const attempts = (this.placeAttempts.get(key) ?? 0) + 1;
        this.placeAttempts.set(key, attempts);
        await ctx.events.record(pod, {
          type: 'Warning',
          reason: 'NotOffloaded',
          message: `donor ${donor} cannot run this pod now (${res.reason_code || 'NO_FIT'}): ${res.reason}; retrying`,
          host: pod.spec?.nodeName ?? '',
        });
        this.queue.addAfter(
          key,
          backoffDelay(attempts - 1, {
            baseMs: 1_000,
            maxMs: ctx.config.placeRetryMax,
            jitter: 0.2,
          }),
        );
        return;
      }
      this.placeAttempts.delete(key);
      reservation = res.reservation.id;
      donorNode = res.reservation.node;
      await ctx.core.patchNamespacedPod(
        {
          name: pod.metadata!.name!,
          namespace: pod.metadata!.namespace!,
          body: {
            metadata: {
              annotations: {
                [ANNOTATION_RESERVATION]: reservation,
                [ANNOTATION_DONOR_NODE]: donorNode || null,
              },
            },
          },
        },
        MERGE_PATCH,
      );
    }
    let refs: { configMaps: string[]; secrets: string[] };
    try {
      refs = await this.references(pod);
    } catch (err) {
      const e = toSpillwayError(err);
      if (e.code !== ErrorCode.NOT_FOUND) throw err;
      // Like a kubelet's CreateContainerConfigError: the pod waits for the object.
      await ctx.events.record(pod, {
        type: 'Warning',
        reason: REASON_OFFLOAD_FAILED,
        message: e.message,
        host: pod.spec?.nodeName ?? '',
      });
      throw e;
    }
    let created = false;
    try {
      const res = await ctx.broker.createPod({
        donor_cluster: donor,
        pod: refOf(ctx, pod),
        reservation_id: reservation,
        pod_json: JSON.stringify(strip({ ...pod, status: {} })),
        config_maps_json: refs.configMaps,
        secrets_json: refs.secrets,
        node_name: donorNode ?? '',
      });
      // Until the donor reports on it, the pod is Pending there; its reports may be here already.
      ctx.remote.created({
        uid: pod.metadata!.uid!,
        donor,
        namespace: pod.metadata!.namespace!,
        name: pod.metadata!.name!,
        remoteNamespace: res.remote_namespace,
        remoteName: res.remote_name,
        nodeName: donorNode ?? '',
        status: { phase: 'Pending' },
        deleted: false,
        observedMs: -1,
        receivedMs: Date.now(),
        assumed: true,
      });
      log.info(
        {
          remote: `${res.remote_namespace}/${res.remote_name}`,
          alreadyExisted: res.already_existed,
        },
        'created remote pod',
      );
      created = true;
    } catch (err) {
      const e = toSpillwayError(err);
      if (e.code === ErrorCode.CONFLICT && e.field === 'reservation_id') {
        // Its reservation lapsed while the broker or this shim was away: its GPUs may have
        // gone to another pod, so this one asks for room on the donor again.
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
        log.info({ reservation, err: e.message }, 'reservation no longer live; placing again');
        this.queue.add(key);
        return;
      }
      if (!PERMANENT.has(e.code)) throw e;
      await this.refuse(pod, donor, reservation, reasonFromCode(e.code), e.message, log);
    }
    if (!created) return;
    // Annotate and mirror now rather than after another trip through the queue; the donor's
    // reports that arrive meanwhile are taken as the record changes.
    const uid = pod.metadata!.uid!;
    const rec = ctx.remote.get(uid);
    if (!rec) return;
    const current = await this.ensureAnnotations(pod, donor, rec, log);
    const latest = ctx.remote.get(uid) ?? rec;
    if (ctx.donors.reachable(donor) && !latest.assumed) await this.mirror(current, latest, log);
  }

  /** The donor will never run this pod: it fails here with the donor's reason, as on a real node. */
  private async refuse(
    pod: V1Pod,
    donor: string,
    reservation: string | undefined,
    reason: string,
    message: string,
    log: Logger,
  ): Promise<void> {
    const msg = `donor ${donor} refused the pod: ${message}`;
    if (reservation)
      await this.ctx.broker
        .release({ reservation_id: reservation, reason: msg })
        .catch(() => undefined);
    await this.ctx.events.record(pod, {
      type: 'Warning',
      reason: REASON_OFFLOAD_REFUSED,
      message: msg,
      host: pod.spec?.nodeName ?? '',
    });
    await this.writeStatus(pod, failedStatus(pod, reason, msg, new Date()), log);
    log.warn({ reason, message }, 'donor refused the pod');
  }

  /** The ConfigMaps and Secrets the pod references, read now; a missing required one is NOT_FOUND. */
  private async references(pod: V1Pod): Promise<{ configMaps: string[]; secrets: string[] }> {
    const { ctx } = this;
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
}
