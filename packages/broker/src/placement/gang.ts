import type { CandidateVerdict, GangPlacementRequest, PlacementRequest } from '../core/api.js';
import type { NodeInventory, PlacementPolicy } from '../model.js';
import {
  compareCandidates,
  compareNames,
  donorGate,
  effectiveFree,
  evaluateDonorNodes,
  nodeLendable,
  openByNode,
  quotaHeadroom,
  usageOf,
  type Candidate,
  type DonorSnapshot,
  type PlacementSnapshot,
  type RefusalCode,
} from './engine.js';

/**
 * Gang placement, pure: a donor is a candidate only when every member fits one of its
 * nodes at once (members packed biggest first, each on the node the policy likes best of
 * those still holding it) and the gang's GPUs fit the donor's limits. The store's
 * reserveGang re-checks the whole plan atomically.
 */

export type GangRequest = GangPlacementRequest;

export interface GangPlan {
  donor: string;
  /** One candidate per member, in member order. */
  members: Candidate[];
  gpus: number;
  /** GPUs of the gang's resource the donor's lendable nodes keep free after the gang. */
  freeAfter: number;
  costPerGpuHour: number;
}

export interface GangEngineResult {
  /** Best first. */
  plans: GangPlan[];
  /** One per donor. */
  verdicts: CandidateVerdict[];
  refusal?: { code: RefusalCode; reason: string };
}

/** The resource the gang is about: that of its member asking the most GPUs. */
export function gangResource(members: readonly PlacementRequest[]): string {
  let best = members[0];
  for (const m of members) if (best === undefined || m.gpus > best.gpus) best = m;
  return best?.resource ?? '';
}

export function gangGpus(members: readonly PlacementRequest[]): number {
  return members.reduce((n, m) => n + m.gpus, 0);
}

function describeMember(m: PlacementRequest): string {
  return `${m.pod.namespace}/${m.pod.name} (${m.gpus} ${m.resource})`;
}

interface Packed {
  plan?: GangPlan;
  /** Why not, when there is no plan. */
  reason?: string;
  /** Members that fit before the first that did not. */
  fitted: number;
  /** Σ effective free of the gang's resource on the donor's lendable nodes. */
  free: number;
}

/** Packs the gang onto one donor's nodes, or says which member found no node. */
export function packGang(
  d: DonorSnapshot,
  nodes: readonly NodeInventory[],
  gang: GangRequest,
  policy: PlacementPolicy,
): Packed {
  const peering = d.peering!;
  const open = openByNode(d.reservations);
  const resource = gangResource(gang.members);
  let free = 0;
  for (const n of nodes) {
    if (nodeLendable(n, d.cluster.policy, peering) === undefined) {
      free += effectiveFree(n, resource, open.get(n.name) ?? []);
    }
  }
  // What members placed so far take from each node.
  const taken = new Map<string, { gpus: Map<string, number>; cpu: number; memory: number }>();
  const order = gang.members
    .map((m, i) => ({ m, i }))
    .sort((a, b) => b.m.gpus - a.m.gpus || a.i - b.i);
  const chosen: Candidate[] = [];
  let fitted = 0;
  for (const { m, i } of order) {
    const view = nodes.map((n) => {
      const t = taken.get(n.name);
      return t
        ? {
            ...n,
            cpuFreeMillis: n.cpuFreeMillis - t.cpu,
            memoryFreeBytes: n.memoryFreeBytes - t.memory,
          }
        : n;
    });
    const { fits, largestFree } = evaluateDonorNodes(d, peering, view, m, policy, {
      verdicts: false,
      freeOf: (n) =>
        Math.max(
          0,
          effectiveFree(n, m.resource, open.get(n.name) ?? []) -
            (taken.get(n.name)?.gpus.get(m.resource) ?? 0),
        ),
    });
    const best = fits.sort((a, b) => compareCandidates(policy, a, b))[0];
    if (!best) {
      const most = largestFree > 0 ? `; the most free on one node then is ${largestFree}` : '';
      return {
        fitted,
        free,
        reason: `${fitted} of ${gang.members.length} members fit; ${describeMember(m)} fits no node left${most}`,
      };
    }
    const t = taken.get(best.node) ?? { gpus: new Map<string, number>(), cpu: 0, memory: 0 };
    t.gpus.set(m.resource, (t.gpus.get(m.resource) ?? 0) + m.gpus);
    t.cpu += m.cpuMillis;
    t.memory += m.memoryBytes;
    taken.set(best.node, t);
    chosen[i] = best;
    fitted++;
  }
  const gpus = gangGpus(gang.members);
  return {
    fitted,
    free,
    plan: {
      donor: d.cluster.id,
      members: chosen,
      gpus,
      freeAfter:
        free - gang.members.filter((m) => m.resource === resource).reduce((n, m) => n + m.gpus, 0),
      costPerGpuHour: d.cluster.policy.costPerGpuHour,
    },
  };
}

