import type {
  ApiTokenRecord,
  ConnectionRecord as ConnRecord,
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
import type { RevokedEntry } from '@spillway/common';

/**
 * Everything the broker keeps. Two implementations pass one contract suite
 * (contract.ts): SQLite (node:sqlite, one file, the default) and Redis (ioredis,
 * shared by several broker replicas). Methods that must be atomic say so.
 *
 * Errors: a missing record in an update throws SpillwayError NOT_FOUND; an unreachable
 * backend throws STORE_UNAVAILABLE.
 */
export interface Store {
  readonly kind: 'sqlite' | 'redis';
  /** Throws STORE_UNAVAILABLE when the backend cannot be reached. */
  ping(): Promise<void>;
  close(): Promise<void>;

  // Join tokens: single-use.
  /** Throws ALREADY_EXISTS when a token with this id exists. */
  createJoinToken(token: JoinTokenRecord): Promise<void>;
  /**
   * Atomically marks the token used and returns it. Throws TOKEN_INVALID when it does not
   * exist, is expired, or was used already (the same message for all three).
   */
  consumeJoinToken(id: string, secretHash: string, now: Date): Promise<JoinTokenRecord>;
  listJoinTokens(): Promise<JoinTokenRecord[]>;

  // Clusters.
  putCluster(cluster: ClusterRecord): Promise<void>;
  getCluster(id: string): Promise<ClusterRecord | undefined>;
  listClusters(): Promise<ClusterRecord[]>;
  /**
   * Removes the cluster with its inventory, connections and peerings (as origin or donor).
   * Its reservations stay as history. Idempotent.
   */
  deleteCluster(id: string): Promise<void>;

  // Revocation.
  revoke(entry: RevokedEntry): Promise<void>;
  isRevoked(serial: string): Promise<boolean>;
  listRevoked(): Promise<RevokedEntry[]>;

  // Peerings.
  putPeering(peering: PeeringRecord): Promise<void>;
  getPeering(origin: string, donor: string): Promise<PeeringRecord | undefined>;
  listPeerings(filter?: { origin?: string; donor?: string }): Promise<PeeringRecord[]>;
  deletePeering(origin: string, donor: string): Promise<boolean>;

  // Inventory.
  /**
   * Applies a capacity report (full snapshot or delta) and, in the same atomic step, binds
   * every open reservation of this donor whose pod uid now appears in a node's
   * offloadedPodUids, and binds again an expired reservation of this donor whose pod the
   * report shows and that has no live one (the pod holds its GPUs: its report came too late).
   * Returns the reservations it bound. Reports with a sequence lower than
   * the last applied one for the same stream are ignored unless `full`.
   * Throws NOT_FOUND for a cluster that is not (or no longer) stored. Inventory nodes are
   * kept sorted by name.
   */
  applyCapacity(clusterId: string, update: CapacityUpdate, now: Date): Promise<ReservationRecord[]>;
  getInventory(clusterId: string): Promise<ClusterInventory | undefined>;
  listInventories(): Promise<ClusterInventory[]>;
  clearInventory(clusterId: string): Promise<void>;

  // Connections (which replica holds which stream, and liveness).
  putConnection(conn: ConnectionRecord): Promise<void>;
  /** Updates lastSeenAt; no-op if the connection is held by another broker now. */
  touchConnection(
    clusterId: string,
    component: Component,
    brokerId: string,
    now: Date,
  ): Promise<void>;
  /** Removes it only if still held by `brokerId` (a newer stream elsewhere wins). */
  deleteConnection(clusterId: string, component: Component, brokerId: string): Promise<void>;
  listConnections(): Promise<ConnectionRecord[]>;

  // Reservations.
  /**
   * Atomically (one SQLite transaction / one Redis Lua script): checks that the node still
   * has `gpus` free of `resource` after subtracting open reservations not yet reflected in
   * its report, that the origin's use of the donor plus `gpus` stays within
   * peeringMaxGpus and donorMaxGpusPerOrigin, and the donor's total within donorMaxGpus;
   * then records the reservation as open. Under any concurrency, across replicas, a GPU is
   * never promised twice.
   */
  reserve(req: ReserveRequest, now: Date): Promise<ReserveResult>;
  /**
   * A gang's reserve(): every member's checks as reserve() makes them, each member seeing
   * the GPUs the members before it took, and the gang's total within the limits; then all
   * reservations recorded as open. One SQLite transaction / one Redis Lua script: every
   * member is reserved, or none (a refusal names the member). Members may ask for 0 GPUs.
   */
  reserveGang(req: GangReserveRequest, now: Date): Promise<GangReserveResult>;
  /** open/bound -> released. Returns the record, or undefined if unknown or finished. */
  release(id: string, reason: string, now: Date): Promise<ReservationRecord | undefined>;
  /** bound/open -> ended (the pod is gone on the donor). */
  endByPod(podUid: string, reason: string, now: Date): Promise<ReservationRecord | undefined>;
  /**
   * Moves an open reservation's expiresAt to `expiresAt` (the pod is being created: the donor
   * gets a full TTL to report it). Returns the updated record, or undefined unless open.
   */
  extend(id: string, expiresAt: Date): Promise<ReservationRecord | undefined>;
  /** open reservations past expiresAt -> expired; returns them. */
  expire(now: Date): Promise<ReservationRecord[]>;
  getReservation(id: string): Promise<ReservationRecord | undefined>;
  /** The live (open or bound) reservation of an origin pod, if any. */
  findReservationByPod(podUid: string): Promise<ReservationRecord | undefined>;
  listReservations(filter?: ReservationFilter): Promise<ReservationRecord[]>;
  /** Records the donor's view of the pod on its live reservation; NOT_FOUND if none. */
  updateRemoteStatus(
    podUid: string,
    status: { remotePhase?: string; remoteNamespace?: string; remoteName?: string },
  ): Promise<void>;
  /** GPUs (open + bound) an origin uses on a donor, by resource; and the donor's total. */
  usage(donor: string): Promise<{ total: number; byOrigin: Record<string, number> }>;
  /** Deletes reservations that finished (released/expired/ended) before `olderThan`. */
  pruneFinished?(olderThan: Date): Promise<number>;

  // Usage ledger: one record per reservation that was bound; pruning reservations keeps it.
  /**
   * Idempotent (one SQLite statement / one Redis Lua script): the first call for a
   * reservation stores the record; a later one only adds `end` to a record that has none.
   * A repeated report never changes what was counted.
   */
  recordUsage(record: UsageRecord): Promise<void>;
  /** Records whose use overlaps [from, to) (start < to, and no end or end > from), by start. */
  listUsage(from: Date, to: Date): Promise<UsageRecord[]>;

  /** A channel to the other replicas on this store; absent for a single-process store. */
  openFeed?(): ViewFeed;

  // REST API tokens.
  putApiToken(token: ApiTokenRecord): Promise<void>;
  getApiToken(id: string): Promise<ApiTokenRecord | undefined>;
  listApiTokens(): Promise<ApiTokenRecord[]>;
  deleteApiToken(id: string): Promise<boolean>;
}

/**
 * What one broker replica tells the others after a write, so their in-memory views stay
 * close to the store (see core/view.ts). Small: a record, or "re-read X".
 */
export type ViewNotice =
  | { k: 'rsv'; r: ReservationRecord }
  | { k: 'donor'; id: string }
  | { k: 'cluster'; id: string }
  | { k: 'peering'; origin: string; donor: string }
  | { k: 'conn'; c: ConnRecord }
  | { k: 'connGone'; clusterId: string; component: Component; brokerId: string };

/** Carries notices between the replicas sharing a store; a replica never hears its own. */
export interface ViewFeed {
  publish(notice: ViewNotice): void;
  subscribe(onNotice: (notice: ViewNotice) => void): Promise<void>;
  close(): Promise<void>;
}
