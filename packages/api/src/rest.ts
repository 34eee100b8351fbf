/**
 * The broker's REST API (/api/v1) on the wire: the request and response bodies the broker
 * serves and spillctl (or any other client) reads. Plain JSON; times are RFC 3339 strings.
 *
 * Several of these are also the broker's domain model (it re-exports them from its
 * model): the API answers with clusters, peerings and reservations as the store keeps
 * them. A client needs only this file's types, never the broker package.
 */
import type { ApiRole, ApiTokenRecord } from '@spillway/common';

export type { ApiRole };

// ---------------------------------------------------------------------------------------
// Shared shapes

export type ClusterRole = 'origin' | 'donor' | 'both';
/** The two long-lived streams a cluster may hold to the broker. */
export type Component = 'agent' | 'virtual-node';
export type PodSecurityLevel = 'restricted' | 'baseline';
export type PlacementPolicy = 'binpack' | 'spread' | 'cost';
export type LabelOperator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist' | 'Gt' | 'Lt';
export type TolerationOperator = 'Exists' | 'Equal';

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

// ---------------------------------------------------------------------------------------
// Clusters: GET/PATCH/DELETE /clusters[/{id}], POST /join-tokens

/**
 * Unknown: right after a restart of a single broker (SQLite), a cluster whose stream this
 * process does not hold yet, until it reconnects or the heartbeat timeout passes.
 */
export type ClusterState = 'Pending' | 'Ready' | 'NotReady' | 'Unknown' | 'Revoked';

export interface ClusterView {
  id: string;
  role: ClusterRole;
  state: ClusterState;
  createdAt: string;
  lastSeenAt?: string;
  /** Replica holding each component's stream. */
  connections: Partial<
    Record<Component, { brokerId: string; connectedAt: string; lastSeenAt: string }>
  >;
  policy: DonorPolicy;
  certNotAfter?: string;
  /** Sum over eligible nodes, by resource name. */
  gpus: Record<string, { allocatable: number; free: number }>;
  nodeCount: number;
}

/** GET /clusters/{id}. */
export interface ClusterDetail extends ClusterView {
  nodes: (NodeInventory & { eligible: boolean; reason?: string })[];
  peerings: PeeringRecord[];
}

/** GET /clusters. */
export interface ClusterList {
  clusters: ClusterView[];
}

/** PATCH /clusters/{id}: only the fields given change; at least one. */
export interface PatchClusterRequest {
  cordoned?: boolean;
  maxGpus?: number;
  maxGpusPerOrigin?: number;
  nodeSelector?: Record<string, string>;
  costPerGpuHour?: number;
  podSecurity?: PodSecurityLevel;
}

/** POST /join-tokens. */
export interface JoinTokenRequest {
  clusterId: string;
  role: ClusterRole;
  /** A duration such as 15m (the default); 1m..24h. */
  ttl?: string;
}

/** POST /join-tokens answers 201 with this. */
export interface IssuedJoinToken {
  /** `<id>.<secret>`; shown once. */
  token: string;
  id: string;
  clusterId: string;
  role: ClusterRole;
  expiresAt: string;
}

// ---------------------------------------------------------------------------------------
// Capacity: GET /capacity

/** Query values are strings on the wire. */
export interface CapacityQuery {
  gpuProduct?: string;
  /** An integer, as a string. */
  minGpuMemoryMiB?: string;
  /** Only donors peered with this origin, counted within the peering's limits. */
  origin?: string;
  resource?: string;
}

export interface CapacityRow {
  cluster: string;
  gpuProduct: string;
  gpuMemoryMiB: number;
  resource: string;
  allocatable: number;
  free: number;
  /** Free GPUs on the single emptiest node: the largest pod that fits. */
  largestFreeOnNode: number;
  nodes: number;
}

export interface CapacitySummary {
  rows: CapacityRow[];
  totals: { allocatable: number; free: number };
}

// ---------------------------------------------------------------------------------------
// Peerings: GET/POST /peerings, DELETE /peerings/{origin}/{donor}, POST .../drain

