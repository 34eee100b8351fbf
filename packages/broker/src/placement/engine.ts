import { formatBytes, formatDuration } from '@spillway/common';
import type {
  CandidateVerdict,
  ClusterState,
  LabelRequirement,
  PlacementRequest,
  Toleration,
} from '../core/api.js';
import type {
  ClusterInventory,
  ClusterRecord,
  ConnectionRecord,
  DonorPolicy,
  NodeInventory,
  PeeringRecord,
  PlacementPolicy,
  ReservationRecord,
  Taint,
} from '../model.js';
import { isLive, unreportedClaims, type NodeClaim } from '../store/internal.js';

/**
 * The placement engine: pure functions over a snapshot of the store. It filters donors and
 * nodes, scores what fits, and explains every rejection. The store's reserve() re-checks
 * the winning candidate atomically, so a stale snapshot can cost a retry but never a GPU
 * promised twice.
 */

/** Labels GPU Feature Discovery puts on nodes; derived from the report when absent. */
export const GPU_PRODUCT_LABEL = 'nvidia.com/gpu.product';
export const GPU_MEMORY_LABEL = 'nvidia.com/gpu.memory';

export interface DonorSnapshot {
  cluster: ClusterRecord;
  /** The peering of the snapshot's origin with this donor, if any. */
  peering?: PeeringRecord | undefined;
  /** The donor agent's connection, if it ever connected. */
  agent?: ConnectionRecord | undefined;
  inventory?: ClusterInventory | undefined;
  /** Live (open or bound) reservations on this donor, of every origin. */
  reservations: ReservationRecord[];
}

export interface PlacementSnapshot {
  origin: string;
  now: Date;
  heartbeatTimeoutMs: number;
  donors: DonorSnapshot[];
}

export type RefusalCode = 'NO_PEERING' | 'DONOR_NOT_READY' | 'QUOTA_EXCEEDED' | 'NO_FIT';

export interface Candidate {
  donor: string;
  node: string;
  resource: string;
  gpus: number;
  /** The policy's primary criterion, higher is better (see compareCandidates). */
  score: number;
  freeBefore: number;
  freeAfter: number;
  costPerGpuHour: number;
  /** Limits the store enforces atomically in reserve(); 0 = none. */
  peeringMaxGpus: number;
  donorMaxGpus: number;
  donorMaxGpusPerOrigin: number;
}

export interface EngineResult {
  /** Best first. */
  candidates: Candidate[];
  verdicts: CandidateVerdict[];
  refusal?: { code: RefusalCode; reason: string };
}

// ---------------------------------------------------------------------------------------
// Readiness

export interface Readiness {
  state: ClusterState;
  /** Human explanation for anything but Ready, e.g. "NotReady (no heartbeat for 20s)". */
  reason: string;
}

/** Ready = the agent was heard from within the heartbeat timeout. */
export function clusterReadiness(
  cluster: ClusterRecord,
  agent: ConnectionRecord | undefined,
  now: Date,
  heartbeatTimeoutMs: number,
  /** The cluster reported capacity before, so a missing connection means it went away. */
  everConnected = false,
): Readiness {
  if (cluster.revokedAt !== undefined) return { state: 'Revoked', reason: 'Revoked' };
  if (!agent) {
    return everConnected
      ? { state: 'NotReady', reason: 'NotReady (agent disconnected)' }
      : { state: 'Pending', reason: 'Pending (agent never connected)' };
  }
  const silentMs = now.getTime() - Date.parse(agent.lastSeenAt);
  if (!(silentMs <= heartbeatTimeoutMs)) {
    return { state: 'NotReady', reason: `NotReady (no heartbeat for ${formatDuration(silentMs)})` };
  }
  return { state: 'Ready', reason: '' };
}

// ---------------------------------------------------------------------------------------
// Node matching

