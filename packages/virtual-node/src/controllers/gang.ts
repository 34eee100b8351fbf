import type { V1Pod } from '@kubernetes/client-node';
import type { PlaceRequest, Reservation__Output } from '@spillway/api';
import {
  ErrorCode,
  apiMessage,
  isSpillwayError,
  toSpillwayError,
  virtualNodeName,
  type Logger,
  type WorkQueue,
} from '@spillway/common';
import {
  REASON_CANNOT_OFFLOAD,
  REASON_GANG_INCOMPLETE,
  REASON_GANG_WAITING,
  REASON_NOT_OFFLOADED,
  REASON_GANG_PLACED,
} from '../events.js';
import {
  gangKeyOf,
  gangSize,
  gangVerdict,
  type GangKey,
  type GangMember,
  type GangOwnerRef,
  type MemberState,
} from '../forge/gang.js';
import { originFit } from '../forge/origin-fit.js';
import { gpuDemand, offloadCandidacy, placeRequestFor } from '../forge/placement.js';
import { offloadRefusal } from '../forge/refusal.js';
import {
  donorOfNode,
  isVirtualNode,
  namespaceOptedIn,
  podKey,
  type ShimContext,
} from './context.js';
import {
  BROKER_AWAY_RETRY_MS,
  GANG_GAVE_UP_RECHECK_MS,
  GANG_OWNER_CACHE_MS,
  GANG_RECHECK_MS,
  NODE_NOT_REGISTERED_RETRY_MS,
  placeRetryMs,
} from './delays.js';

/** What the gang step borrows from the overflow binder. */
export interface GangBinderDeps {
  queue: WorkQueue<string>;
  /** The binder's binding step for one reserved pod. */
  bind: (key: string, pod: V1Pod, reservation: Reservation__Output) => Promise<void>;
  /** The binder's pods-that-found-no-room map (key → attempts). */
  waiting: Map<string, number>;
  log: Logger;
}

/**
 * The overflow binder's step for pods of a gang (forge/gang.ts says which): it waits until
 * every member is there and offloadable, asks the broker once for the whole gang
 * (PlaceGang: one donor, all or none), then binds each member as a single pod is bound.
 * Decisions are gangVerdict's; this class reads state and acts.
 */
export class GangBinder {
  private readonly owners = new Map<string, { at: number; obj?: unknown; error?: string }>();
  /** Gang key → when it started waiting for its pods. */
  private readonly since = new Map<string, number>();
  /** Gang key → its step in progress: members reconciled meanwhile wait for it. */
  private readonly inflight = new Map<string, Promise<void>>();

  constructor(
    private readonly ctx: ShimContext,
    private readonly deps: GangBinderDeps,
  ) {}

  /** True when the pod belongs to a gang and was dealt with here. */
  async reconcile(pod: V1Pod): Promise<boolean> {
    const key = gangKeyOf(pod);
    if (!key) return false;
    if ('error' in key) {
      this.deps.waiting.delete(podKey(pod));
      await this.ctx.events.record(pod, {
        type: 'Warning',
        reason: REASON_CANNOT_OFFLOAD,
        message: `Spillway will not offload this pod: ${key.error.message}; it stays Pending`,
      });
      return true;
    }
    const ns = pod.metadata?.namespace ?? 'default';
    const owner = key.owner ? await this.readOwner(ns, key.owner) : undefined;
    const size = gangSize(key, owner?.obj, owner?.error);
    if ('notGang' in size) return false;
    if ('error' in size) {
      this.deps.waiting.delete(podKey(pod));
      await this.ctx.events.record(pod, {
        type: 'Warning',
        reason: REASON_CANNOT_OFFLOAD,
        message: `Spillway will not offload this pod: ${size.error.message}; it stays Pending`,
      });
      return true;
    }
    const running = this.inflight.get(key.key);
    if (running) {
      // Another member's reconcile is placing the gang: look again once it is done.
      await running.catch(() => undefined);
      this.deps.queue.addAfter(podKey(pod), 100);
      return true;
    }
    const step = this.step(pod, key, size.size).finally(() => this.inflight.delete(key.key));
    this.inflight.set(key.key, step);
    await step;
    return true;
  }

