import type { V1Namespace, V1Pod } from '@kubernetes/client-node';
import {
  ErrorCode,
  WorkQueue,
  apiMessage,
  apiStatus,
  isSpillwayError,
  runWorkers,
  toSpillwayError,
  virtualNodeName,
  type Logger,
} from '@spillway/common';
import type { Reservation__Output } from '@spillway/api';
import type { DonorChange } from '../donors.js';
import { REASON_CANNOT_OFFLOAD, REASON_NOT_OFFLOADED } from '../events.js';
import { originFit } from '../forge/origin-fit.js';
import { GangBinder } from './gang.js';
import { bindingFor, offloadCandidacy, placeRequestFor } from '../forge/placement.js';
import { offloadRefusal } from '../forge/refusal.js';
import {
  donorOfNode,
  isVirtualNode,
  namespaceOptedIn,
  podKey,
  splitKey,
  type ShimContext,
} from './context.js';
import {
  BINDER_QUEUE,
  BOUND_MEMORY_MS,
  BOUND_RECHECK_MS,
  BROKER_AWAY_RETRY_MS,
  NODE_NOT_REGISTERED_RETRY_MS,
  placeRetryMs,
} from './delays.js';

function lendsMore(c: DonorChange): boolean {
  if (!c.after) return false;
  if (!c.before) return true;
  if (c.before.state !== c.after.state) return true;
  return Object.entries(c.after.lendable).some(([r, n]) => n > (c.before!.lendable[r] ?? 0));
}

/**
 * The overflow binder: GPU pods the scheduler cannot place stay Unschedulable for the grace
 * period (so local capacity wins), then the broker places them on a donor and they are bound
 * to that donor's virtual node through the Binding API — which fails cleanly if the scheduler
 * bound the pod first, in which case the reservation is released.
 */
export class OverflowBinder {
  readonly queue: WorkQueue<string>;
  private readonly log: Logger;
  /** Pods no donor could take, by key → attempts; retried with back-off and on new capacity. */
  private readonly waiting = new Map<string, number>();
  private workers: Promise<void> | undefined;
  /** Pods this binder bound, by uid → when: the cache may show them unbound a moment longer. */
  private readonly bound = new Map<string, number>();
  /** Pods kept home because no donor would run them, by uid → the reason they were told. */
  private readonly refused = new Map<string, string>();

  private readonly gangs: GangBinder;

  constructor(private readonly ctx: ShimContext) {
    this.log = ctx.logger.child({ controller: 'overflow-binder' });
    this.queue = new WorkQueue<string>(BINDER_QUEUE);
    this.gangs = new GangBinder(ctx, {
      queue: this.queue,
      bind: (key, pod, r) => this.bindReserved(key, pod, r),
      waiting: this.waiting,
      log: this.log,
    });
  }

  start(): void {
    const { ctx } = this;
    const onPod = (p: V1Pod): void => {
      if (!p.spec?.nodeName && !p.metadata?.deletionTimestamp) this.queue.add(podKey(p));
      else {
        this.waiting.delete(podKey(p));
        this.bound.delete(p.metadata?.uid ?? '');
        this.refused.delete(p.metadata?.uid ?? '');
      }
    };
    ctx.pods.informer.on('add', onPod);
    ctx.pods.informer.on('update', onPod);
    ctx.pods.informer.on('delete', (p) => {
      this.waiting.delete(podKey(p));
      this.bound.delete(p.metadata?.uid ?? '');
      this.refused.delete(p.metadata?.uid ?? '');
    });
    const onNamespace = (ns: V1Namespace): void => {
      const name = ns.metadata?.name;
      for (const p of ctx.pods.informer.list(name))
        if (!p.spec?.nodeName) this.queue.add(podKey(p));
    };
    ctx.namespaces?.informer.on('add', onNamespace);
    ctx.namespaces?.informer.on('update', onNamespace);
    // More to lend (a pod ended, a donor came back): pods that found no room try again now.
    ctx.donors.on('changed', (changes) => {
      if (changes.some(lendsMore)) this.retryWaiting();
    });
    for (const p of ctx.pods.informer.list()) onPod(p);
    this.workers = runWorkers(this.queue, (k) => this.reconcile(k), {
      concurrency: ctx.config.workers,
      logger: this.log,
    });
  }

