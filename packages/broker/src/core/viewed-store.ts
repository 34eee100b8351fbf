import type { RevokedEntry } from '@spillway/common';
import type {
  ApiTokenRecord,
  CapacityUpdate,
  ClusterInventory,
  ClusterRecord,
  Component,
  ConnectionRecord,
  JoinTokenRecord,
  PeeringRecord,
  GangReserveRequest,
  GangReserveResult,
  ReservationFilter,
  ReservationRecord,
  ReserveRequest,
  ReserveResult,
  UsageRecord,
} from '../model.js';
import type { Store, ViewFeed } from '../store/store.js';
import type { StoreView } from './view.js';

/** What a write through the ViewedStore does to the view. */
export type MethodKind =
  /** Reads, and the store's own lifecycle: nothing to note. */
  | 'read'
  /** A write the view reflects: the wrapper notes it after it succeeded. */
  | 'noted'
  /** A write of something the view does not hold (tokens, revocations, history). */
  | 'not-in-view';

/**
 * Every method of Store, classified. Adding a method to Store fails to compile until it is
 * listed here, and view-store.test.ts calls every 'noted' one and checks the view heard.
 */
export const STORE_METHODS = {
  ping: 'read',
  close: 'read',
  createJoinToken: 'not-in-view',
  consumeJoinToken: 'not-in-view',
  listJoinTokens: 'read',
  putCluster: 'noted',
  getCluster: 'read',
  listClusters: 'read',
  deleteCluster: 'noted',
  revoke: 'not-in-view',
  isRevoked: 'read',
  listRevoked: 'read',
  putPeering: 'noted',
  getPeering: 'read',
  listPeerings: 'read',
  deletePeering: 'noted',
  applyCapacity: 'noted',
  getInventory: 'read',
  listInventories: 'read',
  clearInventory: 'noted',
  putConnection: 'noted',
  touchConnection: 'noted',
  deleteConnection: 'noted',
  listConnections: 'read',
  reserve: 'noted',
  reserveGang: 'noted',
  release: 'noted',
  endByPod: 'noted',
  extend: 'noted',
  expire: 'noted',
  getReservation: 'read',
  findReservationByPod: 'read',
  listReservations: 'read',
  // The donor's view of the pod (phase, names): offload listings read it from the store.
  updateRemoteStatus: 'not-in-view',
  usage: 'read',
  // Deletes finished reservations only; the view holds live ones.
  pruneFinished: 'not-in-view',
  // The ledger: history the view does not hold.
  recordUsage: 'not-in-view',
  listUsage: 'read',
  openFeed: 'read',
  putApiToken: 'not-in-view',
  getApiToken: 'read',
  listApiTokens: 'read',
  deleteApiToken: 'not-in-view',
} as const satisfies Record<Exclude<keyof Store, 'kind'>, MethodKind>;

export type NotedWrite = {
  [K in keyof typeof STORE_METHODS]: (typeof STORE_METHODS)[K] extends 'noted' ? K : never;
}[keyof typeof STORE_METHODS];

/** The part of the view a write notes. */
export type ViewNotes = Pick<
  StoreView,
  | 'noteCluster'
  | 'forgetCluster'
  | 'notePeering'
  | 'noteInventory'
  | 'noteConnection'
  | 'noteConnectionGone'
  | 'noteReservation'
  | 'connection'
>;

/** What the ledger hears of the reservations bound or ended through the ViewedStore. */
export interface LedgerNotes {
  note(reservations: readonly ReservationRecord[]): Promise<void>;
}

/**
 * A Store whose writes keep a StoreView current: after each successful write the view is
 * noted (and, through its feed, the other replicas). The core writes only through this, so
 * no write can leave this replica's view stale.
 */
export class ViewedStore implements Store {
  readonly kind: Store['kind'];
  readonly pruneFinished?: (olderThan: Date) => Promise<number>;
  readonly openFeed?: () => ViewFeed;

  constructor(
    readonly inner: Store,
    private readonly view: ViewNotes,
    /** Hears every bind and end written here (the usage ledger). */
    private readonly ledger?: LedgerNotes,
  ) {
    this.kind = inner.kind;
    const prune = inner.pruneFinished?.bind(inner);
    if (prune) this.pruneFinished = prune;
    const feed = inner.openFeed?.bind(inner);
    if (feed) this.openFeed = feed;
  }

