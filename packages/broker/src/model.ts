/**
 * The broker's domain model: what the store keeps and every part of the broker shares.
 * Plain data, JSON-serializable; times are RFC 3339 strings.
 */

export type ClusterRole = 'origin' | 'donor' | 'both';
export type Component = 'agent' | 'virtual-node';
export type PodSecurityLevel = 'restricted' | 'baseline';
export type PlacementPolicy = 'binpack' | 'spread' | 'cost';

export interface PodRef {
  originCluster: string;
  namespace: string;
  name: string;
  uid: string;
}

/** What a donor agrees to lend, set by the broker's admin (PATCH /clusters/{id}). */
export interface DonorPolicy {
  /** GPUs lent to all origins together; 0 means no limit. */
  maxGpus: number;
  /** GPUs lent to any one origin; 0 means no limit. */
  maxGpusPerOrigin: number;
  /** Only nodes with all these labels are lent. */
  nodeSelector: Record<string, string>;
  /** A cordoned donor takes no new placements; running pods stay. */
  cordoned: boolean;
  /** Price used by the `cost` placement policy. */
  costPerGpuHour: number;
  podSecurity: PodSecurityLevel;
}

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

export interface PeeringRecord {
  origin: string;
  donor: string;
  /** 0 means no limit beyond the donor's policy. */
  maxGpus: number;
  /** When non-empty, only these GPU products (nvidia.com/gpu.product) are lent. */
  gpuProducts: string[];
  createdAt: string;
  /** Set while the peering is being removed (drain). */
  deletingSince?: string;
}

export interface ResourceAmount {
  allocatable: number;
  free: number;
}

export interface Taint {
  key: string;
  value: string;
  effect: string;
}

export interface NodeInventory {
  name: string;
  gpus: Record<string, ResourceAmount>;
  gpuProduct: string;
  gpuMemoryMiB: number;
  labels: Record<string, string>;
  taints: Taint[];
  ready: boolean;
  cordoned: boolean;
  cpuAllocatableMillis: number;
  cpuFreeMillis: number;
  memoryAllocatableBytes: number;
  memoryFreeBytes: number;
  /** Origin pod uids already counted in `free` on this node. */
  offloadedPodUids: string[];
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

/**
 * open: GPUs promised, the pod not yet seen on the donor; expires at `expiresAt`.
 * bound: the donor reports the pod on the node; counts against quotas until it ends.
 * released / expired / ended: finished; kept for GET /offloads history for a while.
 */
export type ReservationState = 'open' | 'bound' | 'released' | 'expired' | 'ended';

export interface ReservationRecord {
  id: string;
  origin: string;
  donor: string;
  node: string;
  resource: string;
  gpus: number;
  pod: PodRef;
  state: ReservationState;
  createdAt: string;
  expiresAt: string;
  boundAt?: string;
  endedAt?: string;
  /** Why it was released / ended. */
  reason?: string;
  /** Last remote pod phase reported by the donor. */
  remotePhase?: string;
  remoteNamespace?: string;
  remoteName?: string;
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
  states?: ReservationState[];
}

export interface ApiTokenRecord {
  id: string;
  secretHash: string;
  role: 'admin' | 'viewer';
  description: string;
  createdAt: string;
}
