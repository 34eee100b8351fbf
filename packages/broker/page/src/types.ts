// The parts of the REST API's JSON the page reads (see docs/reference/rest.md). Kept here,
// not imported: the page is compiled for the browser and ships none of the server's code.

/**
 * Unknown: right after a restart of a single broker (SQLite), a cluster whose stream this
 * process does not hold yet, until it reconnects or the heartbeat timeout passes.
 */
export type ClusterState = 'Pending' | 'Ready' | 'NotReady' | 'Unknown' | 'Revoked';

export interface ClusterView {
  id: string;
  role: 'origin' | 'donor' | 'both';
  state: ClusterState;
  policy: { cordoned: boolean; maxGpus: number; maxGpusPerOrigin: number };
  nodeCount: number;
}

export interface NodeDetail {
  name: string;
  gpus: Record<string, { allocatable: number; free: number }>;
  gpuProduct: string;
  gpuMemoryMiB: number;
  ready: boolean;
  cordoned: boolean;
  offloadedPodUids: string[];
  eligible: boolean;
  reason?: string;
}

export interface ClusterDetail extends ClusterView {
  nodes: NodeDetail[];
}

export type ReservationState = 'open' | 'bound' | 'released' | 'expired' | 'ended';

export interface Offload {
  id: string;
  origin: string;
  donor: string;
  node: string;
  resource: string;
  gpus: number;
  pod: { originCluster: string; namespace: string; name: string; uid: string };
  state: ReservationState;
  createdAt: string;
  expiresAt: string;
  boundAt?: string;
  endedAt?: string;
  reason?: string;
  remotePhase?: string;
}

export interface Peering {
  origin: string;
  donor: string;
  maxGpus: number;
  gpuProducts: string[];
  createdAt: string;
  deletingSince?: string;
  donorState: ClusterState | 'Cordoned';
  lendable: Record<string, number>;
  inUse: Record<string, number>;
  tenantNamespace: string;
}

export interface Verdict {
  donor: string;
  node: string;
  reason: string;
  score: number;
}

export type SimulateResult =
  | {
      placed: true;
      reservation: { donor: string; node: string; gpus: number };
      verdicts: Verdict[];
    }
  | { placed: false; code: string; reason: string; verdicts: Verdict[] };
