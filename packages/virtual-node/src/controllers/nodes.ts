import type { V1Node } from '@kubernetes/client-node';
import {
  MERGE_PATCH,
  WorkQueue,
  apiMessage,
  isAlreadyExists,
  isNotFound,
  isTerminalPhase,
  runWorkers,
  virtualNodeName,
  type Logger,
} from '@spillway/common';
import type { DonorChange } from '../donors.js';
import {
  ANNOTATION_CORDONED_BY_DONOR,
  labelPatch,
  microTime,
  nodeLease,
  nodeStatusStale,
  specChange,
  virtualNodeLabels,
  virtualNodeObject,
  virtualNodeStatus,
} from '../forge/node.js';
import { isVirtualNode, podKey, podsOnNode, type ShimContext } from './context.js';
import {
  LEASE_RENEW_MIN_MS,
  NODE_QUEUE,
  NODE_REMOVAL_RECHECK_MS,
  NOT_READY_SLACK_MS,
} from './delays.js';

export const LEASE_NAMESPACE = 'kube-node-lease';

/**
 * One virtual Node per donor peered with this origin, kept true to what the broker says of
 * the donor: capacity, labels, cordon, Ready. Keyed by donor; every reconcile re-reads the
 * node from the cache and the donor from the registry. Also renews each node's Lease, as a
 * kubelet does, so the node lifecycle controller sees the shim alive.
 */
export class NodeController {
  readonly queue = new WorkQueue<string>(NODE_QUEUE);
  private readonly log: Logger;
  private leaseTimer: NodeJS.Timeout | undefined;
  private workers: Promise<void> | undefined;
  private readonly leaseSeconds: number;

  constructor(
    private readonly ctx: ShimContext,
    /** Called with pods to look at again when their node's donor is gone. */
    private readonly requeuePods: (keys: string[]) => void,
  ) {
    this.log = ctx.logger.child({ controller: 'virtual-nodes' });
    this.leaseSeconds = Math.max(1, Math.round(ctx.config.leaseDuration / 1000));
  }

  start(): void {
    const { ctx } = this;
    ctx.donors.on('changed', (changes: DonorChange[]) => {
      for (const c of changes) this.queue.add(c.donor);
    });
    const onNode = (n: V1Node): void => {
      if (isVirtualNode(n)) this.queue.add(n.metadata!.labels!['spillway.io/donor']!);
    };
    ctx.nodes.informer.on('add', onNode);
    ctx.nodes.informer.on('update', onNode);
    ctx.nodes.informer.on('delete', onNode);
    this.enqueueAll();
    this.workers = runWorkers(this.queue, (d) => this.reconcile(d), {
      concurrency: 2,
      logger: this.log,
    });
    const every = Math.max(LEASE_RENEW_MIN_MS, Math.floor(ctx.config.leaseDuration / 4));
    this.leaseTimer = setInterval(() => void this.renewLeases(), every);
    this.leaseTimer.unref();
  }

  /** Every donor the registry knows and every virtual node in the cluster. */
  enqueueAll(): void {
    for (const v of this.ctx.donors.list()) this.queue.add(v.donor);
    for (const n of this.ctx.nodes.informer.list()) {
      if (isVirtualNode(n)) this.queue.add(n.metadata!.labels!['spillway.io/donor']!);
    }
  }

  async stop(): Promise<void> {
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    this.queue.shutdown();
    await this.workers;
  }

  async reconcile(donor: string): Promise<void> {
    const { ctx } = this;
    // Before the broker has spoken, an absent donor means nothing: keep every node.
    if (!ctx.donors.hasState) return;
    const name = virtualNodeName(donor);
    const node = ctx.nodes.informer.get(name);
    const view = ctx.donors.get(donor);
    if (!view) {
      if (node && isVirtualNode(node)) await this.removeNode(donor, node);
      return;
    }
    const health = ctx.donors.health(donor)!;
    const now = new Date();
    if (!node) {
      const body = virtualNodeObject(view, health, ctx.nodeOptions, now);
      try {
        const created = await ctx.core.createNode({ body });
        this.log.info(
          { node: name, donor, capacity: body.status?.capacity },
          'registered virtual node',
        );
        // Status given at creation is kept, but post it again so the shape is ours exactly.
        await ctx.core.patchNodeStatus({ name, body: { status: body.status } }, MERGE_PATCH);
        await this.renewLease(name, created.metadata?.uid);
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        // Not yet in our cache; the informer's add event brings it back here.
      }
    } else {
      if (!isVirtualNode(node)) {
        this.log.error(
          { node: name },
          'a node not made by Spillway has the virtual node name; leaving it alone',
        );
        return;
      }
      await this.converge(node, donor);
    }
    if (health.notReadyAt !== undefined)
      this.queue.addAfter(
        donor,
        Math.max(0, health.notReadyAt - now.getTime()) + NOT_READY_SLACK_MS,
      );
    this.queue.addAfter(donor, ctx.config.nodeStatusInterval);
  }