/** The node's labels plus GFD product/memory labels derived from its report. */
export function nodeLabels(node: NodeInventory): Record<string, string> {
  // Inventory nodes are replaced, never mutated, so the derived labels can be kept per object.
  const cached = derivedLabels.get(node);
  if (cached) return cached;
  const labels = { ...node.labels };
  if (labels[GPU_PRODUCT_LABEL] === undefined && node.gpuProduct !== '') {
    labels[GPU_PRODUCT_LABEL] = node.gpuProduct;
  }
  if (labels[GPU_MEMORY_LABEL] === undefined && node.gpuMemoryMiB > 0) {
    labels[GPU_MEMORY_LABEL] = String(node.gpuMemoryMiB);
  }
  derivedLabels.set(node, labels);
  return labels;
}

const derivedLabels = new WeakMap<NodeInventory, Record<string, string>>();

/** Code-unit order: deterministic, and cheap enough to run for every node of every donor. */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function describeRequirement(r: LabelRequirement): string {
  switch (r.operator) {
    case 'Exists':
    case 'DoesNotExist':
      return r.operator;
    case 'Gt':
    case 'Lt':
      return `${r.operator} ${r.values[0] ?? ''}`;
    default:
      return `${r.operator} [${r.values.join(', ')}]`;
  }
}

/** Undefined when the labels satisfy the requirement, else why not. */
export function requirementMismatch(
  labels: Record<string, string>,
  r: LabelRequirement,
): string | undefined {
  const value = labels[r.key];
  const has = value !== undefined;
  let ok: boolean;
  switch (r.operator) {
    case 'In':
      ok = has && r.values.includes(value);
      break;
    case 'NotIn':
      ok = !has || !r.values.includes(value);
      break;
    case 'Exists':
      ok = has;
      break;
    case 'DoesNotExist':
      ok = !has;
      break;
    case 'Gt':
    case 'Lt': {
      // Like the scheduler: both sides must be integers, otherwise the node does not match.
      const bound = Number(r.values[0]);
      const n = has && /^-?\d+$/.test(value) ? Number(value) : NaN;
      ok =
        Number.isInteger(bound) &&
        !Number.isNaN(n) &&
        (r.operator === 'Gt' ? n > bound : n < bound);
      break;
    }
    default:
      ok = false;
  }
  if (ok) return undefined;
  const actual = has ? `is ${JSON.stringify(value)}` : 'is not set';
  return `label ${r.key} ${actual}, pod needs ${describeRequirement(r)}`;
}

export function tolerates(taint: Taint, tolerations: readonly Toleration[]): boolean {
  return tolerations.some(
    (t) =>
      (t.effect === '' || t.effect === taint.effect) &&
      ((t.key === '' && t.operator === 'Exists') ||
        (t.key === taint.key && (t.operator === 'Exists' || t.value === taint.value))),
  );
}

/**
 * GPUs of `resource` free on the node for placement: its report minus the open reservations
 * the report does not show yet, never below 0. Whether the node is lent at all (ready,
 * uncordoned, selected) is nodeLendable's question; the store's own rule at reserve() time
 * is reservableGpus.
 */
export function effectiveFree(
  node: NodeInventory,
  resource: string,
  reservations: readonly NodeClaim[],
): number {
  return Math.max(
    0,
    (node.gpus[resource]?.free ?? 0) - unreportedClaims(node, resource, reservations),
  );
}

/**
 * Whether the donor lends this node at all (to this origin, when a peering is given):
 * ready, not cordoned, selected by the donor policy, of a product the peering allows.
 */
export function nodeLendable(
  node: NodeInventory,
  policy: DonorPolicy,
  peering?: PeeringRecord,
): string | undefined {
  if (!node.ready) return 'node NotReady';
  if (node.cordoned) return 'node cordoned';
  const labels = nodeLabels(node);
  for (const [k, v] of Object.entries(policy.nodeSelector)) {
    if (labels[k] !== v) return `not lent by the donor policy (needs ${k}=${v})`;
  }
  if (peering && !peeringLends(peering, node.gpuProduct)) {
    const product = node.gpuProduct === '' ? 'unknown product' : `product ${node.gpuProduct}`;
    return `${product} not lent to ${peering.origin} (peering allows ${peering.gpuProducts.join(', ')})`;
  }
  return undefined;
}

/** Whether the peering lends nodes of this product (no product list: every product). */
export function peeringLends(peering: PeeringRecord, gpuProduct: string): boolean {
  return peering.gpuProducts.length === 0 || peering.gpuProducts.includes(gpuProduct);
}