  retryWaiting(): void {
    for (const key of this.waiting.keys()) this.queue.add(key);
  }

  async stop(): Promise<void> {
    this.queue.shutdown();
    await this.workers;
  }

  async reconcile(key: string): Promise<void> {
    const { ctx } = this;
    const { namespace, name } = splitKey(key);
    const pod = ctx.pods.informer.get(name, namespace);
    if (!pod) {
      this.waiting.delete(key);
      return;
    }
    const c = offloadCandidacy(pod, {
      gpuResources: ctx.config.gpuResources,
      namespaceOptedIn: namespaceOptedIn(ctx, namespace),
    });
    if (!c.candidate) {
      this.waiting.delete(key);
      return;
    }
    const boundAt = this.bound.get(pod.metadata?.uid ?? '');
    if (boundAt !== undefined) {
      if (Date.now() - boundAt < BOUND_MEMORY_MS) {
        // Our binding is not in the cache yet; the update that brings it ends this pod here.
        this.queue.addAfter(key, BOUND_RECHECK_MS);
        return;
      }
      this.bound.delete(pod.metadata!.uid!);
    }
    // What the origin can tell a donor would refuse is decided here, before any binding: the
    // pod stays Pending for local capacity, told once why it is not offloaded.
    const refusal = offloadRefusal(pod);
    if (refusal) {
      this.waiting.delete(key);
      const uid = pod.metadata?.uid ?? '';
      if (this.refused.get(uid) === refusal) return;
      this.refused.set(uid, refusal);
      await ctx.events.record(pod, {
        type: 'Warning',
        reason: REASON_CANNOT_OFFLOAD,
        message: `Spillway will not offload this pod: ${refusal}; it stays Pending until the origin can run it`,
      });
      return;
    }
    this.refused.delete(pod.metadata?.uid ?? '');
    // A pod of a gang goes with its gang, all members together, or not at all.
    if (await this.gangs.reconcile(pod)) return;
    const waited = Date.now() - c.unschedulableSince;
    if (waited < ctx.config.gracePeriod) {
      // Waiting only helps when some origin node could run the pod once room is made.
      const fit = ctx.config.skipGraceWhenNoOriginFit
        ? originFit(pod, ctx.originNodes.informer.list(), ctx.config.gpuResources)
        : { never: false as const };
      if (!fit.never) {
        this.queue.addAfter(key, ctx.config.gracePeriod - waited);
        return;
      }
      this.log.debug({ pod: key, reason: fit.reason }, 'no origin node could run it: no grace');
    }
    if (!ctx.donors.connected || !ctx.donors.hasState) {
      // The stream's (re)connect re-queues waiting pods through the registry.
      this.waiting.set(key, this.waiting.get(key) ?? 0);
      this.queue.addAfter(key, BROKER_AWAY_RETRY_MS);
      return;
    }
    const built = placeRequestFor(pod, {
      originCluster: ctx.originCluster,
      gpuResources: ctx.config.gpuResources,
      donorOfNode: (n) => donorOfNode(ctx, n),
    });
    if ('error' in built) {
      // Nothing will change until the pod does; its next update brings it back here.
      this.waiting.delete(key);
      await ctx.events.record(pod, {
        type: 'Warning',
        reason: REASON_CANNOT_OFFLOAD,
        message: `Spillway cannot offload this pod: ${built.error}`,
      });
      return;
    }
    let res;
    try {
      res = await ctx.broker.place(built.request);
    } catch (err) {
      // The broker found the request itself wrong: retrying the same pod changes nothing.
      if (!isSpillwayError(err, ErrorCode.INVALID_ARGUMENT)) {
        // The broker is away or cannot reach its store: say so on the pod, and retry.
        const e = toSpillwayError(err);
        await ctx.events.record(pod, {
          type: 'Warning',
          reason: REASON_NOT_OFFLOADED,
          message: `the broker cannot place this pod now (${e.code}): ${e.message}; retrying`,
        });
        throw err;
      }
      this.waiting.delete(key);
      await ctx.events.record(pod, {
        type: 'Warning',
        reason: REASON_CANNOT_OFFLOAD,
        message: `Spillway cannot offload this pod: ${err.message}`,
      });
      return;
    }
    const reservation = res.reservation;
    if (!reservation) {
      const attempts = (this.waiting.get(key) ?? 0) + 1;
      this.waiting.set(key, attempts);
      const delay = placeRetryMs(attempts, ctx.config.placeRetryMax);
      await ctx.events.record(pod, {
        type: 'Warning',
        reason: REASON_NOT_OFFLOADED,
        message: `no donor can run this pod now (${res.reason_code || 'NO_FIT'}): ${res.reason || 'no reason given'}; retrying`,
      });
      this.log.debug(
        { pod: key, code: res.reason_code, reason: res.reason, retryInMs: delay },
        'not placed',
      );
      this.queue.addAfter(key, delay);
      return;
    }
    await this.bindReserved(key, pod, reservation);
  }