  private async readOwner(
    namespace: string,
    ref: GangOwnerRef,
  ): Promise<{ obj?: unknown; error?: string }> {
    const id = `${namespace}/${ref.group}/${ref.plural}/${ref.name}`;
    const hit = this.owners.get(id);
    if (hit && Date.now() - hit.at < GANG_OWNER_CACHE_MS) return hit;
    let entry: { at: number; obj?: unknown; error?: string };
    if (!this.ctx.customObjects) {
      entry = { at: Date.now(), error: 'the shim has no client for it' };
    } else {
      try {
        const obj: unknown = await this.ctx.customObjects.getNamespacedCustomObject({
          group: ref.group,
          version: ref.version,
          namespace,
          plural: ref.plural,
          name: ref.name,
        });
        entry = { at: Date.now(), obj };
      } catch (err) {
        entry = { at: Date.now(), error: apiMessage(err) };
      }
    }
    this.owners.set(id, entry);
    if (this.owners.size > 4096) this.owners.delete(this.owners.keys().next().value!);
    return entry;
  }

  /** The members of `key` in its namespace, from the cache. */
  private members(namespace: string, key: GangKey): V1Pod[] {
    return this.ctx.pods.informer.list(namespace).filter((p) => {
      const k = gangKeyOf(p);
      return !!k && !('error' in k) && k.key === key.key;
    });
  }

  private stateOf(pod: V1Pod): MemberState {
    const { ctx } = this;
    const phase = pod.status?.phase;
    if (phase === 'Succeeded') return { kind: 'succeeded' };
    if (pod.metadata?.deletionTimestamp || phase === 'Failed') return { kind: 'gone' };
    const nodeName = pod.spec?.nodeName;
    if (nodeName) {
      const donor = donorOfNode(ctx, nodeName);
      if (donor) return { kind: 'on-donor', donor };
      return {
        kind: 'on-origin',
        node: nodeName,
        asksGpu: gpuDemand(pod, ctx.config.gpuResources) !== undefined,
      };
    }
    const refusal = offloadRefusal(pod);
    if (refusal) return { kind: 'refused', why: refusal };
    // A member that asks for no GPU (a Ray head, a launcher) goes whenever its gang goes.
    if (gpuDemand(pod, ctx.config.gpuResources) === undefined) return { kind: 'ready' };
    const namespace = pod.metadata?.namespace ?? 'default';
    const c = offloadCandidacy(pod, {
      gpuResources: ctx.config.gpuResources,
      namespaceOptedIn: namespaceOptedIn(ctx, namespace),
    });
    if (!c.candidate) return { kind: 'not-yet', why: c.reason };
    const waited = Date.now() - c.unschedulableSince;
    if (waited < ctx.config.gracePeriod) {
      const fit = ctx.config.skipGraceWhenNoOriginFit
        ? originFit(pod, ctx.originNodes.informer.list(), ctx.config.gpuResources)
        : { never: false as const };
      if (!fit.never) {
        return { kind: 'not-yet', why: 'grace period', retryMs: ctx.config.gracePeriod - waited };
      }
    }
    return { kind: 'ready' };
  }

  private async tellAll(
    pods: readonly V1Pod[],
    e: { type: 'Normal' | 'Warning'; reason: string; message: string },
  ): Promise<void> {
    await Promise.all(pods.map((p) => this.ctx.events.record(p, e)));
  }

  private async step(pod: V1Pod, key: GangKey, size: number): Promise<void> {
    const { ctx, deps } = this;
    const namespace = pod.metadata?.namespace ?? 'default';
    const gang = `${namespace}/${key.name}`;
    const pods = this.members(namespace, key);
    const members: GangMember[] = pods.map((p) => {
      const k = gangKeyOf(p);
      return {
        pod: p,
        state: this.stateOf(p),
        sizeLabel: k && !('error' in k) ? k.sizeLabel : undefined,
      };
    });
    const verdict = gangVerdict(gang, size, members);
    const unbound = members.filter((m) => ['ready', 'not-yet', 'refused'].includes(m.state.kind));
    switch (verdict.kind) {
      case 'done':
        this.since.delete(key.key);
        return;
      case 'keep-home':
        this.since.delete(key.key);
        for (const m of unbound) deps.waiting.delete(podKey(m.pod));
        // One Event per pod: each is told why the gang stays.
        await this.tellAll(
          unbound.map((m) => m.pod),
          {
            type: 'Warning',
            reason: REASON_CANNOT_OFFLOAD,
            message: `Spillway will not offload this pod: ${verdict.message}${verdict.label ? ` (${verdict.label})` : ''}; it stays Pending`,
          },
        );
        return;
      case 'wait': {
        const since = this.since.get(key.key) ?? Date.now();
        this.since.set(key.key, since);
        const waited = Date.now() - since;
        if (waited > ctx.config.gangTimeout) {
          await ctx.events.record(pod, {
            type: 'Warning',
            reason: REASON_GANG_INCOMPLETE,
            message: `${verdict.message}; gave up after --gang-timeout ${Math.round(ctx.config.gangTimeout / 1000)}s: the gang stays Pending here`,
          });
          deps.queue.addAfter(podKey(pod), GANG_GAVE_UP_RECHECK_MS);
          return;
        }
        await ctx.events.record(pod, {
          type: 'Normal',
          reason: REASON_GANG_WAITING,
          message: verdict.message,
        });
        deps.queue.addAfter(podKey(pod), verdict.retryMs ?? GANG_RECHECK_MS);
        return;
      }
      case 'place':
        this.since.delete(key.key);
        await this.place(pod, gang, key, verdict.members, verdict.donors);
        return;
    }
  }

