import type { PlacementRequest } from '../core/api.js';
import type {
  ClusterInventory,
  ClusterRecord,
  ConnectionRecord,
  DonorPolicy,
  NodeInventory,
  PeeringRecord,
  PlacementPolicy,
  ReservationRecord,
} from '../model.js';
import {
  GPU_PRODUCT_LABEL,
  clusterReadiness,
  compareCandidates,
  compareNames,
  effectiveFree,
  evaluateDonorNodes,
  nodeLabels,
  nodeLendable,
  openByNode,
  peeringLends,
  quotaHeadroom,
  requirementMismatch,
  usageOf,
  type Candidate,
  type DonorSnapshot,
  type DonorUsage,
} from './engine.js';

/**
 * Placement over many donors without looking at every node. Each donor keeps a summary
 * (recomputed only when the donor changes): the effective free GPUs of each node its
 * policy lends, grouped by resource and product and sorted. From it, a bound on the best
 * candidate the donor could offer a request; donors are visited best bound first, and the
 * walk stops once `k` candidates are found that no later donor could beat. The answer is
 * the same as scoring every node (evaluatePlacement), only cheaper: requirements the
 * summary does not capture (taints, other labels, CPU, memory) can only make a donor's
 * real candidates worse than its bound, never better.
 */

export interface NodeFree {
  node: NodeInventory;
  /** Lent by the donor's own policy (ready, uncordoned, selected); peerings may narrow it. */
  lendable: boolean;
  /** Effective free GPUs by resource: reported minus open reservations not yet reflected. */
  free: Record<string, number>;
}

export interface FreeGroup {
  /** The value of nvidia.com/gpu.product as node requirements see it ('' when unset). */
  labelProduct: string;
  /** The reported product, which peerings restrict. */
  gpuProduct: string;
  /** Effective free GPUs of the group's lendable nodes, ascending. */
  free: number[];
}

export interface DonorSummary {
  nodes: NodeFree[];
  byName: Map<string, NodeFree>;
  byResource: Map<string, FreeGroup[]>;
  usage: DonorUsage;
  /** Answers derived from this summary (capacity rows by filter), valid as long as it is. */
  derived: Map<string, unknown>;
}

/** The node's effective free GPUs of `resource` in the summary (0 for a node it lacks). */
export function freeOn(summary: DonorSummary, node: NodeInventory, resource: string): number {
  return summary.byName.get(node.name)?.free[resource] ?? 0;
}

export function summarizeDonor(
  policy: DonorPolicy,
  inventory: ClusterInventory | undefined,
  reservations: readonly ReservationRecord[],
): DonorSummary {
  const open = openByNode(reservations);
  const nodes: NodeFree[] = [];
  const byName = new Map<string, NodeFree>();
  const groups = new Map<string, FreeGroup>();
  const byResource = new Map<string, FreeGroup[]>();
  for (const node of inventory?.nodes ?? []) {
    const lendable = nodeLendable(node, policy) === undefined;
    const free: Record<string, number> = {};
    const mine = open.get(node.name) ?? [];
    for (const resource of Object.keys(node.gpus)) {
      free[resource] = effectiveFree(node, resource, mine);
    }
    const nf: NodeFree = { node, lendable, free };
    nodes.push(nf);
    byName.set(node.name, nf);
    if (!lendable) continue;
    const labelProduct = nodeLabels(node)[GPU_PRODUCT_LABEL] ?? '';
    for (const [resource, n] of Object.entries(free)) {
      const key = `${resource}\u0000${labelProduct}\u0000${node.gpuProduct}`;
      let g = groups.get(key);
      if (!g) {
        g = { labelProduct, gpuProduct: node.gpuProduct, free: [] };
        groups.set(key, g);
        const list = byResource.get(resource);
        if (list) list.push(g);
        else byResource.set(resource, [g]);
      }
      g.free.push(n);
    }
  }
  for (const g of groups.values()) g.free.sort((a, b) => a - b);
  return { nodes, byName, byResource, usage: usageOf(reservations), derived: new Map() };
}

