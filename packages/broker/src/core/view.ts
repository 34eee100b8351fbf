import type { Logger } from '@spillway/common';
import type {
  ClusterInventory,
  ClusterRecord,
  Component,
  ConnectionRecord,
  PeeringRecord,
  ReservationRecord,
} from '../model.js';
import { LIVE_STATES, isLive } from '../store/internal.js';
import type { Store, ViewFeed, ViewNotice } from '../store/store.js';
import type { DonorSnapshot } from '../placement/engine.js';
import { FreeIndex, summarizeDonor, type DonorSummary, type FastDonor } from '../placement/fast.js';

/**
 * A replica's in-memory picture of what placement and capacity queries read: clusters,
 * peerings, inventories, agent connections and live reservations. The store stays the
 * truth — reserve() re-checks every promise atomically — so the view only has to be
 * close: a stale entry costs a failed reserve (after which that donor is re-read), never a
 * GPU promised twice.
 *
 * It is kept current by this replica's own writes (the ViewedStore notes each one after it
 * succeeded), by notices from other replicas over a ViewFeed (Redis pub/sub when replicas
 * share a Redis store), and by a full re-read every `resyncMs` that repairs anything a
 * lost notice left behind.
 */

export interface ViewOptions {
  store: Store;
  logger: Logger;
  feed?: ViewFeed | undefined;
  /** Full re-read from the store this often. Default 30s. */
  resyncMs?: number;
  /** Connections (agents' lastSeenAt, written by every replica) re-read this often. Default 2s. */
  connectionRefreshMs?: number;
  /** Which connection records stand for a stream a live broker holds. Default: all. */
  accepts?: (c: ConnectionRecord) => boolean;
  /**
   * Clusters or peerings that another replica changed (its notice, or a full re-read that
   * found them otherwise): their streams here must hear of it, whoever made the change.
   */
  onRemoteChange?: (change: RemoteChange) => void;
}

export type RemoteChange =
  { k: 'cluster'; id: string } | { k: 'peering'; origin: string; donor: string };

/** Reload failures are logged at most this often (they repeat while the store is down). */
const RELOAD_WARN_INTERVAL_MS = 10_000;

interface DonorEntry {
  inventory?: ClusterInventory | undefined;
  live: Map<string, ReservationRecord>;
  /** Promises being made by this replica's placements right now. */
  holds: Map<string, ReservationRecord>;
  /** Set while its reservations are re-read: ids noted meanwhile, whose current state wins. */
  touched?: Set<string> | undefined;
  /** Bumped on every change; caches below are valid for one version. */
  version: number;
  reservations?: { version: number; list: ReservationRecord[] };
  summary?: { version: number; value: DonorSummary };
}

const peeringKey = (origin: string, donor: string): string => `${origin}\u0000${donor}`;
const connKey = (clusterId: string, component: Component): string =>
  `${clusterId}\u0000${component}`;

/** Reservation ids that finished recently: a late "open" notice must not revive them. */
const TOMBSTONE_LIMIT = 100_000;

export class StoreView {
  private readonly store: Store;
  private readonly log: Logger;
  private readonly feed: ViewFeed | undefined;
  private readonly resyncMs: number;
  private readonly connectionRefreshMs: number;
  private readonly accepts: (c: ConnectionRecord) => boolean;
  private readonly onRemoteChange: (change: RemoteChange) => void;
  private reloadWarnedAt = Number.NEGATIVE_INFINITY;
  private reloadFailures = 0;

  private clusters = new Map<string, ClusterRecord>();
  private peerings = new Map<string, PeeringRecord>();
  private byOrigin = new Map<string, Map<string, PeeringRecord>>();
  private byDonor = new Map<string, Map<string, PeeringRecord>>();
  private conns = new Map<string, ConnectionRecord>();
  private donors = new Map<string, DonorEntry>();
  private tombstones = new Set<string>();