  private async place(
    pod: V1Pod,
    gang: string,
    key: GangKey,
    members: V1Pod[],
    pinned: string[],
  ): Promise<void> {
    const { ctx, deps } = this;
    if (!ctx.donors.connected || !ctx.donors.hasState) {
      deps.queue.addAfter(podKey(pod), BROKER_AWAY_RETRY_MS);
      return;
    }
    let resource = '';
    for (const m of members) {
      const d = gpuDemand(m, ctx.config.gpuResources);
      if (d && !('error' in d)) {
        resource = d.resource;
        break;
      }
    }
    const requests: PlaceRequest[] = [];
    let donors: string[] | undefined = pinned.length > 0 ? pinned : undefined;
    for (const m of members) {
      const built = placeRequestFor(m, {
        originCluster: ctx.originCluster,
        gpuResources: ctx.config.gpuResources,
        donorOfNode: (n) => donorOfNode(ctx, n),
        noGpuResource: resource,
        ...(donors ? { donors } : {}),
      });
      if ('error' in built) {
        for (const x of members) deps.waiting.delete(podKey(x));
        await this.tellAll(members, {
          type: 'Warning',
          reason: REASON_CANNOT_OFFLOAD,
          message: `Spillway cannot offload gang ${gang}: its pod ${m.metadata?.name}: ${built.error}`,
        });
        return;
      }
      const own = built.request.donors ?? [];
      if (own.length > 0) donors = donors ? donors.filter((d) => own.includes(d)) : [...own];
      requests.push({ ...built.request, donors: [] });
    }
    let res;
    try {
      res = await ctx.broker.placeGang({ gang, members: requests, donors: donors ?? [] });
    } catch (err) {
      if (!isSpillwayError(err, ErrorCode.INVALID_ARGUMENT)) {
        const e = toSpillwayError(err);
        await this.tellAll(members, {
          type: 'Warning',
          reason: REASON_NOT_OFFLOADED,
          message: `the broker cannot place gang ${gang} now (${e.code}): ${e.message}; retrying`,
        });
        throw err;
      }
      for (const x of members) deps.waiting.delete(podKey(x));
      await this.tellAll(members, {
        type: 'Warning',
        reason: REASON_CANNOT_OFFLOAD,
        message: `Spillway cannot offload gang ${gang}: ${err.message}`,
      });
      return;
    }
    if (!res.placed) {
      const attempts = (deps.waiting.get(podKey(pod)) ?? 0) + 1;
      for (const x of members) deps.waiting.set(podKey(x), attempts);
      await this.tellAll(members, {
        type: 'Warning',
        reason: REASON_NOT_OFFLOADED,
        message: `no donor can run gang ${gang} (${members.length} pods) whole now (${res.reason_code || 'NO_FIT'}): ${res.reason || 'no reason given'}; retrying`,
      });
      deps.queue.addAfter(podKey(pod), placeRetryMs(attempts, ctx.config.placeRetryMax));
      return;
    }
    const donor = res.donor_cluster;
    const node = ctx.nodes.informer.get(virtualNodeName(donor));
    if (!node || !isVirtualNode(node) || node.metadata?.deletionTimestamp) {
      // Bind all or none: the reservations go back and the gang is placed again soon.
      await Promise.all(
        res.reservations.map((r) =>
          ctx.broker
            .release({
              reservation_id: r.id,
              reason: `virtual node of ${donor} is not registered yet`,
            })
            .catch((err: unknown) =>
              deps.log.warn({ err, reservation: r.id }, 'could not release'),
            ),
        ),
      );
      deps.queue.addAfter(podKey(pod), NODE_NOT_REGISTERED_RETRY_MS);
      return;
    }
    deps.log.info({ gang, donor, pods: members.length }, 'gang placed');
    await this.tellAll(members, {
      type: 'Normal',
      reason: REASON_GANG_PLACED,
      message: `placed with its gang ${gang} (${members.length} pods) on donor ${donor}`,
    });
    const byUid = new Map(res.reservations.map((r) => [r.pod?.uid ?? '', r]));
    for (const m of members) {
      const r = byUid.get(m.metadata?.uid ?? '');
      if (r) await deps.bind(podKey(m), m, r);
    }
  }
}
