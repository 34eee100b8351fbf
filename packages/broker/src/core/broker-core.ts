import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  ErrorCode,
  SpillwayError,
  issueCertificate,
  normalizeSerial,
  tenantNamespace,
  validateClusterId,
  type CertificateAuthority,
  type Logger,
} from '@spillway/common';
import {
  DEFAULT_DONOR_POLICY,
  type ClusterInventory,
  type ClusterRecord,
  type Component,
  type ConnectionRecord,
  type NodeInventory,
  type PeeringRecord,
  type PlacementPolicy,
  type ReservationRecord,
  type ReserveResult,
} from '../model.js';
import type { Store } from '../store/store.js';
import {
  fastCandidates,
  freeOn,
  indexedCandidates,
  type DonorSummary,
  type FastDonor,
} from '../placement/fast.js';
import { StoreView } from './view.js';
import {
  clusterReadiness,
  compareNames,
  effectiveFree,
  peeringLends,
  evaluatePlacement,
  lendingOf,
  nodeLendable,
  quotaHeadroom,
  type Candidate,
  type DonorSnapshot,
  type PlacementSnapshot,
} from '../placement/engine.js';
import type {
  BrokerCore,
  CandidateVerdict,
  CapacityFilter,
  CapacityRow,
  CapacitySummary,
  ClusterDetail,
  ClusterPatch,
  ClusterState,
  ClusterView,
  CoreEvents,
  IssuedJoinToken,
  JoinResult,
  JoinTokenInput,
  OffloadFilter,
  PeeringInput,
  PeeringState,
  PeeringView,
  PlacementRequest,
  PlacementResult,
  PodStatusReport,
} from './api.js';
import {
  invalid,
  validateCapacityFilter,
  validateCapacityUpdate,
  validateClusterPatch,
  validateJoinTokenInput,
  validatePeeringInput,
  validatePlacementPolicy,
  validatePlacementRequest,
  validatePodStatusReport,
} from './validate.js';

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
  /** Placement outcomes and durations (the broker's Metrics fits). */
  metrics?: { observePlacement(result: string, seconds: number): void };
  /** The in-memory view is re-read from the store in full this often. Default 30s. */
  viewResyncMs?: number;
}

export function createBrokerCore(opts: CoreOptions): Core {
  return new Core(opts);
}

const DAY_MS = 86_400_000;
/** Candidates a placement tries in turn when concurrent ones take the best first. */
const CANDIDATES_PER_ATTEMPT = 4;
const PLACE_ATTEMPTS = 3;
const LIVE: ReservationRecord['state'][] = ['open', 'bound'];
const TERMINAL_PHASES = new Set(['Succeeded', 'Failed']);
const TOKEN_PATTERN = /^([a-z0-9]{8,64})\.([A-Za-z0-9_-]{43})$/;

const sha256 = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

function hashMatches(secret: string, storedHex: string): boolean {
  const got = sha256(secret);
  const want = Buffer.from(storedHex, 'hex');
  return want.length === got.length && timingSafeEqual(got, want);
}

function tokenInvalid(): SpillwayError {
  // One message for every way a token can be wrong, so nothing can be probed.
  return new SpillwayError(
    ErrorCode.TOKEN_INVALID,
    'token: the join token is invalid, expired or already used; ask the broker admin for a new one',
    { field: 'token' },
  );
}

/**
 * The broker core. Stateless apart from caches and timers: all state lives in the store,
 * so several replicas on one Redis behave as one broker.
 */
export class Core implements BrokerCore {
  readonly brokerId: string;
  readonly events = new EventEmitter<CoreEvents>();

  private readonly store: Store;
  private readonly view: StoreView;
  private readonly ca: CertificateAuthority;
  private readonly log: Logger;
  private readonly clock: () => Date;
  private readonly heartbeatTimeoutMs: number;
  private readonly reservationTtlMs: number;
  private readonly certValidityMs: number;
  private readonly joinTokenTtlMs: number;
  private readonly policy: PlacementPolicy;
  private readonly reaperIntervalMs: number;
  private readonly revocationRefreshMs: number;
  private readonly lendingDebounceMs: number;
  private readonly metrics: CoreOptions['metrics'];
  private readonly maxPlacements: number;
  private placing = 0;
  private readonly placeQueue: (() => void)[] = [];

  private revoked = new Set<string>();
  /** performance.now() of the last load; wall-clock jumps must not stall refreshes. */
  private revokedLoadedAt = Number.NEGATIVE_INFINITY;
  private revokedLoading: Promise<void> | undefined;
  /** Last state seen per cluster, to emit peeringsChanged on flips. */
  private readonly readiness = new Map<string, ClusterState>();
  /** Last lending signature per "origin/donor", to emit only on change. */
  private readonly lendingSig = new Map<string, string>();
  private readonly pendingLending = new Set<string>();
  private lendingTimer: NodeJS.Timeout | undefined;
  private lendingRun: Promise<void> | undefined;
  private reaperTimer: NodeJS.Timeout | undefined;
  private tickRun: Promise<void> | undefined;
  private stopped = false;

  constructor(opts: CoreOptions) {
    this.store = opts.store;
    this.ca = opts.ca;
    this.brokerId = opts.brokerId;
    this.log = opts.logger.child({ component: 'core', brokerId: opts.brokerId });
    this.clock = opts.clock ?? (() => new Date());
    this.heartbeatTimeoutMs = opts.heartbeatTimeoutMs ?? 15_000;
    this.reservationTtlMs = opts.reservationTtlMs ?? 60_000;
    this.certValidityMs = opts.clusterCertValidityMs ?? 30 * DAY_MS;
    this.joinTokenTtlMs = opts.joinTokenTtlMs ?? 15 * 60_000;
    this.policy = validatePlacementPolicy(opts.placementPolicy ?? 'binpack', 'placementPolicy');
    this.reaperIntervalMs = opts.reaperIntervalMs ?? 1000;
    this.revocationRefreshMs = Math.min(opts.revocationRefreshMs ?? 2000, 2000);
    this.lendingDebounceMs = opts.lendingDebounceMs ?? 200;
    this.metrics = opts.metrics;
    this.maxPlacements = Math.max(1, opts.maxConcurrentPlacements ?? 32);
    this.view = new StoreView({
      store: this.store,
      logger: this.log,
      feed: this.store.openFeed?.(),
      resyncMs: opts.viewResyncMs ?? 30_000,
      connectionRefreshMs: Math.max(500, Math.min(2000, this.heartbeatTimeoutMs / 4)),
    });
  }