/** A peered donor as the fast path needs it. */
export interface FastDonor {
  cluster: ClusterRecord;
  peering: PeeringRecord;
  agent: ConnectionRecord | undefined;
  inventory: ClusterInventory | undefined;
  summary: DonorSummary;
  /** The full snapshot, for the donor's node-level evaluation. */
  snapshot(): DonorSnapshot;
}

export interface FastInput {
  origin: string;
  now: Date;
  heartbeatTimeoutMs: number;
  donors: Iterable<FastDonor>;
}

/** Whether a node whose product label is `labelProduct` meets every product requirement. */
function productAllowed(request: PlacementRequest, labelProduct: string): boolean {
  const labels: Record<string, string> =
    labelProduct === '' ? {} : { [GPU_PRODUCT_LABEL]: labelProduct };
  for (const r of request.nodeRequirements) {
    if (r.key === GPU_PRODUCT_LABEL && requirementMismatch(labels, r) !== undefined) return false;
  }
  return true;
}

/** Smallest index with list[i] >= want in an ascending list (numbers, or ids in code-unit order). */
function lowerBound<T extends number | string>(list: readonly T[], want: T): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid]! < want) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The best freeAfter any node of the donor could give the request, if any can. */
function donorBound(
  d: FastDonor,
  request: PlacementRequest,
  policy: PlacementPolicy,
): number | undefined {
  const groups = d.summary.byResource.get(request.resource);
  if (!groups) return undefined;
  let best: number | undefined;
  for (const g of groups) {
    if (!peeringLends(d.peering, g.gpuProduct)) continue;
    if (!productAllowed(request, g.labelProduct)) continue;
    const i = lowerBound(g.free, request.gpus);
    if (i === g.free.length) continue;
    // Spread wants the most left free; bin-pack and cost the least.
    const after = (policy === 'spread' ? g.free[g.free.length - 1]! : g.free[i]!) - request.gpus;
    if (best === undefined || (policy === 'spread' ? after > best : after < best)) best = after;
  }
  return best;
}

function pseudo(d: FastDonor, freeAfter: number): Candidate {
  return {
    donor: d.cluster.id,
    // '' sorts before every node name: the best this donor could offer.
    node: '',
    resource: '',
    gpus: 0,
    score: 0,
    freeBefore: 0,
    freeAfter,
    costPerGpuHour: d.cluster.policy.costPerGpuHour,
    peeringMaxGpus: 0,
    donorMaxGpus: 0,
    donorMaxGpusPerOrigin: 0,
  };
}

/**
 * The best `k` candidates, best first — the first `k` evaluatePlacement would return — or
 * none, in which case the caller asks evaluatePlacement why.
 */
export function fastCandidates(
  input: FastInput,
  request: PlacementRequest,
  policy: PlacementPolicy,
  k: number,
): Candidate[] {
  const only = request.donors.length > 0 ? new Set(request.donors) : undefined;
  const entries: { d: FastDonor; bound: Candidate }[] = [];
  for (const d of input.donors) {
    const id = d.cluster.id;
    if (id === input.origin || (only && !only.has(id))) continue;
    if (d.cluster.role === 'origin' || d.peering.deletingSince !== undefined) continue;
    if (d.cluster.policy.cordoned) continue;
    const ready = clusterReadiness(
      d.cluster,
      d.agent,
      input.now,
      input.heartbeatTimeoutMs,
      d.inventory !== undefined,
    );
    if (ready.state !== 'Ready') continue;
    const bound = donorBound(d, request, policy);
    if (bound === undefined) continue;
    if (quotaHeadroom(d.cluster.policy, d.peering, input.origin, d.summary.usage) < request.gpus) {
      continue;
    }
    entries.push({ d, bound: pseudo(d, bound) });
  }
  entries.sort((a, b) => compareCandidates(policy, a.bound, b.bound));
  const top: Candidate[] = [];
  for (const { d, bound } of entries) {
    if (top.length >= k && compareCandidates(policy, top[k - 1]!, bound) < 0) break;
    const nodes = [...(d.inventory?.nodes ?? [])].sort((a, b) => compareNames(a.name, b.name));
    const { fits } = evaluateDonorNodes(d.snapshot(), d.peering, nodes, request, policy, {
      verdicts: false,
      freeOf: (node) => freeOn(d.summary, node, request.resource),
    });
    for (const c of fits) insertTop(top, c, k, policy);
  }
  return top;
}