  private loaded = false;
  private loading: Promise<void> | undefined;
  /** Notices seen while a load is in flight, replayed over its result. */
  private replay: ViewNotice[] | undefined;
  private loadedAt = Number.NEGATIVE_INFINITY;
  private connsAt = Number.NEGATIVE_INFINITY;
  private connsLoading: Promise<void> | undefined;
  private readonly donorLoads = new Map<string, Promise<void>>();
  /** Donors whose report changed (another replica applied it): re-read the report. */
  private readonly dirtyDonors = new Set<string>();
  /** Donors a reserve() found otherwise than the view: re-read report and reservations. */
  private readonly staleDonors = new Set<string>();
  private index = new FreeIndex();
  /** Donors changed since the index was last brought up to date. */
  private readonly changedIds = new Set<string>();

  constructor(opts: ViewOptions) {
    this.store = opts.store;
    this.log = opts.logger;
    this.feed = opts.feed;
    this.resyncMs = opts.resyncMs ?? 30_000;
    this.connectionRefreshMs = opts.connectionRefreshMs ?? 2000;
    this.accepts = opts.accepts ?? (() => true);
    this.onRemoteChange = opts.onRemoteChange ?? (() => undefined);
  }

  /** Subscribes to the feed (if any). Loading happens on first use. */
  async start(): Promise<void> {
    await this.feed?.subscribe((n) => this.apply(n, false));
  }

  async stop(): Promise<void> {
    await this.feed?.close();
  }

  /**
   * Loads the view once (and again when a full re-read is due, in the background), and
   * re-reads donors marked dirty. Throws what the store throws while never loaded.
   */
  async ready(): Promise<void> {
    if (!this.loaded) {
      await this.load();
    } else if (performance.now() - this.loadedAt >= this.resyncMs) {
      void this.load().catch((err: unknown) => {
        this.log.warn({ err }, 'view re-read failed; keeping the current one');
      });
    }
    if (this.dirtyDonors.size > 0 || this.staleDonors.size > 0) {
      const reports = [...this.dirtyDonors].filter((id) => !this.staleDonors.has(id));
      const full = [...this.staleDonors];
      this.dirtyDonors.clear();
      this.staleDonors.clear();
      await Promise.all([
        ...reports.map((id) =>
          this.reloadDonor(id, false).catch((err: unknown) => {
            this.dirtyDonors.add(id);
            this.reloadFailed(err, id);
          }),
        ),
        ...full.map((id) =>
          this.reloadDonor(id, true).catch((err: unknown) => {
            this.staleDonors.add(id);
            this.reloadFailed(err, id);
          }),
        ),
      ]);
    }
  }

  /** A donor re-read failed and is queued again; warns, at most every few seconds. */
  private reloadFailed(err: unknown, donor: string): void {
    this.reloadFailures++;
    const now = performance.now();
    if (now - this.reloadWarnedAt < RELOAD_WARN_INTERVAL_MS) return;
    this.log.warn(
      { err, donor, failures: this.reloadFailures },
      'could not re-read a donor for the view; trying again on the next placement',
    );
    this.reloadWarnedAt = now;
    this.reloadFailures = 0;
  }

  /** A full re-read; concurrent callers share one. */
  load(): Promise<void> {
    this.loading ??= (async () => {
      this.replay = [];
      try {
        const [clusters, peerings, inventories, conns, live] = await Promise.all([
          this.store.listClusters(),
          this.store.listPeerings(),
          this.store.listInventories(),
          this.store.listConnections(),
          this.store.listReservations({ states: LIVE_STATES }),
        ]);
        const queued = this.replay;
        this.replay = undefined;
        const before = this.loaded
          ? { clusters: this.clusters, peerings: this.peerings }
          : undefined;
        this.clusters = new Map(clusters.map((c) => [c.id, c]));
        this.peerings = new Map();
        this.byOrigin = new Map();
        this.byDonor = new Map();
        for (const p of peerings) this.setPeering(p.origin, p.donor, p);
        this.conns = this.connectionMap(conns);
        const previous = this.donors;
        this.donors = new Map();
        this.tombstones = new Set();
        // Promises in flight survive a re-read; they end when their reserve() answers.
        for (const [id, e] of previous) if (e.holds.size > 0) this.entry(id).holds = e.holds;
        for (const inv of inventories) this.entry(inv.clusterId).inventory = inv;
        for (const r of live) this.putReservation(r);
        for (const n of queued) this.apply(n, false);
        this.index = new FreeIndex();
        this.changedIds.clear();
        for (const id of this.clusters.keys()) this.changedIds.add(id);
        this.loaded = true;
        this.loadedAt = performance.now();
        this.connsAt = this.loadedAt;
        if (before) this.announceDifferences(before.clusters, before.peerings);
      } finally {
        this.replay = undefined;
        this.loading = undefined;
      }
    })();
    return this.loading;
  }

