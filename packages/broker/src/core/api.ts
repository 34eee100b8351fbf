import type { EventEmitter } from 'node:events';
import type {
  ApiTokenCreated,
  ApiTokenRequest,
  ApiTokenView,
  CapacitySummary,
  ClusterDetail,
  ClusterView,
  IssuedJoinToken,
  LabelOperator,
  PeeringView,
  GangPlacementResult,
  PlacementResult,
  TolerationOperator,
  UsageQuery,
  UsageReport,
} from '@spillway/api/rest';
import type {
  ClusterInventory,
  ClusterRecord,
  ClusterRole,
  Component,
  DonorPolicy,
  NodeInventory,
  PeeringRecord,
  PlacementPolicy,
  PodRef,
  ReservationRecord,
  ReservationState,
  Taint,
} from '../model.js';

// What REST callers see is declared once, with the wire types.
export type {
  CandidateVerdict,
  CapacityRow,
  CapacitySummary,
  ClusterDetail,
  ClusterState,
  ClusterView,
  GangPlacementResult,
  IssuedJoinToken,
  PeeringView,
  PlacementResult,
  UsageQuery,
  UsageReport,
} from '@spillway/api/rest';

/**
 * The broker's core: every rule about clusters, peerings, inventory and placement lives
 * behind this interface; the gRPC and REST layers only translate and authorize.
 * All methods throw SpillwayError with a stable code and a message naming what was wrong.
 */

export interface ClusterPatch {
  cordoned?: boolean;
  policy?: Partial<DonorPolicy>;
}

export interface JoinTokenInput {
  clusterId: string;
  role: ClusterRole;
  /** Default 15 minutes; at most 24 hours. */
  ttlMs?: number;
}

export interface JoinResult {
  clusterId: string;
  certificatePem: string;
  caPem: string;
  notAfter: string;
}

export interface PeeringInput {
  origin: string;
  donor: string;
  maxGpus?: number;
  gpuProducts?: string[];
}

export interface LabelRequirement {
  key: string;
  operator: LabelOperator;
  values: string[];
}

export interface Toleration {
  key: string;
  operator: TolerationOperator;
  value: string;
  effect: string;
}

export interface PlacementRequest {
  pod: PodRef;
  resource: string;
  gpus: number;
  nodeRequirements: LabelRequirement[];
  tolerations: Toleration[];
  cpuMillis: number;
  memoryBytes: number;
  /** Restrict to these donors; empty for all peered donors. */
  donors: string[];
  policy?: PlacementPolicy;
}

/** Pods placed together on one donor, or not at all. */
export interface GangPlacementRequest {
  gang: string;
  /** Each member's own ask; gpus may be 0 for a member that only goes with the gang. */
  members: PlacementRequest[];
  /** Restrict to these donors; empty for all peered donors. */
  donors: string[];
  policy?: PlacementPolicy;
}

export interface CapacityFilter {
  gpuProduct?: string;
  minGpuMemoryMiB?: number;
  /** Only donors peered with this origin, counted within the peering's limits. */
  origin?: string;
  resource?: string;
}

/** What a cluster's streams are told: its peerings as origin and as donor. */
export interface PeeringState {
  asOrigin: PeeringView[];
  asDonor: PeeringView[];
}

export interface PodStatusReport {
  pod: PodRef;
  remoteNamespace: string;
  remoteName: string;
  nodeName: string;
  /** Phase from the donor pod's status. */
  phase: string;
  deleted: boolean;
}

export interface OffloadFilter {
  origin?: string;
  donor?: string;
  states?: ReservationState[];
}

export type {
  ApiTokenCreated,
  ApiTokenRequest as ApiTokenInput,
  ApiTokenView,
} from '@spillway/api/rest';

/** Events the core emits so the stream layer can push state to clusters. */
export interface CoreEvents {
  /** These clusters' PeeringState changed (peering added/removed, donor state or lending changed). */
  peeringsChanged: [clusterIds: string[]];
  /** A cluster was revoked: drop its streams. */
  clusterRevoked: [clusterId: string];
}

export interface BrokerCore {
  readonly brokerId: string;
  readonly events: EventEmitter<CoreEvents>;

  createJoinToken(input: JoinTokenInput): Promise<IssuedJoinToken>;
  join(token: string, csrPem: string): Promise<JoinResult>;
  renew(clusterId: string, csrPem: string): Promise<JoinResult>;
  /** True if the serial is revoked or its cluster removed; cached, cheap per call. */
  isRevoked(serial: string): Promise<boolean>;