function comparePlans(policy: PlacementPolicy, a: GangPlan, b: GangPlan): number {
  const byName = compareNames(a.donor, b.donor);
  switch (policy) {
    case 'spread':
      return b.freeAfter - a.freeAfter || byName;
    case 'cost':
      return a.costPerGpuHour - b.costPerGpuHour || a.freeAfter - b.freeAfter || byName;
    case 'binpack':
    default:
      return a.freeAfter - b.freeAfter || byName;
  }
}

/** Every donor that can hold the whole gang, best first, and why each other one cannot. */
export function evaluateGang(
  snapshot: PlacementSnapshot,
  gang: GangRequest,
  policy: PlacementPolicy = 'binpack',
): GangEngineResult {
  const { origin, now, heartbeatTimeoutMs } = snapshot;
  const only = new Set(gang.donors);
  const verdicts: CandidateVerdict[] = [];
  const plans: GangPlan[] = [];
  const down: string[] = [];
  const quotaBlocked: string[] = [];
  let peered = 0;
  const gpus = gangGpus(gang.members);
  const resource = gangResource(gang.members);
  // The donor with the most free GPUs of the gang's resource, and what it lacked.
  let largest: { donor: string; free: number; fitted: number; why: string } | undefined;
  const reject = (donor: string, reason: string): void => {
    verdicts.push({ donor, node: '', reason, score: 0 });
  };
  const donors = [...snapshot.donors]
    .filter((d) => d.cluster.id !== origin && (only.size === 0 || only.has(d.cluster.id)))
    .sort((a, b) => compareNames(a.cluster.id, b.cluster.id));
  for (const id of [...only].sort()) {
    if (id !== origin && !donors.some((d) => d.cluster.id === id)) {
      reject(id, `${id}: not a known donor cluster`);
    }
  }
  for (const d of donors) {
    const id = d.cluster.id;
    const gate = donorGate(d, origin, now, heartbeatTimeoutMs);
    if (gate.peered) peered++;
    if (gate.down) down.push(`${id}: ${gate.down}`);
    if (gate.reject !== undefined) {
      reject(id, gate.reject);
      continue;
    }
    const packed = packGang(d, gate.nodes, gang, policy);
    const headroom = quotaHeadroom(d.cluster.policy, gate.peering, origin, usageOf(d.reservations));
    if (packed.plan && gpus > headroom) {
      const why = `${id}: the gang's ${gpus} GPUs pass a lending limit (${headroom} left for ${origin})`;
      quotaBlocked.push(why);
      reject(id, why);
      continue;
    }
    if (!packed.plan) {
      const why = `${id}: ${packed.reason ?? 'does not fit'}`;
      if (!largest || packed.free > largest.free) {
        largest = { donor: id, free: packed.free, fitted: packed.fitted, why };
      }
      reject(id, why);
      continue;
    }
    plans.push(packed.plan);
  }
  plans.sort((a, b) => comparePlans(policy, a, b));
  for (const p of plans)
    verdicts.push({ donor: p.donor, node: '', reason: '', score: -p.freeAfter });
  if (plans.length > 0) return { plans, verdicts };

  const size = `${gang.members.length} members, ${gpus} ${resource}`;
  let refusal: GangEngineResult['refusal'];
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
  } else if (quotaBlocked.length > 0 && !largest) {
    refusal = {
      code: 'QUOTA_EXCEEDED',
      reason: `every donor that could hold gang ${gang.gang} (${size}) is at its lending limit: ${quotaBlocked.join('; ')}`,
    };
  } else {
    const notes: string[] = [];
    if (largest) {
      notes.push(
        `the largest free donor, ${largest.donor}, has ${largest.free} ${resource} free: ${largest.why.slice(largest.donor.length + 2)}`,
      );
    }
    if (quotaBlocked.length > 0) notes.push(`at a lending limit: ${quotaBlocked.join('; ')}`);
    if (down.length > 0) notes.push(`not ready: ${down.join('; ')}`);
    refusal = {
      code: 'NO_FIT',
      reason: `no peered donor can hold all of gang ${gang.gang} (${size})${notes.length > 0 ? `; ${notes.join('; ')}` : ''}`,
    };
  }
  return { plans, verdicts, refusal };
}
