import { ErrorCode, SpillwayError, invalid } from '@spillway/common';
import type {
  CapacityUpdate,
  ClusterInventory,
  NodeInventory,
  ReservationRecord,
  ReservationState,
  ReserveRequest,
} from '../model.js';

/**
 * Rules both stores share. The SQLite store runs them inside its transaction; the Redis
 * store validates with them before its Lua script, which repeats the arithmetic in Lua.
 */

export const LIVE_STATES: readonly ReservationState[] = ['open', 'bound'];
export const FINISHED_STATES: readonly ReservationState[] = ['released', 'expired', 'ended'];

export function isLive(state: ReservationState): boolean {
  return state === 'open' || state === 'bound';
}

function requireText(value: unknown, field: string): void {
  if (typeof value !== 'string' || value.length === 0)
    throw invalid(field, 'must be a non-empty string');
}

function requireLimit(value: unknown, field: string): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw invalid(field, `must be a non-negative integer (0 = no limit), got ${String(value)}`);
  }
}

/** Throws INVALID_ARGUMENT naming the first bad field of a reserve request. */
export function validateReserveRequest(req: ReserveRequest, minGpus = 1): void {
  requireText(req.id, 'id');
  requireText(req.origin, 'origin');
  requireText(req.donor, 'donor');
  requireText(req.node, 'node');
  requireText(req.resource, 'resource');
  requireText(req.pod?.uid, 'pod.uid');
  if (!Number.isInteger(req.gpus) || req.gpus < minGpus) {
    throw invalid(
      'gpus',
      `must be ${minGpus === 0 ? 'a non-negative' : 'a positive'} integer, got ${String(req.gpus)}`,
    );
  }
  if (!Number.isFinite(req.ttlMs) || req.ttlMs <= 0) {
    throw invalid('ttlMs', `must be a positive number of milliseconds, got ${String(req.ttlMs)}`);
  }
  requireLimit(req.peeringMaxGpus, 'peeringMaxGpus');
  requireLimit(req.donorMaxGpus, 'donorMaxGpus');
  requireLimit(req.donorMaxGpusPerOrigin, 'donorMaxGpusPerOrigin');
}

/** The node's reported free GPUs of `resource`; 0 when absent, not ready or cordoned. */
export function reportedFree(node: NodeInventory | undefined, resource: string): number {
  if (!node || !node.ready || node.cordoned) return 0;
  return node.gpus[resource]?.free ?? 0;
}

/** What of a reservation counts against a node's reported free GPUs. */
export type NodeClaim = Pick<ReservationRecord, 'state' | 'node' | 'resource' | 'gpus'> & {
  pod: { uid: string };
};

/**
 * GPUs of `resource` that open reservations on this node hold but its report does not show
 * yet: a pod uid in offloadedPodUids is already counted in the report's `free`.
 */
export function unreportedClaims(
  node: NodeInventory,
  resource: string,
  claims: readonly NodeClaim[],
): number {
  let claimed = 0;
  for (const c of claims) {
    if (
      c.state === 'open' &&
      c.node === node.name &&
      c.resource === resource &&
      !node.offloadedPodUids.includes(c.pod.uid)
    ) {
      claimed += c.gpus;
    }
  }
  return claimed;
}

/**
 * What reserve() may still promise on the node: 0 unless it is ready and uncordoned, else
 * its reported free minus unreportedClaims. Not clamped: negative when open reservations
 * exceed the report. The Redis store's Lua (RESERVABLE_GPUS_LUA) is the same arithmetic; a
 * property test holds the two together.
 */
export function reservableGpus(
  node: NodeInventory | undefined,
  resource: string,
  claims: readonly NodeClaim[],
): number {
  const free = reportedFree(node, resource);
  if (free === 0 || !node) return 0;
  return free - unreportedClaims(node, resource, claims);
}

export function noFitReason(req: ReserveRequest, free: number): string {
  return `node ${req.node} of ${req.donor} has ${Math.max(free, 0)} ${req.resource} free after open reservations; ${req.gpus} requested`;
}

/** The reason the request passes a limit, or undefined when it fits all three. */
export function quotaViolation(
  req: ReserveRequest,
  usage: { total: number; origin: number },
): string | undefined {
  const originAfter = usage.origin + req.gpus;
  const totalAfter = usage.total + req.gpus;
  if (req.peeringMaxGpus > 0 && originAfter > req.peeringMaxGpus) {
    return `origin ${req.origin} would use ${originAfter} GPUs of ${req.donor}, over the peering limit (peeringMaxGpus) of ${req.peeringMaxGpus}`;
  }
  if (req.donorMaxGpusPerOrigin > 0 && originAfter > req.donorMaxGpusPerOrigin) {
    return `origin ${req.origin} would use ${originAfter} GPUs of ${req.donor}, over the donor's per-origin limit (donorMaxGpusPerOrigin) of ${req.donorMaxGpusPerOrigin}`;
  }
  if (req.donorMaxGpus > 0 && totalAfter > req.donorMaxGpus) {
    return `donor ${req.donor} would lend ${totalAfter} GPUs, over its limit (donorMaxGpus) of ${req.donorMaxGpus}`;
  }
  return undefined;
}

export function newReservation(req: ReserveRequest, now: Date): ReservationRecord {
  return {
    id: req.id,
    origin: req.origin,
    donor: req.donor,
    node: req.node,
    resource: req.resource,
    gpus: req.gpus,
    pod: { ...req.pod },
    state: 'open',
    createdAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + req.ttlMs).toISOString(),
  };
}

/**
 * The inventory after a report, or undefined when the report is stale (a lower sequence
 * than the last applied, and not a full snapshot). Nodes are kept sorted by name.
 */
export function mergeCapacity(
  prev: ClusterInventory | undefined,
  clusterId: string,
  update: CapacityUpdate,
  now: Date,
): ClusterInventory | undefined {
  if (prev && !update.full && update.sequence < prev.sequence) return undefined;
  const nodes = new Map<string, NodeInventory>();
  if (prev && !update.full) for (const n of prev.nodes) nodes.set(n.name, n);
  for (const name of update.full ? [] : update.removedNodes) nodes.delete(name);
  for (const n of update.nodes) nodes.set(n.name, n);
  return {
    clusterId,
    nodes: [...nodes.values()].sort((a, b) => compareText(a.name, b.name)),
    updatedAt: now.toISOString(),
    sequence: update.sequence,
  };
}

/** Code-unit order, the same as SQLite's BINARY collation and Lua's string compare. */
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Reservation listing order: oldest first, ties by id. */
export function compareReservations(a: ReservationRecord, b: ReservationRecord): number {
  return compareText(a.createdAt, b.createdAt) || compareText(a.id, b.id);
}

export function notFound(what: string, field: string): SpillwayError {
  return new SpillwayError(ErrorCode.NOT_FOUND, `${field}: ${what} not found`, { field });
}

export function tokenInvalid(): SpillwayError {
  // One message for unknown, expired, used and wrong-secret tokens: nothing to probe.
  return new SpillwayError(
    ErrorCode.TOKEN_INVALID,
    'token: the join token is invalid, expired or already used; ask the broker admin for a new one',
    { field: 'token' },
  );
}

export function storeUnavailable(kind: string, cause: unknown): SpillwayError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new SpillwayError(ErrorCode.STORE_UNAVAILABLE, `${kind} store unavailable: ${detail}`, {
    cause,
  });
}
