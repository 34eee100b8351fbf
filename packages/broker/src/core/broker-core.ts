import { componentLogger, type CertificateAuthority, type Logger } from '@spillway/common';
import type {
  ClusterInventory,
  ClusterRecord,
  Component,
  PeeringRecord,
  PlacementPolicy,
  ReservationRecord,
} from '../model.js';
import type { Store } from '../store/store.js';
import type { EventEmitter } from 'node:events';
import type {
  ApiTokenCreated,
  ApiTokenInput,
  ApiTokenView,
  BrokerCore,
  CoreEvents,
  CapacityFilter,
  CapacitySummary,
  ClusterDetail,
  ClusterPatch,
  ClusterView,
  IssuedJoinToken,
  JoinResult,
  JoinTokenInput,
  OffloadFilter,
  PeeringInput,
  PeeringState,
  PeeringView,
  GangPlacementRequest,
  GangPlacementResult,
  PlacementRequest,
  PlacementResult,
  PodStatusReport,
  UsageQuery,
  UsageReport,
} from './api.js';
import { Capacity } from './capacity.js';
import { Clusters } from './clusters.js';
import { CoreBus, heldBy, type CoreDeps, type PlacementMetrics } from './deps.js';
import { Identity } from './identity.js';
import { Lending } from './lending.js';
import { UsageLedger } from './ledger.js';
import { parseUsageQuery } from './usage.js';
import { withPeers } from './lookup.js';
import { Peerings } from './peerings.js';
import { GangPlacement } from './gang-placement.js';
import { Placement } from './placement.js';
import { Readiness } from './readiness.js';
import { Reaper } from './reaper.js';
import { Streams, type CapacityReport } from './streams.js';
import { validatePlacementPolicy } from './validate.js';
import { ViewedStore } from './viewed-store.js';
import { StoreView, type RemoteChange } from './view.js';

export interface CoreOptions {
  store: Store;
  ca: CertificateAuthority;
  /** This replica's ID, recorded on the connections it holds. */
  brokerId: string;
  logger: Logger;
  clock?: () => Date;
  /** A cluster whose agent is silent this long is NotReady. Default 15s. */
  heartbeatTimeoutMs?: number;
  /** An open reservation not seen bound expires after this. Default 60s. */
  reservationTtlMs?: number;
  /** Validity of cluster certificates. Default 30 days. */
  clusterCertValidityMs?: number;
  /** Default join token lifetime. Default 15 minutes. */
  joinTokenTtlMs?: number;
  placementPolicy?: PlacementPolicy;
  /** How often the reaper runs. Default 1s. */
  reaperIntervalMs?: number;
  /** Revoked serials are re-read from the store at least this often. Default 2s. */
  revocationRefreshMs?: number;
  /** Lending changes are coalesced for this long before peeringsChanged. Default 200ms. */
  lendingDebounceMs?: number;
  /**
   * Placements this replica runs at once; more wait their turn. Bounds the store's queue
   * under bursts, and later callers then see earlier reservations instead of racing them.
   * Default 32.
   */
  maxConcurrentPlacements?: number;
  /** Placement outcomes and durations, counted once per place() (the broker's Metrics). */
  metrics?: PlacementMetrics;
  /** The in-memory view is re-read from the store in full this often. Default 30s. */
  viewResyncMs?: number;
  /** Finished reservations are deleted this long after they finished; 0 keeps them. Default 24h. */
  reservationRetentionMs?: number;
  /** How often the reaper prunes finished reservations. Default 60s. */
  pruneIntervalMs?: number;
  /**
   * The store serves this broker process alone (SQLite): connection records of other
   * broker ids are a dead process's leftovers and never count as held streams.
   */
  soleReplica?: boolean;
}

export function createBrokerCore(opts: CoreOptions): Core {
  return new Core(opts);
}

const DAY_MS = 86_400_000;

/**
 * The broker core: a facade over its services (identity, clusters, streams, peerings,
 * placement, capacity, lending, reaper), which share one CoreDeps. Stateless apart from
 * caches and timers: all state lives in the store, so several replicas on one Redis behave
 * as one broker.
 */
export class Core implements BrokerCore {
  readonly brokerId: string;
  readonly events: EventEmitter<CoreEvents>;

  private readonly deps: CoreDeps;
  private readonly identity: Identity;
  private readonly clusters: Clusters;
  private readonly streams: Streams;
  private readonly peerings: Peerings;
  private readonly placement: Placement;
  private readonly gangs: GangPlacement;
  private readonly reports: Capacity;
  private readonly lending: Lending;
  private readonly reaper: Reaper;
  private readonly ledger: UsageLedger;
  private stopped = false;