  /**
   * Binds a pod the broker reserved GPUs for to its donor's virtual node; the reservation is
   * released when the pod cannot be bound (removed, bound by the scheduler first).
   */
  async bindReserved(key: string, pod: V1Pod, reservation: Reservation__Output): Promise<void> {
    const { ctx } = this;
    const { namespace, name } = splitKey(key);
    const nodeName = virtualNodeName(reservation.donor_cluster);
    const node = ctx.nodes.informer.get(nodeName);
    const release = async (reason: string): Promise<void> => {
      await ctx.broker
        .release({ reservation_id: reservation.id, reason })
        .catch((err: unknown) =>
          this.log.warn(
            { pod: key, err, reservation: reservation.id },
            'could not release reservation',
          ),
        );
    };
    if (!node || !isVirtualNode(node) || node.metadata?.deletionTimestamp) {
      await release(`virtual node ${nodeName} is not registered yet`);
      this.queue.addAfter(key, NODE_NOT_REGISTERED_RETRY_MS);
      return;
    }
    // The scheduler may have won since the cache was read: look again before binding. A pod
    // already on this very node is ours (the reservation came back because Place is
    // idempotent per pod): its reservation must stay.
    const latest = ctx.pods.informer.get(name, namespace);
    if (!latest || latest.metadata?.uid !== pod.metadata?.uid) {
      await release('the pod was removed before it could be offloaded');
      return;
    }
    if (latest.spec?.nodeName) {
      if (latest.spec.nodeName !== nodeName) await release('the scheduler bound the pod first');
      return;
    }
    try {
      await ctx.core.createNamespacedPodBinding({
        name,
        namespace,
        body: bindingFor(pod, nodeName, reservation),
      });
    } catch (err) {
      const status = apiStatus(err);
      if (status !== 409 && status !== 404) {
        await release(`binding failed: ${apiMessage(err)}`);
        throw err;
      }
      // Unreadable counts as "not bound by us": the reservation goes, and the pod's next
      // update brings it back here.
      const fresh = await ctx.core.readNamespacedPod({ name, namespace }).catch((e: unknown) => {
        this.log.warn(
          { pod: key, err: apiMessage(e) },
          'could not read the pod after a failed binding',
        );
        return undefined;
      });
      if (fresh?.metadata?.uid === pod.metadata?.uid && fresh?.spec?.nodeName === nodeName) {
        this.bound.set(pod.metadata!.uid!, Date.now());
        return;
      }
      await release(`binding failed: ${apiMessage(err)}`);
      this.log.info({ pod: key, err: apiMessage(err) }, 'pod was bound elsewhere or removed first');
      this.waiting.delete(key);
      return;
    }
    this.bound.set(pod.metadata!.uid!, Date.now());
    this.waiting.delete(key);
    this.log.info(
      {
        pod: key,
        node: nodeName,
        donorNode: reservation.node,
        reservation: reservation.id,
        gpus: `${reservation.gpus} ${reservation.resource_name}`,
      },
      'bound pod to virtual node',
    );
  }
}
