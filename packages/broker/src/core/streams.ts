import { ErrorCode, SpillwayError } from '@spillway/common';
import type { ClusterInventory, Component, ConnectionRecord, NodeInventory } from '../model.js';
import type { PodStatusReport } from './api.js';
import type { CoreDeps } from './deps.js';
import type { Lending } from './lending.js';
import { activeCluster } from './lookup.js';
import type { Readiness } from './readiness.js';
import { validateCapacityUpdate, validatePodStatusReport } from './validate.js';

const TERMINAL_PHASES = new Set(['Succeeded', 'Failed']);

export type CapacityReport = {
  full: boolean;
  nodes: NodeInventory[];
  removedNodes: string[];
  sequence: number;
};

/** What clusters' streams tell the broker: connects, heartbeats, capacity, pod status. */
export class Streams {
  constructor(
    private readonly deps: CoreDeps,
    private readonly readiness: Readiness,
    private readonly lending: Lending,
  ) {}

  async connected(clusterId: string, component: Component): Promise<void> {
    const { store, brokerId } = this.deps;
    await activeCluster(store, clusterId, 'clusterId');
    const at = this.deps.now().toISOString();
    const conn: ConnectionRecord = {
      clusterId,
      component,
      brokerId,
      connectedAt: at,
      lastSeenAt: at,
    };
    await store.putConnection(conn);
    // A new agent stream wants its state whether or not it changed.
    if (component === 'agent')
      await this.readiness.refresh([clusterId], { always: true, firstSight: true });
  }

  async heartbeat(clusterId: string, component: Component): Promise<void> {
    await this.deps.store.touchConnection(
      clusterId,
      component,
      this.deps.brokerId,
      this.deps.now(),
    );
    // A silent agent that speaks again is Ready at once, not at the next reaper tick.
    if (component === 'agent' && !this.readiness.wasReady(clusterId)) {
      await this.readiness.refresh([clusterId], { firstSight: true });
    }
  }

  async disconnected(clusterId: string, component: Component): Promise<void> {
    await this.deps.store.deleteConnection(clusterId, component, this.deps.brokerId);
    if (component === 'agent') await this.readiness.refresh([clusterId], { firstSight: true });
  }

  async applyCapacity(clusterId: string, update: CapacityReport): Promise<void> {
    const { store, view, log } = this.deps;
    validateCapacityUpdate(update);
    await activeCluster(store, clusterId, 'clusterId');
    const now = this.deps.now();
    const bound = await store.applyCapacity(clusterId, update, now);
    // The store noted the report on the view as part of the write.
    const inventory = view.inventory(clusterId);
    if (update.full && inventory) await this.endVanished(clusterId, inventory, now);
    for (const r of bound) {
      log.info(
        {
          reservation: r.id,
          donor: r.donor,
          node: r.node,
          pod: `${r.pod.namespace}/${r.pod.name}`,
        },
        'reservation bound',
      );
    }
    this.lending.schedule(clusterId);
  }

  /**
   * A full report is the donor's whole truth: a bound pod missing from the node it was
   * bound on is gone, even if the report of its end was lost (the agent's stream was down
   * when it ended). Its reservation ends, so its GPUs are not held forever. Pods on nodes
   * the report leaves out are left alone: the node may only have stopped being lent.
   */
  private async endVanished(donor: string, inventory: ClusterInventory, now: Date): Promise<void> {
    const { store, log } = this.deps;
    const onNode = new Map(inventory.nodes.map((n) => [n.name, new Set(n.offloadedPodUids)]));
    for (const r of await store.listReservations({ donor, states: ['bound'] })) {
      const uids = onNode.get(r.node);
      if (!uids || uids.has(r.pod.uid)) continue;
      const ended = await store.endByPod(
        r.pod.uid,
        `remote pod no longer on ${donor}/${r.node} (full report)`,
        now,
      );
      if (!ended) continue;
      log.info(
        { reservation: ended.id, donor, node: r.node, pod: `${r.pod.namespace}/${r.pod.name}` },
        "reservation ended: its pod is missing from the donor's full report",
      );
      this.lending.schedule(donor);
    }
  }

  getInventory(clusterId: string): Promise<ClusterInventory | undefined> {
    return this.deps.store.getInventory(clusterId);
  }

  async podStatus(donor: string, report: PodStatusReport): Promise<void> {
    const { store, log } = this.deps;
    validatePodStatusReport(report);
    const r = await store.findReservationByPod(report.pod.uid);
    if (!r) {
      // Status of a pod whose reservation already ended: nothing left to update.
      log.debug({ donor, podUid: report.pod.uid }, 'pod status for no live reservation');
      return;
    }
    if (
      r.donor !== donor ||
      (report.pod.originCluster !== '' && report.pod.originCluster !== r.origin)
    ) {
      throw new SpillwayError(
        ErrorCode.PERMISSION_DENIED,
        `pod.uid: pod ${report.pod.uid} is placed for ${r.origin} on ${r.donor}, not reported by ${donor} for ${report.pod.originCluster}`,
        { field: 'pod.uid' },
      );
    }
    await store.updateRemoteStatus(report.pod.uid, {
      remotePhase: report.phase,
      remoteNamespace: report.remoteNamespace,
      remoteName: report.remoteName,
    });
    if (report.deleted || TERMINAL_PHASES.has(report.phase)) {
      const reason = report.deleted ? 'remote pod deleted' : `remote pod ${report.phase}`;
      const ended = await store.endByPod(report.pod.uid, reason, this.deps.now());
      if (ended) log.info({ reservation: ended.id, donor, reason }, 'reservation ended');
      this.lending.schedule(donor);
    }
  }
}
