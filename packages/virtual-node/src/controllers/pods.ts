import type { V1Pod } from '@kubernetes/client-node';
import type { PodEventReport__Output, PodStatusEvent__Output } from '@spillway/api';
import {
  WorkQueue,
  isConflict,
  runWorkers,
  toSpillwayError,
  virtualNodeName,
  type Logger,
} from '@spillway/common';
import type { DonorChange } from '../donors.js';
import { REASON_CANNOT_OFFLOAD } from '../events.js';
import { reasonFromCode } from '../forge/status.js';
import { recordFromEvent, recordFromList, type RemotePodRecord } from '../remote.js';
import { donorOfNode, podKey, podsOnNode, splitKey, type ShimContext } from './context.js';
import {
  CONFLICT_RETRY_MS,
  DONOR_SYNC_QUEUE,
  ORPHAN_RECHECK_MS,
  POD_QUEUE,
  placeRetryMs,
} from './delays.js';
import {
  createFailure,
  decide,
  decideTombstone,
  remoteAnnotations,
  type DonorFacts,
  type HeldReservation,
  type PodAction,
} from './pod-decision.js';
import * as step from './pod-steps.js';

/**
 * The kubelet of the virtual nodes: for every pod bound to one it creates the pod on the
 * donor, mirrors the donor's status back, deletes the remote pod before letting the origin
 * pod go, and fails pods whose remote copy was refused or lost. Keyed by namespace/name;
 * each reconcile re-reads the pod from the cache and the remote pod from what the donor
 * last reported. A second queue, keyed by donor, re-lists each donor's pods (ListPods) on
 * every (re)connect so a restarted shim rebuilds its state without touching anything.
 */