  ping(): Promise<void> {
    return this.inner.ping();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  // ---- join tokens, revocation, API tokens: not in the view

  createJoinToken(token: JoinTokenRecord): Promise<void> {
    return this.inner.createJoinToken(token);
  }

  consumeJoinToken(id: string, secretHash: string, now: Date): Promise<JoinTokenRecord> {
    return this.inner.consumeJoinToken(id, secretHash, now);
  }

  listJoinTokens(): Promise<JoinTokenRecord[]> {
    return this.inner.listJoinTokens();
  }

  revoke(entry: RevokedEntry): Promise<void> {
    return this.inner.revoke(entry);
  }

  isRevoked(serial: string): Promise<boolean> {
    return this.inner.isRevoked(serial);
  }

  listRevoked(): Promise<RevokedEntry[]> {
    return this.inner.listRevoked();
  }

  putApiToken(token: ApiTokenRecord): Promise<void> {
    return this.inner.putApiToken(token);
  }

  getApiToken(id: string): Promise<ApiTokenRecord | undefined> {
    return this.inner.getApiToken(id);
  }

  listApiTokens(): Promise<ApiTokenRecord[]> {
    return this.inner.listApiTokens();
  }

  deleteApiToken(id: string): Promise<boolean> {
    return this.inner.deleteApiToken(id);
  }

  // ---- clusters

  async putCluster(cluster: ClusterRecord): Promise<void> {
    await this.inner.putCluster(cluster);
    this.view.noteCluster(cluster);
  }

  getCluster(id: string): Promise<ClusterRecord | undefined> {
    return this.inner.getCluster(id);
  }

  listClusters(): Promise<ClusterRecord[]> {
    return this.inner.listClusters();
  }

  async deleteCluster(id: string): Promise<void> {
    await this.inner.deleteCluster(id);
    this.view.forgetCluster(id);
  }

  // ---- peerings

  async putPeering(peering: PeeringRecord): Promise<void> {
    await this.inner.putPeering(peering);
    this.view.notePeering(peering.origin, peering.donor, peering);
  }

  getPeering(origin: string, donor: string): Promise<PeeringRecord | undefined> {
    return this.inner.getPeering(origin, donor);
  }

  listPeerings(filter?: { origin?: string; donor?: string }): Promise<PeeringRecord[]> {
    return this.inner.listPeerings(filter);
  }

  async deletePeering(origin: string, donor: string): Promise<boolean> {
    const deleted = await this.inner.deletePeering(origin, donor);
    if (deleted) this.view.notePeering(origin, donor, undefined);
    return deleted;
  }

  // ---- inventory

  async applyCapacity(
    clusterId: string,
    update: CapacityUpdate,
    now: Date,
  ): Promise<ReservationRecord[]> {
    const bound = await this.inner.applyCapacity(clusterId, update, now);
    this.view.noteInventory(clusterId, await this.inner.getInventory(clusterId));
    for (const r of bound) this.view.noteReservation(r);
    await this.ledger?.note(bound);
    return bound;
  }

  getInventory(clusterId: string): Promise<ClusterInventory | undefined> {
    return this.inner.getInventory(clusterId);
  }

  listInventories(): Promise<ClusterInventory[]> {
    return this.inner.listInventories();
  }

  async clearInventory(clusterId: string): Promise<void> {
    await this.inner.clearInventory(clusterId);
    this.view.noteInventory(clusterId, undefined);
  }

  // ---- connections

  async putConnection(conn: ConnectionRecord): Promise<void> {
    await this.inner.putConnection(conn);
    this.view.noteConnection(conn);
  }

  async touchConnection(
    clusterId: string,
    component: Component,
    brokerId: string,
    now: Date,
  ): Promise<void> {
    await this.inner.touchConnection(clusterId, component, brokerId, now);
    const held = this.view.connection(clusterId, component);
    if (held?.brokerId === brokerId) {
      // Other replicas re-read connections on their own; no notice per heartbeat.
      this.view.noteConnection({ ...held, lastSeenAt: now.toISOString() }, false);
    }
  }

  async deleteConnection(clusterId: string, component: Component, brokerId: string): Promise<void> {
    await this.inner.deleteConnection(clusterId, component, brokerId);
    this.view.noteConnectionGone(clusterId, component, brokerId);
  }

  listConnections(): Promise<ConnectionRecord[]> {
    return this.inner.listConnections();
  }

  // ---- reservations

  async reserve(req: ReserveRequest, now: Date): Promise<ReserveResult> {
    const res = await this.inner.reserve(req, now);
    if (res.ok) this.view.noteReservation(res.reservation);
    return res;
  }

  async reserveGang(req: GangReserveRequest, now: Date): Promise<GangReserveResult> {
    const res = await this.inner.reserveGang(req, now);
    if (res.ok) for (const r of res.reservations) this.view.noteReservation(r);
    return res;
  }

  async release(id: string, reason: string, now: Date): Promise<ReservationRecord | undefined> {
    return this.ended(this.noted(await this.inner.release(id, reason, now)));
  }

  async endByPod(
    podUid: string,
    reason: string,
    now: Date,
  ): Promise<ReservationRecord | undefined> {
    return this.ended(this.noted(await this.inner.endByPod(podUid, reason, now)));
  }

  async extend(id: string, expiresAt: Date): Promise<ReservationRecord | undefined> {
    return this.noted(await this.inner.extend(id, expiresAt));
  }

  async expire(now: Date): Promise<ReservationRecord[]> {
    const expired = await this.inner.expire(now);
    for (const r of expired) this.view.noteReservation(r);
    return expired;
  }

  getReservation(id: string): Promise<ReservationRecord | undefined> {
    return this.inner.getReservation(id);
  }

  findReservationByPod(podUid: string): Promise<ReservationRecord | undefined> {
    return this.inner.findReservationByPod(podUid);
  }

  listReservations(filter?: ReservationFilter): Promise<ReservationRecord[]> {
    return this.inner.listReservations(filter);
  }

  updateRemoteStatus(
    podUid: string,
    status: { remotePhase?: string; remoteNamespace?: string; remoteName?: string },
  ): Promise<void> {
    return this.inner.updateRemoteStatus(podUid, status);
  }

  usage(donor: string): Promise<{ total: number; byOrigin: Record<string, number> }> {
    return this.inner.usage(donor);
  }

  // ---- usage ledger: history, not in the view

  recordUsage(record: UsageRecord): Promise<void> {
    return this.inner.recordUsage(record);
  }

  listUsage(from: Date, to: Date): Promise<UsageRecord[]> {
    return this.inner.listUsage(from, to);
  }

  private noted(r: ReservationRecord | undefined): ReservationRecord | undefined {
    if (r) this.view.noteReservation(r);
    return r;
  }

  private async ended(r: ReservationRecord | undefined): Promise<ReservationRecord | undefined> {
    if (r) await this.ledger?.note([r]);
    return r;
  }
}