  /** Re-reads connections when due (lastSeenAt moves on every heartbeat, on any replica). */
  async refreshConnections(): Promise<void> {
    if (performance.now() - this.connsAt < this.connectionRefreshMs) return;
    this.connsLoading ??= (async () => {
      try {
        const started = performance.now();
        this.conns = this.connectionMap(await this.store.listConnections());
        this.connsAt = started;
      } finally {
        this.connsLoading = undefined;
      }
    })();
    await this.connsLoading;
  }

  private connectionMap(conns: readonly ConnectionRecord[]): Map<string, ConnectionRecord> {
    return new Map(
      conns.filter((c) => this.accepts(c)).map((c) => [connKey(c.clusterId, c.component), c]),
    );
  }

  /** A full re-read found clusters or peerings otherwise than the view had them. */
  private announceDifferences(
    clusters: Map<string, ClusterRecord>,
    peerings: Map<string, PeeringRecord>,
  ): void {
    const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
    for (const id of new Set([...clusters.keys(), ...this.clusters.keys()])) {
      if (!same(clusters.get(id), this.clusters.get(id))) this.onRemoteChange({ k: 'cluster', id });
    }
    for (const key of new Set([...peerings.keys(), ...this.peerings.keys()])) {
      const p = peerings.get(key) ?? this.peerings.get(key)!;
      if (!same(peerings.get(key), this.peerings.get(key)))
        this.onRemoteChange({ k: 'peering', origin: p.origin, donor: p.donor });
    }
  }

  // ------------------------------------------------------------------------------------
  // Reads

  cluster(id: string): ClusterRecord | undefined {
    return this.clusters.get(id);
  }

  allClusters(): IterableIterator<ClusterRecord> {
    return this.clusters.values();
  }

  peering(origin: string, donor: string): PeeringRecord | undefined {
    return this.peerings.get(peeringKey(origin, donor));
  }

  peeringsOf(filter: { origin?: string; donor?: string }): PeeringRecord[] {
    if (filter.origin !== undefined) {
      const all = [...(this.byOrigin.get(filter.origin)?.values() ?? [])];
      return filter.donor === undefined ? all : all.filter((p) => p.donor === filter.donor);
    }
    if (filter.donor !== undefined) return [...(this.byDonor.get(filter.donor)?.values() ?? [])];
    return [...this.peerings.values()];
  }

  connection(clusterId: string, component: Component): ConnectionRecord | undefined {
    return this.conns.get(connKey(clusterId, component));
  }

  inventory(id: string): ClusterInventory | undefined {
    return this.donors.get(id)?.inventory;
  }

  /** Live reservations on the donor (a cached array: do not mutate). */
  reservationsOn(donor: string): ReservationRecord[] {
    const e = this.donors.get(donor);
    if (!e) return [];
    if (e.reservations?.version !== e.version) {
      const list = [...e.live.values()];
      for (const h of e.holds.values()) if (!e.live.has(h.id)) list.push(h);
      e.reservations = { version: e.version, list };
    }
    return e.reservations.list;
  }

  /** The donor as the placement engine sees it, for one origin's peering. */
  donorSnapshot(donor: string, origin?: string): DonorSnapshot | undefined {
    const cluster = this.clusters.get(donor);
    if (!cluster) return undefined;
    return {
      cluster,
      peering: origin === undefined ? undefined : this.peering(origin, donor),
      agent: this.connection(donor, 'agent'),
      inventory: this.inventory(donor),
      reservations: this.reservationsOn(donor),
    };
  }

  /** Per-node free GPUs and usage of the donor, recomputed only after it changed. */
  summary(donor: string): DonorSummary | undefined {
    const e = this.donors.get(donor);
    const cluster = this.clusters.get(donor);
    if (!e || !cluster) return undefined;
    if (e.summary?.version !== e.version) {
      e.summary = {
        version: e.version,
        value: summarizeDonor(cluster.policy, e.inventory, this.reservationsOn(donor)),
      };
    }
    return e.summary.value;
  }

