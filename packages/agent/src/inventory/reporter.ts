import { CoreV1Api, type KubeConfig, type V1Node, type V1Pod } from '@kubernetes/client-node';
import type { CapacityReport, NodeCapacity } from '@spillway/api';
import {
  runInformer,
  stripManagedFields,
  type Logger,
  type ManagedInformer,
} from '@spillway/common';
import {
  capacityKey,
  computeNode,
  nodeHeldBy,
  podsHoldingResources,
  type InventoryPolicy,
} from './compute.js';
import { ReclaimHold } from './reclaim-hold.js';
import { slimPodForInventory } from './slim.js';

export interface InventoryReporterOptions {
  kc: KubeConfig;
  policy: InventoryPolicy;
  logger: Logger;
  /** Delivers a report to the broker (dropped by the caller while disconnected). */
  send: (report: CapacityReport) => void;
  /** Coalesces bursts of node/pod events into one delta. */
  debounceMs?: number;
}

/**
 * Watches Nodes and Pods and keeps the broker's view of this cluster's free GPUs current:
 * a full snapshot on every (re)connect, then per-node deltas shortly after each change.
 */
export class InventoryReporter {
  private nodes?: ManagedInformer<V1Node>;
  private pods?: ManagedInformer<V1Pod>;
  /** node name -> pod keys bound to it. */
  private readonly podsByNode = new Map<string, Map<string, V1Pod>>();
  private readonly podNode = new Map<string, string>();
  private readonly dirty = new Set<string>();
  private lastSent = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private sequence = 0;
  private readonly debounceMs: number;
  private policy: InventoryPolicy;
  private readonly hold: ReclaimHold;
  private readonly holdTimers = new Set<NodeJS.Timeout>();

  constructor(private readonly opts: InventoryReporterOptions) {
    this.debounceMs = opts.debounceMs ?? 100;
    this.policy = opts.policy;
    this.hold = new ReclaimHold(opts.policy.reclaimHoldMs ?? 0);
  }

  async start(): Promise<void> {
    const core = this.opts.kc.makeApiClient(CoreV1Api);
    const log = this.opts.logger;
    this.nodes = runInformer<V1Node>(
      this.opts.kc,
      '/api/v1/nodes',
      () => core.listNode(),
      log.child({ informer: 'nodes' }),
      { transform: stripManagedFields },
    );
    this.pods = runInformer<V1Pod>(
      this.opts.kc,
      '/api/v1/pods',
      () => core.listPodForAllNamespaces(),
      log.child({ informer: 'pods' }),
      // Every pod of the cluster is watched: keep only what the inventory reads.
      { transform: slimPodForInventory },
    );
    const nodeChanged = (n: V1Node): void => this.markDirty(n.metadata?.name);
    this.nodes.informer.on('add', nodeChanged);
    this.nodes.informer.on('update', nodeChanged);
    this.nodes.informer.on('delete', nodeChanged);
    this.pods.informer.on('add', (p) => this.podChanged(p, false));
    this.pods.informer.on('update', (p) => this.podChanged(p, false));
    this.pods.informer.on('delete', (p) => this.podChanged(p, true));
    await Promise.all([this.nodes.synced, this.pods.synced]);
  }

  /** Changes what is lent (a new donor policy); the next report reflects it. */
  setPolicy(policy: InventoryPolicy): void {
    this.policy = policy;
    for (const n of this.nodes?.informer.list() ?? []) this.markDirty(n.metadata?.name);
  }

  private podKey(p: V1Pod): string {
    return `${p.metadata?.namespace ?? ''}/${p.metadata?.name ?? ''}`;
  }

  private podChanged(p: V1Pod, deleted: boolean): void {
    const key = this.podKey(p);
    const holdUntil = this.hold.observe(key, p, deleted);
    if (holdUntil !== undefined) this.afterHold(key, holdUntil);
    const prevNode = this.podNode.get(key);
    const node = deleted ? undefined : nodeHeldBy(p);
    if (prevNode && prevNode !== node) {
      this.podsByNode.get(prevNode)?.delete(key);
      this.podNode.delete(key);
      this.markDirty(prevNode);
    }
    if (node) {
      let m = this.podsByNode.get(node);
      if (!m) this.podsByNode.set(node, (m = new Map<string, V1Pod>()));
      m.set(key, p);
      this.podNode.set(key, node);
      this.markDirty(node);
    }
  }

  /** When a reclaimed guest's hold ends, its node is reported again with those GPUs free. */
  private afterHold(key: string, until: number): void {
    const node = this.hold.nodeOf(key);
    const timer = setTimeout(
      () => {
        this.holdTimers.delete(timer);
        this.markDirty(node);
      },
      Math.max(0, until - Date.now()) + 10,
    );
    timer.unref();
    this.holdTimers.add(timer);
  }

  private markDirty(node: string | undefined): void {
    if (!node) return;
    this.dirty.add(node);
    if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.debounceMs);
      this.timer.unref();
    }
  }

  /** The current capacity of every eligible node. */
  current(): Map<string, NodeCapacity> {
    const out = new Map<string, NodeCapacity>();
    for (const n of this.nodes?.informer.list() ?? []) {
      const c = this.computeOne(n);
      if (c) out.set(c.name as string, c);
    }
    return out;
  }

  private computeOne(n: V1Node): NodeCapacity | undefined {
    const name = n.metadata?.name;
    if (!name) return undefined;
    // Succeeded and Failed pods stay bound to the node but hold nothing any more.
    const pods = podsHoldingResources(this.podsByNode.get(name)?.values() ?? [], name);
    const v = computeNode(n, [...pods, ...this.hold.onNode(name)], this.policy);
    return v.eligible ? v.capacity : undefined;
  }

  /** A full snapshot; resets delta tracking. Call on every (re)connect. */
  snapshot(): CapacityReport {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.dirty.clear();
    const cur = this.current();
    this.lastSent = new Map([...cur].map(([k, v]) => [k, capacityKey(v)]));
    return {
      full: true,
      nodes: [...cur.values()],
      removed_nodes: [],
      sequence: String(++this.sequence),
    };
  }

  private flush(): void {
    this.timer = undefined;
    const names = [...this.dirty];
    this.dirty.clear();
    const upserts: NodeCapacity[] = [];
    const removed: string[] = [];
    for (const name of names) {
      const node = this.nodes?.informer.get(name);
      const cap = node ? this.computeOne(node) : undefined;
      const prev = this.lastSent.get(name);
      if (cap) {
        const key = capacityKey(cap);
        if (key !== prev) {
          upserts.push(cap);
          this.lastSent.set(name, key);
        }
      } else if (prev !== undefined) {
        removed.push(name);
        this.lastSent.delete(name);
      }
    }
    if (upserts.length === 0 && removed.length === 0) return;
    this.opts.send({
      full: false,
      nodes: upserts,
      removed_nodes: removed,
      sequence: String(++this.sequence),
    });
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    for (const t of this.holdTimers) clearTimeout(t);
    this.holdTimers.clear();
    await Promise.all([this.nodes?.stop(), this.pods?.stop()]);
  }
}