export interface PeeringQuery {
  origin?: string;
  donor?: string;
}

/** POST /peerings: creating an existing peering updates its limits and products. */
export interface PeeringRequest {
  origin: string;
  donor: string;
  maxGpus?: number;
  gpuProducts?: string[];
}

export interface PeeringView extends PeeringRecord {
  donorState: ClusterState | 'Cordoned';
  /** GPUs the donor lends this origin right now, by resource. */
  lendable: Record<string, number>;
  inUse: Record<string, number>;
  donorGpuProducts: string[];
  tenantNamespace: string;
  podSecurity: string;
}

/** GET /peerings. */
export interface PeeringList {
  peerings: PeeringView[];
}

// ---------------------------------------------------------------------------------------
// Offloads: GET /offloads

export interface OffloadsQuery {
  origin?: string;
  donor?: string;
  /** Comma-separated ReservationStates, e.g. `open,bound`. */
  state?: string;
}

export interface OffloadList {
  offloads: ReservationRecord[];
}

// ---------------------------------------------------------------------------------------
// Placement simulation: POST /placements:simulate

/** A hypothetical GPU pod of `origin`: where would it go, and why not elsewhere. */
export interface SimulateRequest {
  origin: string;
  /** One pod's GPUs; or `members` for a gang. */
  gpus?: number;
  /**
   * A gang instead of one pod: where would all of these go together (one donor, each member
   * on one of its nodes). The top-level resource, selector, requirements, tolerations apply
   * to every member; a member may ask for 0 GPUs.
   */
  members?: SimulateMember[];
  /** The gang's name, for messages. */
  gang?: string;
  /** Default nvidia.com/gpu. */
  resource?: string;
  nodeSelector?: Record<string, string>;
  requirements?: { key: string; operator: LabelOperator; values?: string[] }[];
  tolerations?: {
    key?: string;
    operator?: TolerationOperator;
    value?: string;
    effect?: string;
  }[];
  cpuMillis?: number;
  memoryBytes?: number;
  /** Consider only these donors; empty or absent for every peered donor. */
  donors?: string[];
  policy?: PlacementPolicy;
  namespace?: string;
}

export interface SimulateMember {
  gpus: number;
  cpuMillis?: number;
  memoryBytes?: number;
}

export interface CandidateVerdict {
  donor: string;
  node: string;
  /** Empty for the chosen candidate and for feasible ones not chosen. */
  reason: string;
  score: number;
}

export type PlacementResult =
  | {
      placed: true;
      reservation: ReservationRecord;
      verdicts: CandidateVerdict[];
      /** simulate(): nothing was reserved; the reservation has an empty id. */
      simulated?: boolean;
    }
  | {
      placed: false;
      /** NO_PEERING, NO_FIT, QUOTA_EXCEEDED, DONOR_NOT_READY. */
      code: string;
      reason: string;
      verdicts: CandidateVerdict[];
    };

// ---------------------------------------------------------------------------------------
// REST API tokens: GET/POST /api-tokens, DELETE /api-tokens/{id}

/** A token as listed: never its secret, nor the secret's hash. */
export type ApiTokenView = Omit<ApiTokenRecord, 'secretHash'>;

export interface ApiTokenList {
  tokens: ApiTokenView[];
}

export interface ApiTokenRequest {
  role: ApiRole;
  description?: string;
}

/** POST /api-tokens answers 201 with this; `token` (`<id>.<secret>`) is shown once. */
export interface ApiTokenCreated extends ApiTokenView {
  token: string;
}

// ---------------------------------------------------------------------------------------
// Errors and health

/** Every non-2xx answer: `code` is one of @spillway/common's ErrorCodes. */
export interface ErrorBody {
  error: {
    code: string;
    message: string;
    /** The request field that was wrong, when one was. */
    field?: string;
  };
}

/** GET /healthz. */
export interface HealthResponse {
  status: 'ok';
}

/** GET /readyz: 200 when the store answers, 503 otherwise. */
export type ReadyResponse =
  { status: 'ready'; store: string } | { status: 'unavailable'; store: string; reason: string };

