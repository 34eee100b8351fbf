import type { ChainableCommander } from 'ioredis';
import type {
  ApiTokenRecord,
  ClusterRecord,
  Component,
  ConnectionRecord,
  JoinTokenRecord,
  PeeringRecord,
  ReservationRecord,
  ReservationState,
} from '../model.js';

/*
 * Data layout (P = key prefix, default "spillway:"). Records are hashes; nested values
 * (policy, pod, node inventory) are JSON strings inside them. Cluster IDs are DNS labels
 * and node names DNS subdomains, so ':' can separate them inside keys.
 *
 *   P jt:<id>              hash   join token (+ _expiresMs for the Lua expiry check)
 *   P jts                  set    join token ids
 *   P cluster:<id>         hash   cluster record (policy as JSON)
 *   P clusters             set    cluster ids
 *   P revoked              hash   normalized serial -> RevokedEntry JSON
 *   P peering:<o>:<d>      hash   peering record (gpuProducts as JSON)
 *   P peerings             set    "<origin>:<donor>"
 *   P inv:<c>              hash   updatedAt, sequence
 *   P inv:<c>:nodes        hash   node name -> NodeInventory JSON (as the agent sent it)
 *   P invs                 set    cluster ids that have an inventory
 *   P conn:<c>:<component> hash   connection record
 *   P conns                set    "<cluster>:<component>"
 *   P rsv:<id>             hash   reservation (pod as JSON, podUid copied out for lookups)
 *   P rsv:all              zset   every reservation id, scored by createdAt (ms)
 *   P rsv:pod              hash   pod uid -> id of its live (open or bound) reservation
 *   P rsv:open:<d>:<node>  set    open reservation ids on one donor node
 *   P rsv:expiry           zset   open reservation ids, scored by expiresAt (ms)
 *   P rsv:done             zset   finished reservation ids, scored by endedAt (ms)
 *   P rsv:lapsed           hash   pod uid -> id of its last expired reservation
 *   P usage:<d>            hash   "total" and "o:<origin>" -> GPUs held open or bound
 *   P apitoken:<id>        hash   REST API token
 *   P apitokens            set    API token ids
 *
 * Every change that reads before it writes, or touches an index with its record, is one Lua
 * script, so replicas sharing this Redis never interleave inside it. Scripts build keys from
 * the prefix, so this layout targets one Redis primary (with replicas or Sentinel), not
 * Redis Cluster.
 */

export type Hash = Record<string, string>;

/** Lua returns HGETALL as a flat [field, value, ...] array. */
export function fromFlat(reply: unknown): Hash {
  const out: Hash = {};
  if (!Array.isArray(reply)) return out;
  for (let i = 0; i + 1 < reply.length; i += 2) out[String(reply[i])] = String(reply[i + 1]);
  return out;
}

export function opt<K extends string>(key: K, v: string | undefined): { [P in K]?: string } {
  return v === undefined || v === '' ? {} : ({ [key]: v } as { [P in K]?: string });
}

/** HSET arguments of a record, skipping unset optional fields. */
export function fields(obj: Record<string, string | number | undefined>): (string | number)[] {
  return Object.entries(obj).flatMap(([k, v]) => (v === undefined ? [] : [k, v]));
}

export const req = (h: Hash, k: string): string => h[k] ?? '';

export function toToken(h: Hash): JoinTokenRecord {
  return {
    id: req(h, 'id'),
    secretHash: req(h, 'secretHash'),
    clusterId: req(h, 'clusterId'),
    role: req(h, 'role') as JoinTokenRecord['role'],
    createdAt: req(h, 'createdAt'),
    expiresAt: req(h, 'expiresAt'),
    ...opt('usedAt', h.usedAt),
  };
}

export function toCluster(h: Hash): ClusterRecord {
  return {
    id: req(h, 'id'),
    role: req(h, 'role') as ClusterRecord['role'],
    createdAt: req(h, 'createdAt'),
    ...opt('certSerial', h.certSerial),
    ...opt('certNotAfter', h.certNotAfter),
    ...(h.supersededSerials === undefined
      ? {}
      : { supersededSerials: JSON.parse(h.supersededSerials) as string[] }),
    policy: JSON.parse(req(h, 'policy')) as ClusterRecord['policy'],
    ...opt('revokedAt', h.revokedAt),
  };
}

export function toPeering(h: Hash): PeeringRecord {
  return {
    origin: req(h, 'origin'),
    donor: req(h, 'donor'),
    maxGpus: Number(h.maxGpus),
    gpuProducts: JSON.parse(req(h, 'gpuProducts')) as string[],
    createdAt: req(h, 'createdAt'),
    ...opt('deletingSince', h.deletingSince),
  };
}

export function toConnection(h: Hash): ConnectionRecord {
  return {
    clusterId: req(h, 'clusterId'),
    component: req(h, 'component') as Component,
    brokerId: req(h, 'brokerId'),
    connectedAt: req(h, 'connectedAt'),
    lastSeenAt: req(h, 'lastSeenAt'),
  };
}

export function toReservation(h: Hash): ReservationRecord {
  return {
    id: req(h, 'id'),
    origin: req(h, 'origin'),
    donor: req(h, 'donor'),
    node: req(h, 'node'),
    resource: req(h, 'resource'),
    gpus: Number(h.gpus),
    pod: JSON.parse(req(h, 'pod')) as ReservationRecord['pod'],
    state: req(h, 'state') as ReservationState,
    createdAt: req(h, 'createdAt'),
    expiresAt: req(h, 'expiresAt'),
    ...opt('boundAt', h.boundAt),
    ...opt('endedAt', h.endedAt),
    ...opt('reason', h.reason),
    ...opt('remotePhase', h.remotePhase),
    ...opt('remoteNamespace', h.remoteNamespace),
    ...opt('remoteName', h.remoteName),
  };
}

export function toApiToken(h: Hash): ApiTokenRecord {
  return {
    id: req(h, 'id'),
    secretHash: req(h, 'secretHash'),
    role: req(h, 'role') as ApiTokenRecord['role'],
    description: req(h, 'description'),
    createdAt: req(h, 'createdAt'),
  };
}

export const isEmpty = (h: Hash): boolean => Object.keys(h).length === 0;

/** Runs a MULTI block; any command's error fails the whole call. */
export async function execAll(tx: ChainableCommander): Promise<unknown[]> {
  const replies = await tx.exec();
  if (!replies) throw new Error('redis transaction aborted');
  return replies.map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}
