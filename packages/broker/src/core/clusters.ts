import type {
  ClusterInventory,
  ClusterRecord,
  ConnectionRecord,
  NodeInventory,
  ReservationRecord,
} from '../model.js';
import { LIVE_STATES } from '../store/internal.js';
import { effectiveFree, nodeLendable } from '../placement/engine.js';
import type { ClusterDetail, ClusterPatch, ClusterView } from './api.js';
import type { CoreDeps } from './deps.js';
import type { Identity } from './identity.js';
import type { Lending } from './lending.js';
import { activeCluster, knownCluster, peersOf, withPeers } from './lookup.js';
import type { Readiness } from './readiness.js';
import { validateClusterPatch } from './validate.js';

/** Listing, reading, changing and removing clusters. */
export class Clusters {
  constructor(
    private readonly deps: CoreDeps,
    private readonly readiness: Readiness,
    private readonly identity: Identity,
    private readonly lending: Lending,
  ) {}

  /** Connections a live broker holds (a dead process's records are left out). */
  private async connections(): Promise<ConnectionRecord[]> {
    return (await this.deps.store.listConnections()).filter((c) => this.deps.held(c));
  }

  private viewOf(
    cluster: ClusterRecord,
    conns: readonly ConnectionRecord[],
    inventory: ClusterInventory | undefined,
    live: readonly ReservationRecord[],
  ): ClusterView {
    const mine = conns.filter((c) => c.clusterId === cluster.id);
    const connections: ClusterView['connections'] = {};
    let lastSeenAt: string | undefined;
    for (const c of mine) {
      connections[c.component] = {
        brokerId: c.brokerId,
        connectedAt: c.connectedAt,
        lastSeenAt: c.lastSeenAt,
      };
      if (lastSeenAt === undefined || c.lastSeenAt > lastSeenAt) lastSeenAt = c.lastSeenAt;
    }
    const gpus: ClusterView['gpus'] = {};
    let nodeCount = 0;
    const onDonor = live.filter((r) => r.donor === cluster.id);
    for (const node of inventory?.nodes ?? []) {
      nodeCount++;
      if (nodeLendable(node, cluster.policy) !== undefined) continue;
      for (const [resource, amount] of Object.entries(node.gpus)) {
        const sum = (gpus[resource] ??= { allocatable: 0, free: 0 });
        sum.allocatable += amount.allocatable;
        sum.free += effectiveFree(node, resource, onDonor);
      }
    }
    const agent = mine.find((c) => c.component === 'agent');
    return {
      id: cluster.id,
      role: cluster.role,
      state: this.readiness.stateOf(cluster, agent, inventory !== undefined),
      createdAt: cluster.createdAt,
      ...(lastSeenAt === undefined ? {} : { lastSeenAt }),
      connections,
      policy: cluster.policy,
      ...(cluster.certNotAfter === undefined ? {} : { certNotAfter: cluster.certNotAfter }),
      gpus,
      nodeCount,
    };
  }

  async list(): Promise<ClusterView[]> {
    const { store } = this.deps;
    const [clusters, conns, inventories, live] = await Promise.all([
      store.listClusters(),
      this.connections(),
      store.listInventories(),
      store.listReservations({ states: ['open'] }),
    ]);
    const inv = new Map(inventories.map((i) => [i.clusterId, i]));
    return clusters
      .map((c) => this.viewOf(c, conns, inv.get(c.id), live))
      .sort((a, b) => a.id.localeCompare(b.id, 'en'));
  }

  async get(id: string): Promise<ClusterDetail> {
    const { store } = this.deps;
    const cluster = await knownCluster(store, id, 'id');
    const [conns, inventory, live, asOrigin, asDonor] = await Promise.all([
      this.connections(),
      store.getInventory(id),
      store.listReservations({ donor: id, states: ['open'] }),
      store.listPeerings({ origin: id }),
      store.listPeerings({ donor: id }),
    ]);
    const nodes = (inventory?.nodes ?? []).map(
      (n): NodeInventory & { eligible: boolean; reason?: string } => {
        const reason = nodeLendable(n, cluster.policy);
        return reason === undefined ? { ...n, eligible: true } : { ...n, eligible: false, reason };
      },
    );
    return {
      ...this.viewOf(cluster, conns, inventory, live),
      nodes,
      peerings: [...asOrigin, ...asDonor],
    };
  }

  record(id: string): Promise<ClusterRecord | undefined> {
    return this.deps.store.getCluster(id);
  }

  async patch(id: string, patch: ClusterPatch): Promise<ClusterView> {
    const { store, log, view, bus } = this.deps;
    const valid = validateClusterPatch(patch);
    const cluster = await activeCluster(store, id, 'id');
    const policy = { ...cluster.policy, ...valid.policy };
    if (valid.cordoned !== undefined) policy.cordoned = valid.cordoned;
    const updated: ClusterRecord = { ...cluster, policy };
    await store.putCluster(updated);
    log.info({ clusterId: id, policy }, 'cluster policy changed');
    bus.peeringsChanged(await withPeers(view, id));
    const [conns, inventory, live] = await Promise.all([
      this.connections(),
      store.getInventory(id),
      store.listReservations({ donor: id, states: ['open'] }),
    ]);
    return this.viewOf(updated, conns, inventory, live);
  }

  async remove(id: string): Promise<void> {
    const { store, log, view, bus } = this.deps;
    const cluster = await knownCluster(store, id, 'id');
    const now = this.deps.now();
    const at = now.toISOString();
    const serials = [
      ...(cluster.supersededSerials ?? []),
      ...(cluster.certSerial ? [cluster.certSerial] : []),
    ];
    for (const serial of serials) {
      await this.identity.revoke({
        serial,
        revokedAt: at,
        reason: 'cluster removed',
        subject: `cluster:${id}`,
      });
    }
    const peers = await peersOf(view, id);
    for (const p of [
      ...(await store.listPeerings({ origin: id })),
      ...(await store.listPeerings({ donor: id })),
    ]) {
      await store.deletePeering(p.origin, p.donor);
    }
    const live = [
      ...(await store.listReservations({ origin: id, states: [...LIVE_STATES] })),
      ...(await store.listReservations({ donor: id, states: [...LIVE_STATES] })),
    ];
    for (const r of live) await store.release(r.id, `cluster ${id} removed`, now);
    await store.clearInventory(id);
    for (const c of await store.listConnections()) {
      if (c.clusterId === id) await store.deleteConnection(id, c.component, c.brokerId);
    }
    // The record stays, marked revoked, so the cluster shows as Revoked rather than vanishing.
    const { supersededSerials: _revoked, ...kept } = cluster;
    await store.putCluster({ ...kept, revokedAt: at });
    this.readiness.set(id, 'Revoked');
    log.warn({ clusterId: id, serial: cluster.certSerial }, 'cluster removed; certificate revoked');
    bus.emit('clusterRevoked', id);
    bus.peeringsChanged(peers);
    for (const d of new Set(live.map((r) => r.donor))) if (d !== id) this.lending.schedule(d);
  }
}