  constructor(opts: CoreOptions) {
    const log = componentLogger(opts.logger, 'core');
    const bus = new CoreBus(log);
    this.brokerId = opts.brokerId;
    this.events = bus.events;
    const heartbeatTimeoutMs = opts.heartbeatTimeoutMs ?? 15_000;
    const soleReplica = opts.soleReplica ?? false;
    const clock = opts.clock ?? (() => new Date());
    const held = heldBy(opts.brokerId, soleReplica, clock().getTime());
    const view = new StoreView({
      store: opts.store,
      logger: log,
      feed: opts.store.openFeed?.(),
      resyncMs: opts.viewResyncMs ?? 30_000,
      connectionRefreshMs: Math.max(500, Math.min(2000, heartbeatTimeoutMs / 4)),
      accepts: held,
      onRemoteChange: (change) => this.remoteChange(change),
    });
    this.ledger = new UsageLedger(
      opts.store,
      (donor, node) => view.inventory(donor)?.nodes.find((n) => n.name === node)?.gpuProduct,
      log,
    );
    this.deps = {
      brokerId: opts.brokerId,
      store: new ViewedStore(opts.store, view, this.ledger),
      view,
      ca: opts.ca,
      log,
      bus,
      metrics: opts.metrics,
      now: clock,
      held,
      settings: {
        heartbeatTimeoutMs,
        reservationTtlMs: opts.reservationTtlMs ?? 60_000,
        certValidityMs: opts.clusterCertValidityMs ?? 30 * DAY_MS,
        joinTokenTtlMs: opts.joinTokenTtlMs ?? 15 * 60_000,
        policy: validatePlacementPolicy(opts.placementPolicy ?? 'binpack', 'placementPolicy'),
        reaperIntervalMs: opts.reaperIntervalMs ?? 1000,
        revocationRefreshMs: Math.min(opts.revocationRefreshMs ?? 2000, 2000),
        lendingDebounceMs: opts.lendingDebounceMs ?? 200,
        maxPlacements: Math.max(1, opts.maxConcurrentPlacements ?? 32),
        reservationRetentionMs: opts.reservationRetentionMs ?? DAY_MS,
        pruneIntervalMs: opts.pruneIntervalMs ?? 60_000,
        soleReplica,
      },
    };
    const readiness = new Readiness(this.deps);
    this.identity = new Identity(this.deps);
    this.peerings = new Peerings(this.deps, readiness);
    this.lending = new Lending(this.deps, (ps) => this.peerings.views(ps));
    this.peerings.onDeleted = (origin, donor) => this.lending.forget(origin, donor);
    this.clusters = new Clusters(this.deps, readiness, this.identity, this.lending);
    this.streams = new Streams(this.deps, readiness, this.lending);
    this.placement = new Placement(this.deps, this.lending);
    this.gangs = new GangPlacement(this.deps, this.lending, this.placement);
    this.reports = new Capacity(this.deps, readiness);
    this.reaper = new Reaper(this.deps, readiness, this.identity, this.lending, this.ledger);
  }

  /**
   * Another replica changed a cluster or peering: the streams held here hear of it from
   * this replica too, so the change reaches them even if that replica goes away first.
   */
  private remoteChange(change: RemoteChange): void {
    if (this.stopped) return;
    const { view, bus, log } = this.deps;
    const ids =
      change.k === 'cluster'
        ? withPeers(view, change.id)
        : Promise.resolve([change.origin, change.donor]);
    ids.then(
      (list) => bus.peeringsChanged(list),
      (err: unknown) => log.warn({ err, change }, 'could not announce a change made elsewhere'),
    );
  }

  // ---- identity
  createJoinToken(input: JoinTokenInput): Promise<IssuedJoinToken> {
    return this.identity.createJoinToken(input);
  }
  join(token: string, csrPem: string): Promise<JoinResult> {
    return this.identity.join(token, csrPem);
  }
  renew(clusterId: string, csrPem: string): Promise<JoinResult> {
    return this.identity.renew(clusterId, csrPem);
  }
  isRevoked(serial: string): Promise<boolean> {
    return this.identity.isRevoked(serial);
  }
  listApiTokens(): Promise<ApiTokenView[]> {
    return this.identity.listApiTokens();
  }
  createApiToken(input: ApiTokenInput): Promise<ApiTokenCreated> {
    return this.identity.createApiToken(input);
  }
  deleteApiToken(id: string): Promise<void> {
    return this.identity.deleteApiToken(id);
  }