  private async converge(node: V1Node, donor: string): Promise<void> {
    const { ctx } = this;
    const view = ctx.donors.get(donor)!;
    const health = ctx.donors.health(donor)!;
    const name = node.metadata!.name!;
    const labels = labelPatch(node.metadata?.labels, virtualNodeLabels(view));
    const spec = specChange(node, view);
    if (labels || spec) {
      const metadata: Record<string, unknown> = {
        // The precondition keeps us from overwriting taints someone changed meanwhile.
        resourceVersion: node.metadata?.resourceVersion,
      };
      if (labels) metadata.labels = labels;
      if (spec?.cordonAnnotation !== undefined)
        metadata.annotations = { [ANNOTATION_CORDONED_BY_DONOR]: spec.cordonAnnotation };
      const specBody: Record<string, unknown> = {};
      if (spec?.taints) specBody.taints = spec.taints;
      if (spec?.unschedulable !== undefined) specBody.unschedulable = spec.unschedulable;
      await ctx.core.patchNode(
        {
          name,
          body: { metadata, ...(Object.keys(specBody).length > 0 ? { spec: specBody } : {}) },
        },
        MERGE_PATCH,
      );
      this.log.info({ node: name, labels, spec }, 'updated virtual node');
    }
    const now = new Date();
    const desired = virtualNodeStatus(view, health, node.status?.conditions, ctx.nodeOptions, now);
    if (nodeStatusStale(node.status, desired, now, ctx.config.nodeStatusInterval)) {
      const status: Record<string, unknown> = { ...desired };
      // Resources no longer lent go away (a merge patch keeps map keys it does not name).
      const drop = (
        cur: Record<string, string> | undefined,
        want: Record<string, string>,
      ): void => {
        for (const k of Object.keys(cur ?? {}))
          if (!(k in want)) want[k] = null as unknown as string;
      };
      drop(node.status?.capacity, desired.capacity!);
      drop(node.status?.allocatable, desired.allocatable!);
      await ctx.core.patchNodeStatus({ name, body: { status } }, MERGE_PATCH);
      const before = node.status?.conditions?.find((c) => c.type === 'Ready');
      const after = desired.conditions?.find((c) => c.type === 'Ready');
      if (before?.status !== after?.status || before?.reason !== after?.reason)
        this.log.info(
          { node: name, ready: after?.status, reason: after?.reason, message: after?.message },
          'virtual node condition changed',
        );
    }
  }

  /**
   * The peering is gone: its pods are handled first (the pod controller fails or finalizes
   * them), then the Node and its Lease are removed.
   */
  private async removeNode(donor: string, node: V1Node): Promise<void> {
    const { ctx } = this;
    const name = node.metadata!.name!;
    const live = podsOnNode(ctx, name).filter(
      (p) => !isTerminalPhase(p.status?.phase) || p.metadata?.deletionTimestamp,
    );
    if (live.length > 0) {
      this.requeuePods(live.map(podKey));
      this.log.info(
        { node: name, donor, pods: live.length },
        'peering removed; handling its pods first',
      );
      this.queue.addAfter(donor, NODE_REMOVAL_RECHECK_MS);
      return;
    }
    await ctx.coordination
      .deleteNamespacedLease({ name, namespace: LEASE_NAMESPACE })
      .catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
    try {
      await ctx.core.deleteNode({
        name,
        ...(node.metadata?.uid ? { body: { preconditions: { uid: node.metadata.uid } } } : {}),
      });
      this.log.info({ node: name, donor }, 'peering removed; deleted virtual node');
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  private async renewLeases(): Promise<void> {
    const { ctx } = this;
    const jobs = ctx.donors.list().map(async (v) => {
      const name = virtualNodeName(v.donor);
      const node = ctx.nodes.informer.get(name);
      if (!node || !isVirtualNode(node)) return;
      try {
        await this.renewLease(name, node.metadata?.uid);
      } catch (err) {
        this.log.warn({ node: name, err: apiMessage(err) }, 'lease renewal failed');
      }
    });
    await Promise.all(jobs);
  }

  private async renewLease(name: string, uid: string | undefined): Promise<void> {
    const { ctx } = this;
    const now = new Date();
    try {
      await ctx.coordination.patchNamespacedLease(
        {
          name,
          namespace: LEASE_NAMESPACE,
          body: {
            spec: {
              holderIdentity: name,
              leaseDurationSeconds: this.leaseSeconds,
              renewTime: microTime(now),
            },
          },
        },
        MERGE_PATCH,
      );
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await ctx.coordination
        .createNamespacedLease({
          namespace: LEASE_NAMESPACE,
          body: nodeLease({ name, uid }, this.leaseSeconds, now),
        })
        .catch((e: unknown) => {
          if (!isAlreadyExists(e)) throw e;
        });
    }
  }
}
