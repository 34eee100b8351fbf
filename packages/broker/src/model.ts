/**
 * The broker's domain model: what the store keeps and every part of the broker shares.
 * Plain data, JSON-serializable; times are RFC 3339 strings.
 */
import type {
  ClusterRole,
  Component,
  DonorPolicy,
  NodeInventory,
  PodRef,
  ReservationRecord,
  ReservationState,
} from '@spillway/api/rest';

// What the REST API answers with as stored is declared once, with the wire types.
export type {
  ClusterRole,
  Component,
  DonorPolicy,
  NodeInventory,
  PeeringRecord,
  PlacementPolicy,
  PodRef,
  PodSecurityLevel,
  ReservationRecord,
  ReservationState,
  ResourceAmount,
  Taint,
  UsageKey,
  UsageRecord,
} from '@spillway/api/rest';

export const DEFAULT_DONOR_POLICY: DonorPolicy = {
  maxGpus: 0,
  maxGpusPerOrigin: 0,
  nodeSelector: {},
  cordoned: false,
  costPerGpuHour: 1,
  podSecurity: 'baseline',
};

export interface ClusterRecord {
  id: string;
  role: ClusterRole;
  createdAt: string;
  /** Serial of the cluster's current certificate (lowercase hex). */
  certSerial?: string;
  certNotAfter?: string;
  /**
   * Serials of certificates a renewal replaced. They stay valid until the agent connects
   * with the current one, which confirms the renewal; then they are revoked.
   */
  supersededSerials?: string[];
  policy: DonorPolicy;
  /** Set when the cluster was removed: its certificates are revoked. */
  revokedAt?: string;
}

export interface JoinTokenRecord {
  /** Public part of the token, safe to list. */
  id: string;
  /** SHA-256 (hex) of the secret part; the secret itself is never stored. */
  secretHash: string;
  clusterId: string;
  role: ClusterRole;
  createdAt: string;
  expiresAt: string;
  usedAt?: string;
}

export interface ClusterInventory {
  clusterId: string;
  nodes: NodeInventory[];
  updatedAt: string;
  sequence: number;
}

export interface CapacityUpdate {
  full: boolean;
  nodes: NodeInventory[];
  removedNodes: string[];
  sequence: number;
}

/** A cluster's live connection, per component; shared by all broker replicas. */
export interface ConnectionRecord {
  clusterId: string;
  component: Component;
  brokerId: string;
  connectedAt: string;
  lastSeenAt: string;
}

export interface ReserveRequest {
  id: string;
  origin: string;
  donor: string;
  node: string;
  resource: string;
  gpus: number;
  pod: PodRef;
  ttlMs: number;
  /** Limits read by the placement engine; enforced atomically by the store. 0 = none. */
  peeringMaxGpus: number;
  donorMaxGpus: number;
  donorMaxGpusPerOrigin: number;
}

export type ReserveResult =
  | { ok: true; reservation: ReservationRecord }
  | {
      ok: false;
      /** NO_FIT: the node no longer has the GPUs; QUOTA_EXCEEDED: a limit would be passed. */
      code: 'NO_FIT' | 'QUOTA_EXCEEDED' | 'ALREADY_EXISTS';
      reason: string;
    };

export interface ReservationFilter {
  origin?: string;
  donor?: string;
  states?: readonly ReservationState[];
}

export type { ApiTokenRecord } from '@spillway/common';

/**
 * A gang's reservations, all of one origin on one donor (each member on one node of it):
 * reserved together in one atomic step, or none of them. A member may ask for 0 GPUs
 * (a Ray head, a launcher): it is given a node all the same.
 */
export interface GangReserveRequest {
  gang: string;
  members: ReserveRequest[];
}

export type GangReserveResult =
  | { ok: true; reservations: ReservationRecord[] }
  | {
      ok: false;
      code: 'NO_FIT' | 'QUOTA_EXCEEDED' | 'ALREADY_EXISTS';
      reason: string;
      /** Index of the member that did not fit; -1 when the gang as a whole passed a limit. */
      member: number;
    };