  // ---- clusters
  listClusters(): Promise<ClusterView[]> {
    return this.clusters.list();
  }
  getCluster(id: string): Promise<ClusterDetail> {
    return this.clusters.get(id);
  }
  getClusterRecord(id: string): Promise<ClusterRecord | undefined> {
    return this.clusters.record(id);
  }
  patchCluster(id: string, patch: ClusterPatch): Promise<ClusterView> {
    return this.clusters.patch(id, patch);
  }
  removeCluster(id: string): Promise<void> {
    return this.clusters.remove(id);
  }

  // ---- streams
  async connected(clusterId: string, component: Component, certSerial?: string): Promise<void> {
    await this.streams.connected(clusterId, component);
    // The agent is what renews: its stream on the new certificate confirms a renewal.
    if (component === 'agent' && certSerial !== undefined) {
      await this.identity.confirmRenewal(clusterId, certSerial);
    }
  }
  heartbeat(clusterId: string, component: Component): Promise<void> {
    return this.streams.heartbeat(clusterId, component);
  }
  disconnected(clusterId: string, component: Component): Promise<void> {
    return this.streams.disconnected(clusterId, component);
  }
  applyCapacity(clusterId: string, update: CapacityReport): Promise<void> {
    return this.streams.applyCapacity(clusterId, update);
  }
  getInventory(clusterId: string): Promise<ClusterInventory | undefined> {
    return this.streams.getInventory(clusterId);
  }
  podStatus(donor: string, report: PodStatusReport): Promise<void> {
    return this.streams.podStatus(donor, report);
  }

  // ---- peerings
  createPeering(input: PeeringInput): Promise<PeeringView> {
    return this.peerings.create(input);
  }
  listPeerings(filter?: { origin?: string; donor?: string }): Promise<PeeringView[]> {
    return this.peerings.list(filter);
  }
  deletePeering(origin: string, donor: string): Promise<void> {
    return this.peerings.delete(origin, donor);
  }
  drainPeering(origin: string, donor: string): Promise<PeeringView> {
    return this.peerings.drain(origin, donor);
  }
  peeringState(clusterId: string): Promise<PeeringState> {
    return this.peerings.stateOf(clusterId);
  }
  assertPeered(
    origin: string,
    donor: string,
    opts?: { allowDraining?: boolean },
  ): Promise<PeeringRecord> {
    return this.peerings.assertPeered(origin, donor, opts);
  }

  // ---- placement and reporting
  place(origin: string, request: PlacementRequest): Promise<PlacementResult> {
    return this.placement.place(origin, request);
  }
  simulate(origin: string, request: PlacementRequest): Promise<PlacementResult> {
    return this.placement.simulate(origin, request);
  }
  placeGang(origin: string, request: GangPlacementRequest): Promise<GangPlacementResult> {
    return this.gangs.placeGang(origin, request);
  }
  simulateGang(origin: string, request: GangPlacementRequest): Promise<GangPlacementResult> {
    return this.gangs.simulateGang(origin, request);
  }
  release(origin: string, reservationId: string, reason: string): Promise<boolean> {
    return this.placement.release(origin, reservationId, reason);
  }
  assertReservationLive(
    origin: string,
    donor: string,
    podUid: string,
    reservationId: string,
  ): Promise<ReservationRecord> {
    return this.placement.assertReservationLive(origin, donor, podUid, reservationId);
  }
  capacity(filter?: CapacityFilter): Promise<CapacitySummary> {
    return this.reports.capacity(filter);
  }
  offloads(filter?: OffloadFilter): Promise<ReservationRecord[]> {
    return this.reports.offloads(filter);
  }
  async usage(query: UsageQuery = {}): Promise<UsageReport> {
    const filter = parseUsageQuery(query);
    return this.ledger.report(filter, this.deps.now());
  }

  // ---- lifecycle
  start(): void {
    if (this.reaper.running) return;
    this.stopped = false;
    this.lending.resume();
    this.deps.view.start().catch((err: unknown) => {
      this.deps.log.warn({ err }, 'could not subscribe to other replicas; relying on re-reads');
    });
    this.reaper.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.allSettled([this.reaper.stop(), this.lending.stop()]);
    await this.deps.view.stop();
  }

  /** One reaper pass: expire reservations, notice readiness flips, refresh revocations, prune. */
  tick(): Promise<void> {
    return this.reaper.tick();
  }

  /** Resolves once pending lending updates went out (tests, graceful shutdown). */
  idle(): Promise<void> {
    return this.lending.idle();
  }
}