function insertTop(top: Candidate[], c: Candidate, k: number, policy: PlacementPolicy): void {
  if (top.length >= k && compareCandidates(policy, c, top[k - 1]!) >= 0) return;
  let i = top.length;
  while (i > 0 && compareCandidates(policy, c, top[i - 1]!) < 0) i--;
  top.splice(i, 0, c);
  if (top.length > k) top.pop();
}

// ---------------------------------------------------------------------------------------
// An index of donors by the free GPUs of their nodes

/**
 * Donors by (resource, free GPUs on one of their lendable nodes), ids sorted in each
 * bucket. Bin-pack and spread walk the buckets from the tightest (or the emptiest) fit, so
 * a placement looks at the few donors that can win instead of every donor.
 */
export class FreeIndex {
  private readonly buckets = new Map<string, (string[] | undefined)[]>();
  private readonly members = new Map<string, Map<string, number[]>>();

  /** Re-files the donor from its summary (undefined: the donor is gone). */
  update(donor: string, summary: DonorSummary | undefined): void {
    const before = this.members.get(donor);
    if (before) {
      for (const [resource, frees] of before) {
        const row = this.buckets.get(resource);
        for (const f of frees) {
          const list = row?.[f];
          if (!list) continue;
          const i = lowerBound(list, donor);
          if (list[i] === donor) list.splice(i, 1);
        }
      }
      this.members.delete(donor);
    }
    if (!summary) return;
    const now = new Map<string, number[]>();
    for (const [resource, groups] of summary.byResource) {
      const frees = new Set<number>();
      for (const g of groups) for (const f of g.free) frees.add(f);
      if (frees.size === 0) continue;
      let row = this.buckets.get(resource);
      if (!row) this.buckets.set(resource, (row = []));
      for (const f of frees) {
        const list = (row[f] ??= []);
        list.splice(lowerBound(list, donor), 0, donor);
      }
      now.set(resource, [...frees]);
    }
    if (now.size > 0) this.members.set(donor, now);
  }

  /** (free, donor) in walking order: free ascending from `min` (or descending to it). */
  *walk(resource: string, min: number, descending: boolean): Generator<[number, string]> {
    const row = this.buckets.get(resource);
    if (!row) return;
    const start = descending ? row.length - 1 : Math.max(0, min);
    for (let f = start; descending ? f >= min : f < row.length; f += descending ? -1 : 1) {
      const list = row[f];
      if (!list || list.length === 0) continue;
      // A copy: evaluating a donor must not shift the walk.
      for (const id of [...list]) yield [f, id];
    }
  }
}

/**
 * The same answer as fastCandidates for bin-pack and spread, visiting donors in the
 * index's order: a donor first met in bucket f has no lendable node with between the
 * request and f free GPUs, so nothing after it can beat a candidate better than f.
 */
export function indexedCandidates(
  index: FreeIndex,
  donorOf: (id: string) => FastDonor | undefined,
  input: Omit<FastInput, 'donors'>,
  request: PlacementRequest,
  policy: 'binpack' | 'spread',
  k: number,
): Candidate[] {
  const top: Candidate[] = [];
  const seen = new Set<string>();
  for (const [f, id] of index.walk(request.resource, request.gpus, policy === 'spread')) {
    if (seen.has(id)) continue;
    seen.add(id);
    const d = donorOf(id);
    if (!d) continue;
    if (
      top.length >= k &&
      compareCandidates(policy, top[k - 1]!, pseudo(d, f - request.gpus)) < 0
    ) {
      break;
    }
    for (const c of fastCandidates({ ...input, donors: [d] }, request, policy, k)) {
      insertTop(top, c, k, policy);
    }
  }
  return top;
}