  // ------------------------------------------------------------------------------------
  // Writes by this replica: apply, then tell the others.

  noteReservation(r: ReservationRecord): void {
    this.apply({ k: 'rsv', r }, true);
  }

  noteCluster(c: ClusterRecord): void {
    this.clusters.set(c.id, c);
    this.bump(c.id);
    this.feed?.publish({ k: 'cluster', id: c.id });
  }

  notePeering(origin: string, donor: string, p: PeeringRecord | undefined): void {
    this.setPeering(origin, donor, p);
    this.feed?.publish({ k: 'peering', origin, donor });
  }

  noteInventory(id: string, inv: ClusterInventory | undefined): void {
    this.entry(id).inventory = inv;
    this.bump(id);
    this.feed?.publish({ k: 'donor', id });
  }

  noteConnection(c: ConnectionRecord, publish = true): void {
    if (this.accepts(c)) this.conns.set(connKey(c.clusterId, c.component), c);
    if (publish) this.feed?.publish({ k: 'conn', c });
  }

  noteConnectionGone(clusterId: string, component: Component, brokerId: string): void {
    this.apply({ k: 'connGone', clusterId, component, brokerId }, true);
  }

  /** The cluster was deleted with its report, connections and peerings. */
  forgetCluster(id: string): void {
    this.clusters.delete(id);
    const e = this.donors.get(id);
    if (e) e.inventory = undefined;
    this.bump(id);
    for (const p of this.peeringsOf({ origin: id })) this.notePeering(p.origin, p.donor, undefined);
    for (const p of this.peeringsOf({ donor: id })) this.notePeering(p.origin, p.donor, undefined);
    for (const c of [...this.conns.values()])
      if (c.clusterId === id) this.noteConnectionGone(id, c.component, c.brokerId);
    this.feed?.publish({ k: 'cluster', id });
    this.feed?.publish({ k: 'donor', id });
  }

  /** A GPU promise in flight: concurrent placements here see it at once. */
  hold(r: ReservationRecord): void {
    const e = this.entry(r.donor);
    e.holds.set(r.id, r);
    this.changed(r.donor, e);
  }

  /** Ends a hold: its reserve() answered (a success is noted as a reservation too). */
  unhold(id: string, donor: string): void {
    const e = this.donors.get(donor);
    if (e?.holds.delete(id)) this.changed(donor, e);
  }

  /** The donor's report is re-read before the next placement (a reserve found it not as seen). */
  invalidate(donor: string): void {
    this.staleDonors.add(donor);
  }

  // ------------------------------------------------------------------------------------

  private apply(n: ViewNotice, local: boolean): void {
    if (this.replay && !local) this.replay.push(n);
    switch (n.k) {
      case 'rsv':
        this.putReservation(n.r);
        break;
      case 'donor':
        this.dirtyDonors.add(n.id);
        break;
      case 'cluster':
        void this.reloadCluster(n.id, !local);
        break;
      case 'peering':
        void this.reloadPeering(n.origin, n.donor, !local);
        break;
      case 'conn':
        if (this.accepts(n.c)) this.conns.set(connKey(n.c.clusterId, n.c.component), n.c);
        break;
      case 'connGone': {
        const key = connKey(n.clusterId, n.component);
        if (this.conns.get(key)?.brokerId === n.brokerId) this.conns.delete(key);
        break;
      }
    }
    if (local) {
      if (this.replay) this.replay.push(n);
      this.feed?.publish(n);
    }
  }

  private entry(id: string): DonorEntry {
    let e = this.donors.get(id);
    if (!e) {
      e = { live: new Map(), holds: new Map(), version: 0 };
      this.donors.set(id, e);
    }
    return e;
  }

  private changed(id: string, e: DonorEntry): void {
    e.version++;
    this.changedIds.add(id);
  }

  /** The free-GPU index, brought up to date with every donor changed since last asked. */
  freeIndex(): FreeIndex {
    if (this.changedIds.size > 0) {
      for (const id of this.changedIds) this.index.update(id, this.summary(id));
      this.changedIds.clear();
    }
    return this.index;
  }