  private now(): Date {
    return this.clock();
  }

  private emit<K extends keyof CoreEvents>(event: K, ...args: CoreEvents[K]): void {
    try {
      (this.events.emit as (e: K, ...a: CoreEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      // A listener's bug must not fail the operation that already happened.
      this.log.error({ err, event }, 'core event listener failed');
    }
  }

  private emitPeerings(ids: Iterable<string>): void {
    const list = [...new Set(ids)].sort();
    if (list.length > 0) this.emit('peeringsChanged', list);
  }

  // -------------------------------------------------------------------------------------
  // Join, certificates, revocation

  async createJoinToken(input: JoinTokenInput): Promise<IssuedJoinToken> {
    const { clusterId, role, ttlMs } = validateJoinTokenInput(input, this.joinTokenTtlMs);
    const now = this.now();
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const expiresAt = new Date(now.getTime() + ttlMs).toISOString();
    await this.store.createJoinToken({
      id,
      secretHash: sha256(secret).toString('hex'),
      clusterId,
      role,
      createdAt: now.toISOString(),
      expiresAt,
    });
    this.log.info({ tokenId: id, clusterId, role, expiresAt }, 'join token created');
    return { token: `${id}.${secret}`, id, clusterId, role, expiresAt };
  }

  async join(token: string, csrPem: string): Promise<JoinResult> {
    const m = typeof token === 'string' ? TOKEN_PATTERN.exec(token.trim()) : null;
    if (!m) throw tokenInvalid();
    const [, id, secret] = m as unknown as [string, string, string];
    const now = this.now();
    // Look first, consume last: a bad CSR must not burn the token.
    const record = (await this.store.listJoinTokens()).find((t) => t.id === id);
    if (
      !record ||
      record.usedAt !== undefined ||
      Date.parse(record.expiresAt) <= now.getTime() ||
      !hashMatches(secret, record.secretHash)
    ) {
      throw tokenInvalid();
    }
    const issued = this.issue(record.clusterId, csrPem, now);
    const consumed = await this.store.consumeJoinToken(id, sha256(secret).toString('hex'), now);
    const existing = await this.store.getCluster(consumed.clusterId);
    const cluster: ClusterRecord = {
      id: consumed.clusterId,
      role: consumed.role,
      createdAt: existing?.createdAt ?? now.toISOString(),
      certSerial: normalizeSerial(issued.serial),
      certNotAfter: issued.notAfter.toISOString(),
      policy: existing?.policy ?? { ...DEFAULT_DONOR_POLICY, nodeSelector: {} },
    };
    await this.store.putCluster(cluster);
    this.view.noteCluster(cluster);
    this.log.info(
      { clusterId: cluster.id, role: cluster.role, serial: cluster.certSerial, rejoin: !!existing },
      'cluster joined',
    );
    this.emitPeerings([cluster.id, ...(await this.peersOf(cluster.id))]);
    return {
      clusterId: cluster.id,
      certificatePem: issued.certPem,
      caPem: this.ca.certPem,
      notAfter: cluster.certNotAfter!,
    };
  }

  async renew(clusterId: string, csrPem: string): Promise<JoinResult> {
    const cluster = await this.activeCluster(clusterId, 'clusterId');
    const now = this.now();
    const issued = this.issue(cluster.id, csrPem, now);
    const updated: ClusterRecord = {
      ...cluster,
      certSerial: normalizeSerial(issued.serial),
      certNotAfter: issued.notAfter.toISOString(),
    };
    await this.store.putCluster(updated);
    this.view.noteCluster(updated);
    this.log.info({ clusterId, serial: updated.certSerial }, 'cluster certificate renewed');
    return {
      clusterId,
      certificatePem: issued.certPem,
      caPem: this.ca.certPem,
      notAfter: updated.certNotAfter!,
    };
  }

  /** The identity comes from the broker, never from the CSR's subject. */
  private issue(clusterId: string, csrPem: string, now: Date): ReturnType<typeof issueCertificate> {
    return issueCertificate({
      ca: this.ca,
      csrPem,
      profile: 'client',
      identity: { kind: 'cluster', name: clusterId },
      validSeconds: Math.floor(this.certValidityMs / 1000),
      now,
    });
  }

  async isRevoked(serial: string): Promise<boolean> {
    if (performance.now() - this.revokedLoadedAt >= this.revocationRefreshMs) {
      try {
        await this.refreshRevoked();
      } catch (err) {
        // Fail closed until the list was read once; after that a stale list beats an outage.
        if (this.revokedLoadedAt === Number.NEGATIVE_INFINITY) throw err;
        this.log.warn({ err }, 'could not refresh revoked serials; using the cached list');
      }
    }
    return this.revoked.has(normalizeSerial(serial));
  }

  private refreshRevoked(): Promise<void> {
    this.revokedLoading ??= (async () => {
      try {
        const entries = await this.store.listRevoked();
        this.revoked = new Set(entries.map((e) => normalizeSerial(e.serial)));
        this.revokedLoadedAt = performance.now();
      } finally {
        this.revokedLoading = undefined;
      }
    })();
    return this.revokedLoading;
  }

  // -------------------------------------------------------------------------------------
  // Clusters

  /** The cluster, or NOT_FOUND / PERMISSION_DENIED (removed) naming `field`. */
  private async activeCluster(id: string, field: string): Promise<ClusterRecord> {
    validateClusterId(id, field);
    const cluster = await this.store.getCluster(id);
    if (!cluster) {
      throw new SpillwayError(ErrorCode.NOT_FOUND, `${field}: cluster ${id} is not known`, {
        field,
      });
    }
    if (cluster.revokedAt !== undefined) {
      throw new SpillwayError(
        ErrorCode.PERMISSION_DENIED,
        `${field}: cluster ${id} was removed at ${cluster.revokedAt}; it must join again with a new token`,
        { field },
      );
    }
    return cluster;
  }

  private agentOf(conns: readonly ConnectionRecord[], id: string): ConnectionRecord | undefined {
    return conns.find((c) => c.clusterId === id && c.component === 'agent');
  }

  private stateOf(
    cluster: ClusterRecord,
    conns: readonly ConnectionRecord[],
    hasInventory: boolean,
    now = this.now(),
  ): ClusterState {
    return clusterReadiness(
      cluster,
      this.agentOf(conns, cluster.id),
      now,
      this.heartbeatTimeoutMs,
      hasInventory,
    ).state;
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
    return {
      id: cluster.id,
      role: cluster.role,
      state: this.stateOf(cluster, conns, inventory !== undefined),
      createdAt: cluster.createdAt,
      ...(lastSeenAt === undefined ? {} : { lastSeenAt }),
      connections,
      policy: cluster.policy,
      ...(cluster.certNotAfter === undefined ? {} : { certNotAfter: cluster.certNotAfter }),
      gpus,
      nodeCount,
    };
  }

  async listClusters(): Promise<ClusterView[]> {
    const [clusters, conns, inventories, live] = await Promise.all([
      this.store.listClusters(),
      this.store.listConnections(),
      this.store.listInventories(),
      this.store.listReservations({ states: ['open'] }),
    ]);
    const inv = new Map(inventories.map((i) => [i.clusterId, i]));
    return clusters
      .map((c) => this.viewOf(c, conns, inv.get(c.id), live))
      .sort((a, b) => a.id.localeCompare(b.id, 'en'));
  }

  async getCluster(id: string): Promise<ClusterDetail> {
    validateClusterId(id, 'id');
    const cluster = await this.store.getCluster(id);
    if (!cluster)
      throw new SpillwayError(ErrorCode.NOT_FOUND, `id: cluster ${id} is not known`, {
        field: 'id',
      });
    const [conns, inventory, live, asOrigin, asDonor] = await Promise.all([
      this.store.listConnections(),
      this.store.getInventory(id),
      this.store.listReservations({ donor: id, states: ['open'] }),
      this.store.listPeerings({ origin: id }),
      this.store.listPeerings({ donor: id }),
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

  async getClusterRecord(id: string): Promise<ClusterRecord | undefined> {
    return this.store.getCluster(id);
  }

  async patchCluster(id: string, patch: ClusterPatch): Promise<ClusterView> {
    const valid = validateClusterPatch(patch);
    const cluster = await this.activeCluster(id, 'id');
    const policy = { ...cluster.policy, ...valid.policy };
    if (valid.cordoned !== undefined) policy.cordoned = valid.cordoned;
    const updated: ClusterRecord = { ...cluster, policy };
    await this.store.putCluster(updated);
    this.view.noteCluster(updated);
    this.log.info({ clusterId: id, policy }, 'cluster policy changed');
    this.emitPeerings([id, ...(await this.peersOf(id))]);
    const [conns, inventory, live] = await Promise.all([
      this.store.listConnections(),
      this.store.getInventory(id),
      this.store.listReservations({ donor: id, states: ['open'] }),
    ]);
    return this.viewOf(updated, conns, inventory, live);
  }

  async removeCluster(id: string): Promise<void> {
    validateClusterId(id, 'id');
    const cluster = await this.store.getCluster(id);
    if (!cluster)
      throw new SpillwayError(ErrorCode.NOT_FOUND, `id: cluster ${id} is not known`, {
        field: 'id',
      });
    const now = this.now();
    const at = now.toISOString();
    if (cluster.certSerial !== undefined) {
      const serial = normalizeSerial(cluster.certSerial);
      await this.store.revoke({
        serial,
        revokedAt: at,
        reason: 'cluster removed',
        subject: `cluster:${id}`,
      });
      this.revoked.add(serial);
    }
    const peers = await this.peersOf(id);
    for (const p of [
      ...(await this.store.listPeerings({ origin: id })),
      ...(await this.store.listPeerings({ donor: id })),
    ]) {
      await this.store.deletePeering(p.origin, p.donor);
      this.view.notePeering(p.origin, p.donor, undefined);
    }
    const live = [
      ...(await this.store.listReservations({ origin: id, states: LIVE })),
      ...(await this.store.listReservations({ donor: id, states: LIVE })),
    ];
    for (const r of live) {
      const released = await this.store.release(r.id, `cluster ${id} removed`, now);
      if (released) this.view.noteReservation(released);
    }
    await this.store.clearInventory(id);
    this.view.noteInventory(id, undefined);
    for (const c of await this.store.listConnections()) {
      if (c.clusterId === id) {
        await this.store.deleteConnection(id, c.component, c.brokerId);
        this.view.noteConnectionGone(id, c.component, c.brokerId);
      }
    }
    // The record stays, marked revoked, so the cluster shows as Revoked rather than vanishing.
    const revoked = { ...cluster, revokedAt: at };
    await this.store.putCluster(revoked);
    this.view.noteCluster(revoked);
    this.readiness.set(id, 'Revoked');
    this.log.warn(
      { clusterId: id, serial: cluster.certSerial },
      'cluster removed; certificate revoked',
    );
    this.emit('clusterRevoked', id);
    this.emitPeerings(peers);
    for (const d of new Set(live.map((r) => r.donor))) if (d !== id) this.scheduleLending(d);
  }

  /** Clusters on the other side of this cluster's peerings. */
  private async peersOf(id: string): Promise<string[]> {
    await this.view.ready();
    const asOrigin = this.view.peeringsOf({ origin: id });
    const asDonor = this.view.peeringsOf({ donor: id });
    return [...new Set([...asOrigin.map((p) => p.donor), ...asDonor.map((p) => p.origin)])];
  }

  // -------------------------------------------------------------------------------------
  // Streams

  async connected(clusterId: string, component: Component): Promise<void> {
    await this.activeCluster(clusterId, 'clusterId');
    const at = this.now().toISOString();
    const conn: ConnectionRecord = {
      clusterId,
      component,
      brokerId: this.brokerId,
      connectedAt: at,
      lastSeenAt: at,
    };
    await this.store.putConnection(conn);
    this.view.noteConnection(conn);
    if (component === 'agent') await this.noteReadiness(clusterId, true);
  }

  async heartbeat(clusterId: string, component: Component): Promise<void> {
    const now = this.now();
    await this.store.touchConnection(clusterId, component, this.brokerId, now);
    const held = this.view.connection(clusterId, component);
    if (held?.brokerId === this.brokerId) {
      // Other replicas re-read connections on their own; no notice per heartbeat.
      this.view.noteConnection({ ...held, lastSeenAt: now.toISOString() }, false);
    }
    // A silent agent that speaks again is Ready at once, not at the next reaper tick.
    if (component === 'agent' && this.readiness.get(clusterId) !== 'Ready') {
      await this.noteReadiness(clusterId, false);
    }
  }

  async disconnected(clusterId: string, component: Component): Promise<void> {
    await this.store.deleteConnection(clusterId, component, this.brokerId);
    this.view.noteConnectionGone(clusterId, component, this.brokerId);
    if (component === 'agent') await this.noteReadiness(clusterId, false);
  }

  /** Re-reads one cluster's state; emits peeringsChanged when it flipped (or `always`). */
  private async noteReadiness(clusterId: string, always: boolean): Promise<void> {
    await this.view.ready();
    const cluster = this.view.cluster(clusterId);
    if (!cluster) return;
    const state = clusterReadiness(
      cluster,
      this.view.connection(clusterId, 'agent'),
      this.now(),
      this.heartbeatTimeoutMs,
      this.view.inventory(clusterId) !== undefined,
    ).state;
    const before = this.readiness.get(clusterId);
    this.readiness.set(clusterId, state);
    if (always || before !== state) {
      if (before !== undefined && before !== state) {
        this.log.info({ clusterId, from: before, to: state }, 'cluster readiness changed');
      }
      this.emitPeerings([clusterId, ...(await this.peersOf(clusterId))]);
    }
  }

  async applyCapacity(
    clusterId: string,
    update: { full: boolean; nodes: NodeInventory[]; removedNodes: string[]; sequence: number },
  ): Promise<void> {
    validateCapacityUpdate(update);
    await this.activeCluster(clusterId, 'clusterId');
    const now = this.now();
    const bound = await this.store.applyCapacity(clusterId, update, now);
    const inventory = await this.store.getInventory(clusterId);
    this.view.noteInventory(clusterId, inventory);
    if (update.full && inventory) await this.endVanished(clusterId, inventory, now);
    for (const r of bound) {
      this.view.noteReservation(r);
      this.log.info(
        {
          reservation: r.id,
          donor: r.donor,
          node: r.node,
          pod: `${r.pod.namespace}/${r.pod.name}`,
        },
        'reservation bound',
      );
    }
    this.scheduleLending(clusterId);
  }

  /**
   * A full report is the donor's whole truth: a bound pod missing from the node it was
   * bound on is gone, even if the report of its end was lost (the agent's stream was down
   * when it ended). Its reservation ends, so its GPUs are not held forever. Pods on nodes
   * the report leaves out are left alone: the node may only have stopped being lent.
   */
  private async endVanished(donor: string, inventory: ClusterInventory, now: Date): Promise<void> {
    const onNode = new Map(inventory.nodes.map((n) => [n.name, new Set(n.offloadedPodUids)]));
    for (const r of await this.store.listReservations({ donor, states: ['bound'] })) {
      const uids = onNode.get(r.node);
      if (!uids || uids.has(r.pod.uid)) continue;
      const ended = await this.store.endByPod(
        r.pod.uid,
        `remote pod no longer on ${donor}/${r.node} (full report)`,
        now,
      );
      if (!ended) continue;
      this.view.noteReservation(ended);
      this.log.info(
        { reservation: ended.id, donor, node: r.node, pod: `${r.pod.namespace}/${r.pod.name}` },
        "reservation ended: its pod is missing from the donor's full report",
      );
      this.scheduleLending(donor);
    }
  }

  async getInventory(clusterId: string): Promise<ClusterInventory | undefined> {
    return this.store.getInventory(clusterId);
  }

  async podStatus(donor: string, report: PodStatusReport): Promise<void> {
    validatePodStatusReport(report);
    const r = await this.store.findReservationByPod(report.pod.uid);
    if (!r) {
      // Status of a pod whose reservation already ended: nothing left to update.
      this.log.debug({ donor, podUid: report.pod.uid }, 'pod status for no live reservation');
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
    await this.store.updateRemoteStatus(report.pod.uid, {
      remotePhase: report.phase,
      remoteNamespace: report.remoteNamespace,
      remoteName: report.remoteName,
    });
    if (report.deleted || TERMINAL_PHASES.has(report.phase)) {
      const reason = report.deleted ? 'remote pod deleted' : `remote pod ${report.phase}`;
      const ended = await this.store.endByPod(report.pod.uid, reason, this.now());
      if (ended) this.view.noteReservation(ended);
      if (ended) this.log.info({ reservation: ended.id, donor, reason }, 'reservation ended');
      this.scheduleLending(donor);
    }
  }

  // -------------------------------------------------------------------------------------
  // Peerings

  async createPeering(input: PeeringInput): Promise<PeeringView> {
    const { origin, donor, maxGpus, gpuProducts } = validatePeeringInput(input);
    const o = await this.activeCluster(origin, 'origin');
    const d = await this.activeCluster(donor, 'donor');
    if (o.role === 'donor')
      throw invalid('origin', `cluster ${origin} joined as a donor and cannot borrow GPUs`);
    if (d.role === 'origin')
      throw invalid('donor', `cluster ${donor} joined as an origin and does not lend GPUs`);
    // Creating an existing peering updates its limits and keeps its creation time.
    const existing = await this.store.getPeering(origin, donor);
    const peering: PeeringRecord = {
      origin,
      donor,
      maxGpus,
      gpuProducts,
      createdAt: existing?.createdAt ?? this.now().toISOString(),
    };
    await this.store.putPeering(peering);
    this.view.notePeering(origin, donor, peering);
    this.log.info(
      { origin, donor, maxGpus, gpuProducts },
      existing ? 'peering updated' : 'peering created',
    );
    this.emitPeerings([origin, donor]);
    const [view] = await this.peeringViews([peering]);
    return view!;
  }

  async listPeerings(filter: { origin?: string; donor?: string } = {}): Promise<PeeringView[]> {
    if (filter.origin !== undefined) validateClusterId(filter.origin, 'origin');
    if (filter.donor !== undefined) validateClusterId(filter.donor, 'donor');
    return this.peeringViews(await this.store.listPeerings(filter));
  }

  async deletePeering(origin: string, donor: string): Promise<void> {
    validateClusterId(origin, 'origin');
    validateClusterId(donor, 'donor');
    if (!(await this.store.deletePeering(origin, donor))) {
      throw new SpillwayError(
        ErrorCode.NOT_FOUND,
        `origin ${origin} is not peered with donor ${donor}`,
        {
          field: 'donor',
        },
      );
    }
    this.view.notePeering(origin, donor, undefined);
    // Promised GPUs go back; bound pods keep running until the origin deletes them.
    const now = this.now();
    for (const r of await this.store.listReservations({ origin, donor, states: ['open'] })) {
      const released = await this.store.release(r.id, 'peering removed', now);
      if (released) this.view.noteReservation(released);
    }
    this.lendingSig.delete(`${origin}/${donor}`);
    this.log.info({ origin, donor }, 'peering deleted');
    this.emitPeerings([origin, donor]);
  }

  async drainPeering(origin: string, donor: string): Promise<PeeringView> {
    validateClusterId(origin, 'origin');
    validateClusterId(donor, 'donor');
    const p = await this.store.getPeering(origin, donor);
    if (!p) {
      throw new SpillwayError(
        ErrorCode.NOT_FOUND,
        `origin ${origin} is not peered with donor ${donor}`,
        { field: 'donor' },
      );
    }
    let record = p;
    if (p.deletingSince === undefined) {
      record = { ...p, deletingSince: this.now().toISOString() };
      await this.store.putPeering(record);
      this.view.notePeering(origin, donor, record);
      this.log.info({ origin, donor }, 'peering draining');
      this.emitPeerings([origin, donor]);
    }
    const [view] = await this.peeringViews([record]);
    return view!;
  }

  async peeringState(clusterId: string): Promise<PeeringState> {
    validateClusterId(clusterId, 'clusterId');
    const [asOrigin, asDonor] = await Promise.all([
      this.store.listPeerings({ origin: clusterId }),
      this.store.listPeerings({ donor: clusterId }),
    ]);
    const views = await this.peeringViews([...asOrigin, ...asDonor]);
    return { asOrigin: views.slice(0, asOrigin.length), asDonor: views.slice(asOrigin.length) };
  }

  async assertPeered(
    origin: string,
    donor: string,
    opts: { allowDraining?: boolean } = {},
  ): Promise<PeeringRecord> {
    const p = await this.store.getPeering(origin, donor);
    if (!p || (p.deletingSince !== undefined && opts.allowDraining !== true)) {
      throw new SpillwayError(
        ErrorCode.NO_PEERING,
        `origin ${origin} is not peered with donor ${donor}`,
        {
          field: 'donor',
        },
      );
    }
    return p;
  }

  /** What each donor holds, from the view. */
  private async donorSnapshots(ids: Iterable<string>): Promise<Map<string, DonorSnapshot>> {
    await this.view.ready();
    const out = new Map<string, DonorSnapshot>();
    for (const id of new Set(ids)) {
      const d = this.view.donorSnapshot(id);
      if (d) out.set(id, d);
    }
    return out;
  }

  private async peeringViews(peerings: readonly PeeringRecord[]): Promise<PeeringView[]> {
    const donors = await this.donorSnapshots(peerings.map((p) => p.donor));
    const now = this.now();
    return peerings.map((p) => this.peeringView(p, donors.get(p.donor), now));
  }

  private peeringView(p: PeeringRecord, d: DonorSnapshot | undefined, now: Date): PeeringView {
    if (!d) {
      return {
        ...p,
        donorState: 'Revoked',
        lendable: {},
        inUse: {},
        donorGpuProducts: [],
        tenantNamespace: tenantNamespace(p.origin),
        podSecurity: DEFAULT_DONOR_POLICY.podSecurity,
      };
    }
    const summary = this.view.summary(d.cluster.id);
    const lending = lendingOf(
      { ...d, peering: p },
      p.origin,
      now,
      this.heartbeatTimeoutMs,
      summary && ((node, resource) => freeOn(summary, node, resource)),
    );
    const state = clusterReadiness(
      d.cluster,
      d.agent,
      now,
      this.heartbeatTimeoutMs,
      d.inventory !== undefined,
    ).state;
    return {
      ...p,
      donorState: state !== 'Revoked' && d.cluster.policy.cordoned ? 'Cordoned' : state,
      lendable: lending.lendable,
      inUse: lending.inUse,
      donorGpuProducts: lending.products,
      tenantNamespace: tenantNamespace(p.origin),
      podSecurity: d.cluster.policy.podSecurity,
    };
  }

  // -------------------------------------------------------------------------------------
  // Placement

  /** Every candidate donor as the engine sees it (the full evaluation: simulate, refusals). */
  private async snapshot(origin: string, only: readonly string[]): Promise<PlacementSnapshot> {
    await this.view.ready();
    const restrict = new Set(only);
    const donors: DonorSnapshot[] = [];
    for (const c of this.view.allClusters()) {
      if (c.id === origin || (restrict.size > 0 && !restrict.has(c.id))) continue;
      const d = this.view.peering(origin, c.id)
        ? this.view.donorSnapshot(c.id, origin)
        : { cluster: c, reservations: [] };
      if (d) donors.push(d);
    }
    return { origin, now: this.now(), heartbeatTimeoutMs: this.heartbeatTimeoutMs, donors };
  }

  /** The best few candidates from the view, or none (then the full evaluation says why). */
  private bestCandidates(
    origin: string,
    req: PlacementRequest,
    policy: PlacementPolicy,
  ): Candidate[] {
    const input = { origin, now: this.now(), heartbeatTimeoutMs: this.heartbeatTimeoutMs };
    if (req.donors.length === 0 && policy !== 'cost') {
      return indexedCandidates(
        this.view.freeIndex(),
        (id) => this.view.fastDonor(origin, id),
        input,
        req,
        policy,
        CANDIDATES_PER_ATTEMPT,
      );
    }
    const ids =
      req.donors.length > 0 ? req.donors : this.view.peeringsOf({ origin }).map((p) => p.donor);
    const donors: FastDonor[] = [];
    for (const id of ids) {
      const d = this.view.fastDonor(origin, id);
      if (d) donors.push(d);
    }
    return fastCandidates({ ...input, donors }, req, policy, CANDIDATES_PER_ATTEMPT);
  }

  private async checkOrigin(origin: string, request: PlacementRequest): Promise<PlacementRequest> {
    validateClusterId(origin, 'origin');
    const req = validatePlacementRequest(origin, request);
    await this.activeCluster(origin, 'origin');
    return req;
  }

  async place(origin: string, request: PlacementRequest): Promise<PlacementResult> {
    const started = performance.now();
    if (this.placing >= this.maxPlacements) {
      await new Promise<void>((resolve) => this.placeQueue.push(resolve));
    } else {
      this.placing++;
    }
    let result: PlacementResult;
    try {
      result = await this.placeOnce(origin, request);
    } finally {
      // Hand the slot straight to the next waiter, or give it back.
      const next = this.placeQueue.shift();
      if (next) next();
      else this.placing--;
    }
    this.metrics?.observePlacement(
      result.placed ? 'placed' : result.code,
      (performance.now() - started) / 1000,
    );
    return result;
  }

  private async placeOnce(origin: string, request: PlacementRequest): Promise<PlacementResult> {
    const req = await this.checkOrigin(origin, request);
    const existing = await this.store.findReservationByPod(req.pod.uid);
    if (existing) return this.retried(origin, existing);
    const policy = req.policy ?? this.policy;
    let lost: Extract<ReserveResult, { ok: false }> | undefined;
    let verdicts: CandidateVerdict[] = [];
    // Another look when every candidate was taken between choosing and reserving (by
    // another replica, or a change the view had not caught up with).
    for (let attempt = 0; attempt < PLACE_ATTEMPTS; attempt++) {
      await this.view.ready();
      let candidates = this.bestCandidates(origin, req, policy);
      verdicts = candidates.map((c) => ({
        donor: c.donor,
        node: c.node,
        reason: '',
        score: c.score,
      }));
      if (candidates.length === 0) {
        // Nothing fits: the full evaluation says why, node by node.
        const result = evaluatePlacement(await this.snapshot(origin, req.donors), req, policy);
        verdicts = result.verdicts;
        if (result.refusal) {
          return {
            placed: false,
            code: result.refusal.code,
            reason: result.refusal.reason,
            verdicts,
          };
        }
        candidates = result.candidates.slice(0, CANDIDATES_PER_ATTEMPT);
      }
      for (const c of candidates) {
        const at = this.now();
        const promise: ReservationRecord = {
          id: randomUUID(),
          origin,
          donor: c.donor,
          node: c.node,
          resource: c.resource,
          gpus: c.gpus,
          pod: req.pod,
          state: 'open',
          createdAt: at.toISOString(),
          expiresAt: new Date(at.getTime() + this.reservationTtlMs).toISOString(),
        };
        const { id, state: _state, createdAt: _created, expiresAt: _expires, ...ask } = promise;
        // Concurrent placements on this replica see the promise while it is being made.
        this.view.hold(promise);
        let res: ReserveResult;
        try {
          res = await this.store.reserve(
            {
              id,
              ...ask,
              ttlMs: this.reservationTtlMs,
              peeringMaxGpus: c.peeringMaxGpus,
              donorMaxGpus: c.donorMaxGpus,
              donorMaxGpusPerOrigin: c.donorMaxGpusPerOrigin,
            },
            at,
          );
        } finally {
          this.view.unhold(id, c.donor);
        }
        if (res.ok) {
          this.view.noteReservation(res.reservation);
          this.log.info(
            {
              reservation: res.reservation.id,
              origin,
              donor: c.donor,
              node: c.node,
              gpus: c.gpus,
              pod: `${req.pod.namespace}/${req.pod.name}`,
            },
            'GPUs reserved',
          );
          this.scheduleLending(c.donor);
          return { placed: true, reservation: res.reservation, verdicts };
        }
        if (res.code === 'ALREADY_EXISTS') {
          // The same pod placed concurrently by a retry: answer with that reservation.
          const winner = await this.store.findReservationByPod(req.pod.uid);
          if (winner) return this.retried(origin, winner);
          continue;
        }
        // The store saw the donor otherwise than the view: read it again.
        this.view.invalidate(c.donor);
        lost = res;
        const v = verdicts.find((x) => x.donor === c.donor && x.node === c.node && x.reason === '');
        if (v) v.reason = `${c.donor}/${c.node}: taken concurrently (${res.reason})`;
      }
    }
    return {
      placed: false,
      code: lost?.code ?? ErrorCode.NO_FIT,
      reason: `every node that fit ${req.gpus} ${req.resource} was taken by concurrent placements${lost ? `; last: ${lost.reason}` : ''}`,
      verdicts,
    };
  }

  private retried(origin: string, r: ReservationRecord): PlacementResult {
    if (r.origin !== origin) {
      throw new SpillwayError(
        ErrorCode.CONFLICT,
        `pod.uid: pod ${r.pod.uid} already has a reservation of another origin`,
        { field: 'pod.uid' },
      );
    }
    return { placed: true, reservation: r, verdicts: [] };
  }

  async simulate(origin: string, request: PlacementRequest): Promise<PlacementResult> {
    const req = await this.checkOrigin(origin, request);
    const snap = await this.snapshot(origin, req.donors);
    const result = evaluatePlacement(snap, req, req.policy ?? this.policy);
    const best = result.candidates[0];
    if (result.refusal || !best) {
      return {
        placed: false,
        code: result.refusal?.code ?? ErrorCode.NO_FIT,
        reason: result.refusal?.reason ?? 'no candidate',
        verdicts: result.verdicts,
      };
    }
    return {
      placed: true,
      simulated: true,
      verdicts: result.verdicts,
      reservation: {
        id: '',
        origin,
        donor: best.donor,
        node: best.node,
        resource: best.resource,
        gpus: best.gpus,
        pod: req.pod,
        state: 'open',
        createdAt: snap.now.toISOString(),
        expiresAt: new Date(snap.now.getTime() + this.reservationTtlMs).toISOString(),
      },
    };
  }

  async release(origin: string, reservationId: string, reason: string): Promise<boolean> {
    validateClusterId(origin, 'origin');
    if (typeof reservationId !== 'string' || reservationId === '') {
      throw invalid('reservationId', 'must not be empty');
    }
    const r = await this.store.getReservation(reservationId);
    if (!r) {
      throw new SpillwayError(
        ErrorCode.NOT_FOUND,
        `reservationId: reservation ${reservationId} not found`,
        {
          field: 'reservationId',
        },
      );
    }
    if (r.origin !== origin) {
      throw new SpillwayError(
        ErrorCode.PERMISSION_DENIED,
        `reservationId: reservation ${reservationId} belongs to another origin`,
        { field: 'reservationId' },
      );
    }
    const released = await this.store.release(
      reservationId,
      reason || 'released by origin',
      this.now(),
    );
    if (released) {
      this.view.noteReservation(released);
      this.log.info({ reservation: reservationId, origin, reason }, 'reservation released');
      this.scheduleLending(r.donor);
    }
    return released !== undefined;
  }

  async assertReservationLive(
    origin: string,
    donor: string,
    podUid: string,
    reservationId: string,
  ): Promise<ReservationRecord> {
    const r = await this.store.findReservationByPod(podUid);
    if (!r || r.id !== reservationId || r.origin !== origin || r.donor !== donor) {
      const was = r ? undefined : await this.store.getReservation(reservationId);
      throw new SpillwayError(
        ErrorCode.CONFLICT,
        `reservation_id: reservation ${reservationId} no longer holds GPUs on ${donor} for pod uid ${podUid}` +
          `${was ? ` (it is ${was.state}${was.reason ? `: ${was.reason}` : ''})` : ''}; place the pod again`,
        { field: 'reservation_id' },
      );
    }
    // The donor must create the pod and report it before the reservation lapses: it is
    // given a full TTL from now, however long the origin took to get here.
    if (r.state === 'open') {
      const extended = await this.store.extend(
        r.id,
        new Date(this.now().getTime() + this.reservationTtlMs),
      );
      if (extended) {
        this.view.noteReservation(extended);
        return extended;
      }
      // Bound or finished in between: read it again.
      return this.assertReservationLive(origin, donor, podUid, reservationId);
    }
    return r;
  }

  // -------------------------------------------------------------------------------------
  // Reporting

  async capacity(filter: CapacityFilter = {}): Promise<CapacitySummary> {
    const f = validateCapacityFilter(filter);
    await this.view.ready();
    const ids: string[] = [];
    for (const c of this.view.allClusters()) {
      if (c.role === 'origin' || c.revokedAt !== undefined || c.id === f.origin) continue;
      if (f.origin !== undefined) {
        const p = this.view.peering(f.origin, c.id);
        if (!p || p.deletingSince !== undefined) continue;
      }
      ids.push(c.id);
    }
    ids.sort(compareNames);
    const now = this.now();
    const rows: CapacityRow[] = [];
    for (const id of ids) {
      const cluster = this.view.cluster(id)!;
      const summary = this.view.summary(id);
      if (!summary) continue;
      const peering = f.origin === undefined ? undefined : this.view.peering(f.origin, id);
      let headroom = Infinity;
      if (f.origin !== undefined) {
        // An origin sees only what it could be given now.
        const state = clusterReadiness(
          cluster,
          this.view.connection(id, 'agent'),
          now,
          this.heartbeatTimeoutMs,
          this.view.inventory(id) !== undefined,
        ).state;
        if (state !== 'Ready' || cluster.policy.cordoned) continue;
        headroom = quotaHeadroom(cluster.policy, peering, f.origin, summary.usage);
      }
      for (const row of capacityRows(id, summary, f, peering)) {
        // Each row is clipped to the shared headroom on its own; see the report's notes.
        rows.push({
          ...row,
          free: Math.min(row.free, headroom),
          largestFreeOnNode: Math.min(row.largestFreeOnNode, headroom),
        });
      }
    }
    const totals = rows.reduce(
      (t, r) => ({ allocatable: t.allocatable + r.allocatable, free: t.free + r.free }),
      { allocatable: 0, free: 0 },
    );
    return { rows, totals };
  }

  async offloads(filter: OffloadFilter = {}): Promise<ReservationRecord[]> {
    if (filter.origin !== undefined) validateClusterId(filter.origin, 'origin');
    if (filter.donor !== undefined) validateClusterId(filter.donor, 'donor');
    return this.store.listReservations({
      ...(filter.origin === undefined ? {} : { origin: filter.origin }),
      ...(filter.donor === undefined ? {} : { donor: filter.donor }),
      ...(filter.states === undefined ? {} : { states: filter.states }),
    });
  }

  // -------------------------------------------------------------------------------------
  // Lending changes, debounced

  /** Re-evaluates what `donor` lends after a short pause; emits only what changed. */
  private scheduleLending(donor: string): void {
    if (this.stopped) return;
    this.pendingLending.add(donor);
    if (this.lendingTimer) return;
    this.lendingTimer = setTimeout(() => {
      this.lendingTimer = undefined;
      this.lendingRun = this.flushLending().finally(() => {
        this.lendingRun = undefined;
      });
    }, this.lendingDebounceMs);
    this.lendingTimer.unref();
  }

  private async flushLending(): Promise<void> {
    const donors = [...this.pendingLending];
    this.pendingLending.clear();
    try {
      const peerings = (
        await Promise.all(donors.map((d) => this.store.listPeerings({ donor: d })))
      ).flat();
      const views = await this.peeringViews(peerings);
      const changed = new Set<string>();
      for (const v of views) {
        const key = `${v.origin}/${v.donor}`;
        const sig = JSON.stringify([v.donorState, v.lendable, v.inUse, v.donorGpuProducts]);
        if (this.lendingSig.get(key) !== sig) {
          this.lendingSig.set(key, sig);
          // Only the origin uses what a donor lends it (its virtual node's capacity); the
          // donor hears of its own state changes when they happen (noteReadiness).
          changed.add(v.origin);
        }
      }
      this.emitPeerings(changed);
    } catch (err) {
      this.log.warn({ err, donors }, 'could not re-evaluate lending');
    }
  }

  /** Resolves once pending lending updates went out (tests, graceful shutdown). */
  async idle(): Promise<void> {
    if (this.lendingTimer) {
      clearTimeout(this.lendingTimer);
      this.lendingTimer = undefined;
      this.lendingRun = this.flushLending().finally(() => {
        this.lendingRun = undefined;
      });
    }
    await this.lendingRun;
  }

  // -------------------------------------------------------------------------------------
  // Reaper

  start(): void {
    if (this.reaperTimer) return;
    this.stopped = false;
    this.view.start().catch((err: unknown) => {
      this.log.warn({ err }, 'could not subscribe to other replicas; relying on re-reads');
    });
    const run = (): void => {
      if (this.tickRun) return;
      this.tickRun = this.tick().finally(() => {
        this.tickRun = undefined;
      });
    };
    this.reaperTimer = setInterval(run, this.reaperIntervalMs);
    this.reaperTimer.unref();
    run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.reaperTimer) clearInterval(this.reaperTimer);
    this.reaperTimer = undefined;
    if (this.lendingTimer) clearTimeout(this.lendingTimer);
    this.lendingTimer = undefined;
    this.pendingLending.clear();
    await Promise.allSettled([this.tickRun, this.lendingRun]);
    await this.view.stop();
  }

  /** One reaper pass: expire reservations, notice readiness flips, refresh revocations. */
  async tick(): Promise<void> {
    const now = this.now();
    try {
      const expired = await this.store.expire(now);
      for (const r of expired) {
        this.view.noteReservation(r);
        this.log.info({ reservation: r.id, donor: r.donor, node: r.node }, 'reservation expired');
        this.scheduleLending(r.donor);
      }
      await this.checkReadiness(now);
      if (performance.now() - this.revokedLoadedAt >= this.revocationRefreshMs)
        await this.refreshRevoked();
    } catch (err) {
      this.log.warn({ err }, 'reaper pass failed; retrying next tick');
    }
  }

  private async checkReadiness(now: Date): Promise<void> {
    await this.view.ready();
    // Heartbeats land on whichever replica holds the stream: re-read who was seen when.
    await this.view.refreshConnections();
    const flipped: string[] = [];
    for (const c of [...this.view.allClusters()]) {
      const agent = this.view.connection(c.id, 'agent');
      const hasInventory = this.view.inventory(c.id) !== undefined;
      const state = clusterReadiness(c, agent, now, this.heartbeatTimeoutMs, hasInventory).state;
      const before = this.readiness.get(c.id);
      this.readiness.set(c.id, state);
      if (before !== undefined && before !== state) {
        this.log.info({ clusterId: c.id, from: before, to: state }, 'cluster readiness changed');
        flipped.push(c.id);
      }
    }
    if (flipped.length === 0) return;
    const affected = new Set(flipped);
    for (const id of flipped) for (const p of await this.peersOf(id)) affected.add(p);
    this.emitPeerings(affected);
  }
}

/**
 * A donor's capacity rows for a filter and peering, from its summary. Kept on the summary:
 * recomputed only after the donor changed, so a query over a thousand donors is cheap.
 */
function capacityRows(
  id: string,
  summary: DonorSummary,
  f: ReturnType<typeof validateCapacityFilter>,
  peering: PeeringRecord | undefined,
): readonly CapacityRow[] {
  const key = JSON.stringify([
    'capacity',
    f.gpuProduct ?? null,
    f.minGpuMemoryMiB ?? null,
    f.resource ?? null,
    peering?.gpuProducts ?? null,
  ]);
  const cached = summary.derived.get(key) as CapacityRow[] | undefined;
  if (cached) return cached;
  const byKey = new Map<string, CapacityRow>();
  for (const { node, lendable, free: freeOf } of summary.nodes) {
    if (!lendable) continue;
    if (peering && !peeringLends(peering, node.gpuProduct)) continue;
    if (f.gpuProduct !== undefined && node.gpuProduct !== f.gpuProduct) continue;
    if (f.minGpuMemoryMiB !== undefined && node.gpuMemoryMiB < f.minGpuMemoryMiB) continue;
    for (const [resource, amount] of Object.entries(node.gpus)) {
      if (f.resource !== undefined && resource !== f.resource) continue;
      const rowKey = `${node.gpuProduct}\u0000${resource}`;
      let row = byKey.get(rowKey);
      if (!row) {
        row = {
          cluster: id,
          gpuProduct: node.gpuProduct,
          gpuMemoryMiB: node.gpuMemoryMiB,
          resource,
          allocatable: 0,
          free: 0,
          largestFreeOnNode: 0,
          nodes: 0,
        };
        byKey.set(rowKey, row);
      }
      const free = freeOf[resource] ?? 0;
      row.allocatable += amount.allocatable;
      row.free += free;
      row.largestFreeOnNode = Math.max(row.largestFreeOnNode, free);
      row.gpuMemoryMiB = Math.max(row.gpuMemoryMiB, node.gpuMemoryMiB);
      row.nodes++;
    }
  }
  const rows = [...byKey.values()].sort(
    (a, b) =>
      a.gpuProduct.localeCompare(b.gpuProduct, 'en') || a.resource.localeCompare(b.resource, 'en'),
  );
  summary.derived.set(key, rows);
  return rows;
}