export class PodLifecycle {
  readonly queue = new WorkQueue<string>(POD_QUEUE);
  readonly donorSync = new WorkQueue<string>(DONOR_SYNC_QUEUE);
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
          pods: wanted.map((p) => step.refOf(ctx, p)),
          as_of_unix_ms: asOf,
        },
      });
      this.log.info(
        { donor, orphans: orphans.map((o) => `${o.remoteNamespace}/${o.remoteName}`), sent },
        'asked the donor to remove pods this origin no longer has',
      );
      // The donor reports each deletion; look again later in case the message was lost.
      this.donorSync.addAfter(donor, ORPHAN_RECHECK_MS);
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
      this.queue.addAfter(key, CONFLICT_RETRY_MS);
    }
  }

  /** Reads the current state, decides (pod-decision.ts), and runs the one step decided. */
  async reconcile(key: string): Promise<void> {
    const { ctx } = this;
    const { namespace, name } = splitKey(key);
    const pod = ctx.pods.informer.get(name, namespace);
    const tomb = this.tombstones.get(key);
    if (tomb) {
      const tombDonor = this.ours(tomb);
      const t = decideTombstone(
        tomb,
        pod,
        ctx.remote.get(tomb.metadata?.uid ?? ''),
        tombDonor ? { name: tombDonor, reachable: ctx.donors.reachable(tombDonor) } : undefined,
      );
      if (t.kind === 'reap') await this.reap(key, tomb, t.deleteRemoteOn);
    }
    if (!pod) return;
    const donor = this.ours(pod);
    if (!donor) return;
    const uid = pod.metadata?.uid;
    const rec = uid ? ctx.remote.get(uid) : undefined;
    const action = decide(pod, rec, this.facts(donor));
    await this.run(action, pod, donor, this.log.child({ pod: key, donor }));
  }

  private facts(donor: string): DonorFacts {
    const { donors, remote } = this.ctx;
    return {
      name: donor,
      peered: !donors.hasState || donors.get(donor) !== undefined,
      reachable: donors.reachable(donor),
      knownDown: donors.knownDown(donor),
      synced: remote.isSynced(donor),
    };
  }

  private async run(action: PodAction, pod: V1Pod, donor: string, log: Logger): Promise<void> {
    const { ctx } = this;
    const key = podKey(pod);
    switch (action.kind) {
      case 'none':
        return;
      case 'fail':
        return step.fail(ctx, pod, action.reason, action.message, log);
      case 'finalize':
        if (action.release)
          await step.release(ctx, action.release.reservation, action.release.reason, log);
        return step.finalize(ctx, pod, log, action.why);
      case 'await-sync':
        if (action.listDonor) this.donorSync.add(donor);
        this.queue.addAfter(key, action.retryMs);
        return;
      case 'retry':
        this.queue.addAfter(key, action.retryMs);
        return;
      case 'delete-remote': {
        const res = await step.deleteRemote(ctx, pod, donor, action.graceSeconds ?? -1);
        if (res.notFound) return step.finalize(ctx, pod, log, 'remote pod gone');
        // The donor reports the deletion; look again in case that report is lost.
        this.queue.addAfter(key, action.recheckMs);
        return;
      }
      case 'stop-remote':
        await step.deleteRemote(ctx, pod, donor, 0);
        return;
      case 'mirror': {
        const current = action.annotate
          ? await step.annotate(ctx, pod, action.annotate, action.record, log)
          : pod;
        if (action.mirror) await step.mirror(ctx, current, action.record, log);
        return;
      }
      case 'create':
        return this.create(pod, donor, action.reservation, log);
      default: {
        const never: never = action;
        throw new Error(`unknown pod action ${JSON.stringify(never)}`);
      }
    }
  }

  /** Forgets a pod the API no longer has, deleting its remote copy first when decided. */
  private async reap(key: string, tomb: V1Pod, deleteRemoteOn: string | undefined): Promise<void> {
    const { ctx } = this;
    const uid = tomb.metadata?.uid ?? '';
    if (deleteRemoteOn) await step.reapRemote(ctx, tomb, deleteRemoteOn);
    this.tombstones.delete(key);
    ctx.remote.forget(uid);
    ctx.events.forgetPod(uid);
    this.placeAttempts.delete(key);
  }

  // ---- create -----------------------------------------------------------------------------

  /**
   * Creates the remote pod: the reservation first (pods bound by others hold none), then the
   * references, then the pod on the donor; then annotates and mirrors at once.
   */
  private async create(
    pod: V1Pod,
    donor: string,
    held: HeldReservation | undefined,
    log: Logger,
  ): Promise<void> {
    const { ctx } = this;
    const reservation = held ?? (await this.reserve(pod, donor, log));
    if (!reservation) return;
    const refs = await step.readReferences(ctx, pod);
    try {
      await step.createRemote(ctx, pod, donor, reservation, refs, log);
    } catch (err) {
      const e = toSpillwayError(err);
      switch (createFailure(e)) {
        case 'lapsed':
          await step.recoverLapsedReservation(ctx, pod, reservation.id, e, log);
          this.queue.add(podKey(pod));
          return;
        case 'refused':
          return step.refuse(
            ctx,
            pod,
            donor,
            reservation.id,
            reasonFromCode(e.code),
            e.message,
            log,
          );
        case 'retry':
          throw e;
      }
    }
    await this.annotateAndMirror(pod, donor, log);
  }

  /** Places a pod scheduled here by others; undefined when it must wait or was refused. */
  private async reserve(
    pod: V1Pod,
    donor: string,
    log: Logger,
  ): Promise<HeldReservation | undefined> {
    const { ctx } = this;
    const key = podKey(pod);
    const outcome = await step.place(ctx, pod, donor);
    switch (outcome.kind) {
      case 'invalid':
        await step.refuse(ctx, pod, donor, undefined, REASON_CANNOT_OFFLOAD, outcome.message, log);
        return undefined;
      case 'no-room': {
        const attempts = (this.placeAttempts.get(key) ?? 0) + 1;
        this.placeAttempts.set(key, attempts);
        await step.recordNoRoom(ctx, pod, donor, outcome);
        this.queue.addAfter(key, placeRetryMs(attempts, ctx.config.placeRetryMax));
        return undefined;
      }
      case 'placed':
        this.placeAttempts.delete(key);
        await step.annotateReservation(ctx, pod, outcome.reservation);
        return outcome.reservation;
    }
  }

  /**
   * Annotates and mirrors right after the create rather than after another trip through the
   * queue; the donor's reports that arrive meanwhile are taken as the record changes.
   */
  private async annotateAndMirror(pod: V1Pod, donor: string, log: Logger): Promise<void> {
    const { ctx } = this;
    const uid = pod.metadata!.uid!;
    const rec = ctx.remote.get(uid);
    if (!rec) return;
    const a = remoteAnnotations(pod, donor, rec);
    const current = a ? await step.annotate(ctx, pod, a, rec, log) : pod;
    const latest = ctx.remote.get(uid) ?? rec;
    if (ctx.donors.reachable(donor) && !latest.assumed)
      await step.mirror(ctx, current, latest, log);
  }
}