/** Why the pod does not fit on a lendable node, or undefined when it does. */
export function podMisfit(
  node: NodeInventory,
  request: PlacementRequest,
  free: number,
): string | undefined {
  const labels = nodeLabels(node);
  for (const r of request.nodeRequirements) {
    const why = requirementMismatch(labels, r);
    if (why) return why;
  }
  for (const t of node.taints) {
    if (
      (t.effect === 'NoSchedule' || t.effect === 'NoExecute') &&
      !tolerates(t, request.tolerations)
    ) {
      return `untolerated taint ${t.key}${t.value === '' ? '' : `=${t.value}`}:${t.effect}`;
    }
  }
  if (node.gpus[request.resource] === undefined) return `has no ${request.resource}`;
  if (free < request.gpus) return `${free} ${request.resource} free, ${request.gpus} requested`;
  // A node reporting no allocatable CPU/memory did not report it; only reported amounts bind.
  if (node.cpuAllocatableMillis > 0 && node.cpuFreeMillis < request.cpuMillis) {
    return `${node.cpuFreeMillis}m CPU free, ${request.cpuMillis}m requested`;
  }
  if (node.memoryAllocatableBytes > 0 && node.memoryFreeBytes < request.memoryBytes) {
    return `${formatBytes(node.memoryFreeBytes)} memory free, ${formatBytes(request.memoryBytes)} requested`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------
// Quotas

export interface DonorUsage {
  total: number;
  byOrigin: Record<string, number>;
}

/** GPUs held by live reservations (open + bound), in total and per origin. */
export function usageOf(reservations: readonly ReservationRecord[]): DonorUsage {
  const usage: DonorUsage = { total: 0, byOrigin: {} };
  for (const r of reservations) {
    if (!isLive(r.state)) continue;
    usage.total += r.gpus;
    usage.byOrigin[r.origin] = (usage.byOrigin[r.origin] ?? 0) + r.gpus;
  }
  return usage;
}

/** GPUs the origin may still take from the donor under every limit; Infinity when unlimited. */
export function quotaHeadroom(
  policy: DonorPolicy,
  peering: PeeringRecord | undefined,
  origin: string,
  usage: DonorUsage,
): number {
  const mine = usage.byOrigin[origin] ?? 0;
  let room = Infinity;
  if (peering && peering.maxGpus > 0) room = Math.min(room, peering.maxGpus - mine);
  if (policy.maxGpusPerOrigin > 0) room = Math.min(room, policy.maxGpusPerOrigin - mine);
  if (policy.maxGpus > 0) room = Math.min(room, policy.maxGpus - usage.total);
  return Math.max(0, room);
}

export function quotaViolation(
  policy: DonorPolicy,
  peering: PeeringRecord | undefined,
  origin: string,
  usage: DonorUsage,
  gpus: number,
): string | undefined {
  const mine = usage.byOrigin[origin] ?? 0;
  const check = (what: string, limit: number, used: number): string | undefined => {
    if (limit <= 0 || used + gpus <= limit) return undefined;
    return used >= limit
      ? `${what} ${limit} GPUs reached (${used} in use)`
      : `${what} ${limit} GPUs would be exceeded (${used} in use, ${gpus} requested)`;
  };
  return (
    check('peering limit', peering?.maxGpus ?? 0, mine) ??
    check('per-origin limit', policy.maxGpusPerOrigin, mine) ??
    check('donor limit', policy.maxGpus, usage.total)
  );
}

// ---------------------------------------------------------------------------------------
// Scoring

/** Deterministic order: the policy's criterion, then donor and node names. */
export function compareCandidates(policy: PlacementPolicy, a: Candidate, b: Candidate): number {
  const byName = (): number => compareNames(a.donor, b.donor) || compareNames(a.node, b.node);
  switch (policy) {
    case 'spread':
      return b.freeAfter - a.freeAfter || byName();
    case 'cost':
      return a.costPerGpuHour - b.costPerGpuHour || a.freeAfter - b.freeAfter || byName();
    case 'binpack':
    default:
      // Fewest left free first keeps big nodes whole for big pods.
      return a.freeAfter - b.freeAfter || byName();
  }
}

function scoreOf(policy: PlacementPolicy, freeAfter: number, cost: number): number {
  switch (policy) {
    case 'spread':
      return freeAfter;
    case 'cost':
      return -cost;
    case 'binpack':
    default:
      return -freeAfter;
  }
}

export function describeAsk(request: PlacementRequest): string {
  let what = `${request.gpus} ${request.resource}`;
  const product = request.nodeRequirements.find(
    (r) => r.key === GPU_PRODUCT_LABEL && r.operator === 'In',
  );
  if (product) what += ` of product ${product.values.join(' or ')}`;
  return what;
}

/** What one peered, ready donor's nodes offer a request. */
export interface DonorNodes {
  fits: Candidate[];
  /** Why each other node does not fit (empty unless asked for). */
  nodeVerdicts: CandidateVerdict[];
  /** The most free GPUs on a lendable node too small for the request. */
  largestFree: number;
}

/**
 * Filters and scores one donor's nodes. `freeOf` gives a node's effective free GPUs when
 * the caller has them already (see fast.ts); otherwise they are computed here.
 */
export function evaluateDonorNodes(
  d: DonorSnapshot,
  peering: PeeringRecord,
  nodes: readonly NodeInventory[],
  request: PlacementRequest,
  policy: PlacementPolicy,
  opts: { verdicts?: boolean; freeOf?: (node: NodeInventory) => number } = {},
): DonorNodes {
  const id = d.cluster.id;
  const withVerdicts = opts.verdicts ?? true;
  const open = opts.freeOf ? undefined : openByNode(d.reservations);
  const fits: Candidate[] = [];
  const nodeVerdicts: CandidateVerdict[] = [];
  let largestFree = 0;
  const cost = d.cluster.policy.costPerGpuHour;
  for (const node of nodes) {
    const free = opts.freeOf
      ? opts.freeOf(node)
      : effectiveFree(node, request.resource, open?.get(node.name) ?? []);
    const notLent = nodeLendable(node, d.cluster.policy, peering);
    const why = notLent ?? podMisfit(node, request, free);
    if (why !== undefined) {
      if (notLent === undefined && free < request.gpus) largestFree = Math.max(largestFree, free);
      if (withVerdicts) {
        nodeVerdicts.push({
          donor: id,
          node: node.name,
          reason: `${id}/${node.name}: ${why}`,
          score: 0,
        });
      }
      continue;
    }
    const freeAfter = free - request.gpus;
    fits.push({
      donor: id,
      node: node.name,
      resource: request.resource,
      gpus: request.gpus,
      score: scoreOf(policy, freeAfter, cost),
      freeBefore: free,
      freeAfter,
      costPerGpuHour: cost,
      peeringMaxGpus: peering.maxGpus,
      donorMaxGpus: d.cluster.policy.maxGpus,
      donorMaxGpusPerOrigin: d.cluster.policy.maxGpusPerOrigin,
    });
  }
  return { fits, nodeVerdicts, largestFree };
}

/** Open reservations by node: what effectiveFree needs, indexed once per donor. */
export function openByNode(
  reservations: readonly ReservationRecord[],
): Map<string, ReservationRecord[]> {
  const out = new Map<string, ReservationRecord[]>();
  for (const r of reservations) {
    if (r.state !== 'open') continue;
    const list = out.get(r.node);
    if (list) list.push(r);
    else out.set(r.node, [r]);
  }
  return out;
}

/** Whether a donor takes part in a placement for `origin` at all, and if not, why. */
export type DonorGate =
  | { reject: string; peered: boolean; down?: string }
  | {
      reject?: undefined;
      peered: true;
      down?: undefined;
      peering: PeeringRecord;
      nodes: NodeInventory[];
    };

/**
 * The donor-level checks every placement makes before looking at nodes: a donor role, a
 * live peering with the origin, ready and uncordoned, nodes reported (sorted by name).
 */
export function donorGate(
  d: DonorSnapshot,
  origin: string,
  now: Date,
  heartbeatTimeoutMs: number,
): DonorGate {
  const id = d.cluster.id;
  if (d.cluster.role === 'origin')
    return { reject: `${id}: not a donor (role origin)`, peered: false };
  if (!d.peering) return { reject: `${id}: not peered with origin ${origin}`, peered: false };
  if (d.peering.deletingSince !== undefined) {
    return { reject: `${id}: peering with origin ${origin} is being removed`, peered: false };
  }
  const ready = clusterReadiness(
    d.cluster,
    d.agent,
    now,
    heartbeatTimeoutMs,
    d.inventory !== undefined,
  );
  const downReason =
    ready.state === 'Revoked'
      ? 'revoked'
      : d.cluster.policy.cordoned
        ? 'cordoned'
        : ready.state !== 'Ready'
          ? ready.reason
          : undefined;
  if (downReason !== undefined)
    return { reject: `${id}: ${downReason}`, peered: true, down: downReason };
  const nodes = [...(d.inventory?.nodes ?? [])].sort((a, b) => compareNames(a.name, b.name));
  if (nodes.length === 0) {
    return {
      reject: `${id}: ${d.inventory ? 'reports no nodes' : 'has not reported capacity yet'}`,
      peered: true,
    };
  }
  return { peered: true, peering: d.peering, nodes };
}

// ---------------------------------------------------------------------------------------
// The engine

/** Filters, scores and explains. Pure: same snapshot and request, same answer. */
export function evaluatePlacement(
  snapshot: PlacementSnapshot,
  request: PlacementRequest,
  policy: PlacementPolicy = 'binpack',
): EngineResult {
  const { origin, now, heartbeatTimeoutMs } = snapshot;
  const only = new Set(request.donors);
  const verdicts: CandidateVerdict[] = [];
  const candidates: Candidate[] = [];
  const down: string[] = [];
  const quotaBlocked: string[] = [];
  let peered = 0;
  let largestFree = 0;
  const reject = (donor: string, node: string, reason: string): void => {
    verdicts.push({ donor, node, reason, score: 0 });
  };

  const donors = [...snapshot.donors]
    .filter((d) => d.cluster.id !== origin && (only.size === 0 || only.has(d.cluster.id)))
    .sort((a, b) => compareNames(a.cluster.id, b.cluster.id));
  for (const id of [...only].sort()) {
    if (id !== origin && !donors.some((d) => d.cluster.id === id)) {
      reject(id, '', `${id}: not a known donor cluster`);
    }
  }

  for (const d of donors) {
    const id = d.cluster.id;
    const gate = donorGate(d, origin, now, heartbeatTimeoutMs);
    if (gate.peered) peered++;
    if (gate.down) down.push(`${id}: ${gate.down}`);
    if (gate.reject !== undefined) {
      reject(id, '', gate.reject);
      continue;
    }
    const nodes = gate.nodes;
    const peering = gate.peering;
    const usage = usageOf(d.reservations);
    const overQuota = quotaViolation(d.cluster.policy, peering, origin, usage, request.gpus);
    const {
      fits,
      nodeVerdicts,
      largestFree: donorLargest,
    } = evaluateDonorNodes(d, peering, nodes, request, policy);
    largestFree = Math.max(largestFree, donorLargest);
    if (overQuota !== undefined) {
      // Quota is the reason only where a node would otherwise have taken the pod.
      if (fits.length > 0) quotaBlocked.push(`${id}: ${overQuota}`);
      else verdicts.push(...nodeVerdicts);
      reject(id, '', `${id}: ${overQuota}`);
      continue;
    }
    verdicts.push(...nodeVerdicts);
    candidates.push(...fits);
  }

  candidates.sort((a, b) => compareCandidates(policy, a, b));
  const explained = capVerdicts(verdicts, candidates);

  if (candidates.length > 0) return { candidates, verdicts: explained };
  let refusal: EngineResult['refusal'];
  if (peered === 0) {
    refusal = {
      code: 'NO_PEERING',
      reason:
        only.size > 0
          ? `origin ${origin} is not peered with ${[...only].sort().join(', ')}`
          : `origin ${origin} is not peered with any donor`,
    };
  } else if (down.length === peered) {
    refusal = { code: 'DONOR_NOT_READY', reason: `no peered donor is ready: ${down.join('; ')}` };
  } else if (quotaBlocked.length > 0) {
    refusal = {
      code: 'QUOTA_EXCEEDED',
      reason: `every donor with a node that fits ${describeAsk(request)} is at its lending limit: ${quotaBlocked.join('; ')}`,
    };
  } else {
    const notes: string[] = [];
    if (largestFree > 0) notes.push(`the most free on one eligible node is ${largestFree}`);
    if (down.length > 0) notes.push(`not ready: ${down.join('; ')}`);
    refusal = {
      code: 'NO_FIT',
      reason: `no node on a peered donor fits ${describeAsk(request)}${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`,
    };
  }
  return { candidates, verdicts: explained, refusal };
}

/** Verdicts a result carries at most: a thousand-donor fleet is explained by a sample. */
export const MAX_VERDICTS = 200;
const MAX_CANDIDATE_VERDICTS = 20;

/** Rejections then candidates (best first); past MAX_VERDICTS, the best candidates and the first rejections, and a count of the rest. */
function capVerdicts(
  rejections: readonly CandidateVerdict[],
  candidates: readonly Candidate[],
): CandidateVerdict[] {
  const chosen = (list: readonly Candidate[]): CandidateVerdict[] =>
    list.map((c) => ({ donor: c.donor, node: c.node, reason: '', score: c.score }));
  if (rejections.length + candidates.length <= MAX_VERDICTS) {
    return [...rejections, ...chosen(candidates)];
  }
  const best = chosen(candidates.slice(0, MAX_CANDIDATE_VERDICTS));
  const room = MAX_VERDICTS - best.length - 1;
  const shown = rejections.slice(0, room);
  const hidden = rejections.length - shown.length + (candidates.length - best.length);
  return [
    ...shown,
    { donor: '', node: '', reason: `${hidden} more nodes not listed`, score: 0 },
    ...best,
  ];
}

// ---------------------------------------------------------------------------------------
// What a donor lends an origin

export interface Lending {
  /** GPUs the origin could take right now, by resource: node room clipped to quota headroom. */
  lendable: Record<string, number>;
  /** GPUs this origin holds on the donor (open + bound), by resource. */
  inUse: Record<string, number>;
  /** Products on the nodes lent to this origin. */
  products: string[];
}

/** lendable = min(Σ effective free on lendable nodes, limits − usage); 0 unless the donor is Ready and uncordoned. */
export function lendingOf(
  d: DonorSnapshot,
  origin: string,
  now: Date,
  heartbeatTimeoutMs: number,
  /** A node's effective free GPUs when the caller has them (fast.ts's summary). */
  freeOf?: (node: NodeInventory, resource: string) => number,
): Lending {
  const lendable: Record<string, number> = {};
  const inUse: Record<string, number> = {};
  const products = new Set<string>();
  for (const r of d.reservations) {
    if (r.origin === origin && isLive(r.state)) {
      inUse[r.resource] = (inUse[r.resource] ?? 0) + r.gpus;
    }
  }
  const usable =
    clusterReadiness(d.cluster, d.agent, now, heartbeatTimeoutMs, d.inventory !== undefined)
      .state === 'Ready' &&
    !d.cluster.policy.cordoned &&
    d.peering?.deletingSince === undefined;
  const headroom = quotaHeadroom(d.cluster.policy, d.peering, origin, usageOf(d.reservations));
  for (const node of d.inventory?.nodes ?? []) {
    if (nodeLendable(node, d.cluster.policy, d.peering) !== undefined) continue;
    if (node.gpuProduct !== '') products.add(node.gpuProduct);
    for (const resource of Object.keys(node.gpus)) {
      const free = !usable
        ? 0
        : freeOf
          ? freeOf(node, resource)
          : effectiveFree(node, resource, d.reservations);
      lendable[resource] = (lendable[resource] ?? 0) + free;
    }
  }
  for (const resource of Object.keys(lendable)) {
    lendable[resource] = Math.min(lendable[resource]!, headroom);
  }
  return { lendable, inUse, products: [...products].sort() };
}