// ---------------------------------------------------------------------------------------
// Gangs: pods placed together on one donor, or not at all (gRPC PlaceGang, REST simulate)

export type GangPlacementResult =
  | {
      placed: true;
      gang: string;
      donor: string;
      /** One per member, in the order the members were given. */
      reservations: ReservationRecord[];
      /** One per donor considered: empty reason for those that could hold the gang. */
      verdicts: CandidateVerdict[];
      /** simulate: nothing was reserved; the reservations have empty ids. */
      simulated?: boolean;
    }
  | {
      placed: false;
      gang: string;
      /** NO_PEERING, NO_FIT, QUOTA_EXCEEDED, DONOR_NOT_READY. */
      code: string;
      /** Why no donor holds the whole gang, e.g. the largest free donor and what it lacks. */
      reason: string;
      verdicts: CandidateVerdict[];
    };

// Usage ledger: GET /usage

/** What usage can be grouped by: the ledger's keys. */
export type UsageKey = 'origin' | 'namespace' | 'donor' | 'product' | 'resource';

/** The keys in the order rows and CSV columns show them. */
export const USAGE_KEYS: readonly UsageKey[] = [
  'origin',
  'namespace',
  'donor',
  'product',
  'resource',
];

/**
 * One offloaded pod in the ledger: its GPUs from the moment the donor reported it bound
 * (`start`) to its end (`end`, absent while it runs). Keyed by its reservation; kept after
 * the reservation itself is pruned.
 */
export interface UsageRecord {
  reservation: string;
  origin: string;
  namespace: string;
  pod: string;
  donor: string;
  node: string;
  /** The donor node's nvidia.com/gpu.product when the pod was bound ('' if unknown). */
  product: string;
  resource: string;
  gpus: number;
  start: string;
  end?: string;
}

/** Query values are strings on the wire. */
export interface UsageQuery {
  /** RFC 3339; default: the start of the ledger. */
  from?: string;
  /** RFC 3339; default: now. Running pods count up to `to` (or now, if earlier). */
  to?: string;
  /** Comma-separated UsageKeys, e.g. `origin,donor`; empty for one total row. */
  by?: string;
  /**
   * A duration (1h, 6h, 1d): split the window into buckets this long from `from`, one row
   * per group and bucket, each with its bucket's `start`. At most 1000 buckets.
   */
  step?: string;
  /** `csv` answers text/csv (as does Accept: text/csv); default JSON. */
  format?: 'json' | 'csv';
}

export interface UsageRow {
  /** With `step`: the start of this row's bucket. */
  start?: string;
  origin?: string;
  namespace?: string;
  donor?: string;
  product?: string;
  resource?: string;
  /** GPU-seconds within [from, to). */
  gpuSeconds: number;
  gpuHours: number;
  /** Pods that used GPUs within [from, to). */
  pods: number;
}

export interface UsageReport {
  from: string;
  to: string;
  by: UsageKey[];
  /** The bucket length asked for, in milliseconds; absent without `step`. */
  stepMs?: number;
  rows: UsageRow[];
  total: { gpuSeconds: number; gpuHours: number; pods: number };
}

/**
 * A usage report as CSV (RFC 4180, CRLF): the bucket start (with `step`), the `by` keys,
 * then gpuSeconds, gpuHours, pods.
 * What GET /usage?format=csv answers and `spillctl get usage -o csv` prints.
 */
export function usageCsv(report: UsageReport): string {
  const cell = (v: string | number): string => {
    const s = String(v);
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const bucketed = report.stepMs !== undefined;
  const lines = [
    [...(bucketed ? ['start'] : []), ...report.by, 'gpuSeconds', 'gpuHours', 'pods'].join(','),
  ];
  for (const r of report.rows) {
    lines.push(
      [
        ...(bucketed ? [r.start ?? ''] : []),
        ...report.by.map((k) => r[k] ?? ''),
        r.gpuSeconds,
        r.gpuHours,
        r.pods,
      ]
        .map(cell)
        .join(','),
    );
  }
  return `${lines.join('\r\n')}\r\n`;
}