  /** The donor as the fast path needs it, for this origin; undefined unless peered. */
  fastDonor(origin: string, donor: string): FastDonor | undefined {
    const peering = this.peering(origin, donor);
    const cluster = this.clusters.get(donor);
    const summary = this.summary(donor);
    if (!peering || !cluster || !summary) return undefined;
    return {
      cluster,
      peering,
      agent: this.connection(donor, 'agent'),
      inventory: this.inventory(donor),
      summary,
      snapshot: () => this.donorSnapshot(donor, origin)!,
    };
  }

  private bump(id: string): void {
    const e = this.donors.get(id);
    if (e) this.changed(id, e);
    else this.changedIds.add(id);
  }

  private putReservation(r: ReservationRecord): void {
    const e = this.entry(r.donor);
    e.touched?.add(r.id);
    if (isLive(r.state)) {
      if (this.tombstones.has(r.id)) return;
      e.live.set(r.id, r);
    } else {
      e.live.delete(r.id);
      if (this.tombstones.size >= TOMBSTONE_LIMIT) this.tombstones.clear();
      this.tombstones.add(r.id);
    }
    this.changed(r.donor, e);
  }

  private setPeering(origin: string, donor: string, p: PeeringRecord | undefined): void {
    const key = peeringKey(origin, donor);
    if (p) {
      this.peerings.set(key, p);
      let o = this.byOrigin.get(origin);
      if (!o) this.byOrigin.set(origin, (o = new Map<string, PeeringRecord>()));
      o.set(donor, p);
      let d = this.byDonor.get(donor);
      if (!d) this.byDonor.set(donor, (d = new Map<string, PeeringRecord>()));
      d.set(origin, p);
    } else {
      this.peerings.delete(key);
      this.byOrigin.get(origin)?.delete(donor);
      this.byDonor.get(donor)?.delete(origin);
    }
  }

  private async reloadCluster(id: string, announce: boolean): Promise<void> {
    try {
      const c = await this.store.getCluster(id);
      if (c) this.clusters.set(id, c);
      else this.clusters.delete(id);
      this.bump(id);
      if (announce) this.onRemoteChange({ k: 'cluster', id });
    } catch (err) {
      this.log.debug(
        { err, clusterId: id },
        'could not re-read a cluster; next re-read repairs it',
      );
    }
  }

  private async reloadPeering(origin: string, donor: string, announce: boolean): Promise<void> {
    try {
      this.setPeering(origin, donor, await this.store.getPeering(origin, donor));
      if (announce) this.onRemoteChange({ k: 'peering', origin, donor });
    } catch (err) {
      this.log.debug(
        { err, origin, donor },
        'could not re-read a peering; next re-read repairs it',
      );
    }
  }

  /**
   * Re-reads one donor's record and report, and with `reservations` its live reservations
   * (after a reserve() found the donor otherwise than the view did). Reservations noted
   * while reading are newer than what was read and are kept.
   */
  private reloadDonor(id: string, reservations: boolean): Promise<void> {
    const key = `${reservations ? 'r' : 'i'}\u0000${id}`;
    let p = this.donorLoads.get(key);
    if (p) return p;
    p = (async () => {
      const touched = new Set<string>();
      if (reservations) this.entry(id).touched = touched;
      try {
        const [cluster, inventory, live] = await Promise.all([
          this.store.getCluster(id),
          this.store.getInventory(id),
          reservations
            ? this.store.listReservations({ donor: id, states: LIVE_STATES })
            : undefined,
        ]);
        const e = this.entry(id);
        if (cluster) this.clusters.set(id, cluster);
        else this.clusters.delete(id);
        e.inventory = inventory;
        if (live) {
          e.touched = undefined;
          const kept = new Map<string, ReservationRecord>();
          for (const rid of touched) {
            const r = e.live.get(rid);
            if (r) kept.set(rid, r);
          }
          e.live = new Map();
          for (const r of live) if (!touched.has(r.id)) this.putReservation(r);
          for (const r of kept.values()) this.putReservation(r);
        }
        this.changed(id, e);
      } finally {
        const e = this.donors.get(id);
        if (e?.touched === touched) e.touched = undefined;
      }
    })().finally(() => this.donorLoads.delete(key));
    this.donorLoads.set(key, p);
    return p;
  }
}