  /** REST API tokens (their secrets are shown once, on creation). */
  listApiTokens(): Promise<ApiTokenView[]>;
  createApiToken(input: ApiTokenRequest): Promise<ApiTokenCreated>;
  /** NOT_FOUND (field id) when there is no such token. */
  deleteApiToken(id: string): Promise<void>;

  listClusters(): Promise<ClusterView[]>;
  getCluster(id: string): Promise<ClusterDetail>;
  patchCluster(id: string, patch: ClusterPatch): Promise<ClusterView>;
  /**
   * Revokes the cluster's certificate, drops its peerings, inventory and streams. The record
   * stays, marked revokedAt (state Revoked); a new join token for the same ID re-admits it.
   */
  removeCluster(id: string): Promise<void>;
  getClusterRecord(id: string): Promise<ClusterRecord | undefined>;

  /**
   * Stream lifecycle, called by the gRPC layer. An agent stream on the cluster's current
   * certificate (`certSerial`) confirms a renewal: the certificates it replaced are revoked.
   */
  connected(clusterId: string, component: Component, certSerial?: string): Promise<void>;
  heartbeat(clusterId: string, component: Component): Promise<void>;
  disconnected(clusterId: string, component: Component): Promise<void>;
  applyCapacity(
    clusterId: string,
    update: { full: boolean; nodes: NodeInventory[]; removedNodes: string[]; sequence: number },
  ): Promise<void>;
  getInventory(clusterId: string): Promise<ClusterInventory | undefined>;
  podStatus(donor: string, report: PodStatusReport): Promise<void>;

  /** Creating an existing peering updates its limits and products, keeping createdAt. */
  createPeering(input: PeeringInput): Promise<PeeringView>;
  listPeerings(filter?: { origin?: string; donor?: string }): Promise<PeeringView[]>;
  deletePeering(origin: string, donor: string): Promise<void>;
  /**
   * Marks a peering as draining (deletingSince): no new placements, running pods stay, and
   * agent and shim are told (donor refuses new pods, the virtual node is cordoned).
   * Idempotent; creating the peering again ends the drain. `spillctl unpeer --drain`.
   */
  drainPeering(origin: string, donor: string): Promise<PeeringView>;
  peeringState(clusterId: string): Promise<PeeringState>;
  /**
   * Throws NO_PEERING unless origin is peered with donor. A draining peering counts only
   * with `allowDraining`: its running pods still report status and can be deleted.
   */
  assertPeered(
    origin: string,
    donor: string,
    opts?: { allowDraining?: boolean },
  ): Promise<PeeringRecord>;

  /** Reserves GPUs on the best node; a pod uid with a live reservation gets that one back. */
  place(origin: string, request: PlacementRequest): Promise<PlacementResult>;
  /** place() without reserving: `simulated: true` and an empty reservation id. */
  simulate(origin: string, request: PlacementRequest): Promise<PlacementResult>;
  /**
   * Reserves every member of a gang on one donor (each on one of its nodes) in one atomic
   * store step, or none. Members that hold a live reservation already keep it; the rest go
   * to the same donor. Refused with the reason: the largest free donor and what it lacks.
   */
  placeGang(origin: string, request: GangPlacementRequest): Promise<GangPlacementResult>;
  /** placeGang() without reserving: `simulated: true`, empty reservation ids. */
  simulateGang(origin: string, request: GangPlacementRequest): Promise<GangPlacementResult>;
  /** Only the reservation's origin may release it. */
  release(origin: string, reservationId: string, reason: string): Promise<boolean>;
  /**
   * Throws CONFLICT (field reservation_id) unless the reservation is live (open or bound) and
   * holds GPUs of `donor` for this origin's pod: a pod is never created on GPUs that an
   * expired or released reservation no longer holds, and that may be promised again. An open
   * one is extended by a full TTL: the donor gets that long to report the pod.
   */
  assertReservationLive(
    origin: string,
    donor: string,
    podUid: string,
    reservationId: string,
  ): Promise<ReservationRecord>;

  capacity(filter?: CapacityFilter): Promise<CapacitySummary>;
  offloads(filter?: OffloadFilter): Promise<ReservationRecord[]>;
  /**
   * GPU-seconds from the usage ledger within [from, to), grouped by the `by` keys; running
   * pods count up to now. INVALID_ARGUMENT names a bad from, to or by.
   */
  usage(query?: UsageQuery): Promise<UsageReport>;

  /** Starts the reaper (reservation expiry, heartbeat timeouts). */
  start(): void;
  stop(): Promise<void>;
}

export type { Taint };
