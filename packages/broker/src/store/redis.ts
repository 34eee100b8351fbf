import { createHash, randomUUID } from 'node:crypto';
import { Redis, type ChainableCommander, type RedisOptions } from 'ioredis';
import {
  ErrorCode,
  SpillwayError,
  normalizeSerial,
  type Logger,
  type RevokedEntry,
} from '@spillway/common';
import type {
  ApiTokenRecord,
  CapacityUpdate,
  ClusterInventory,
  ClusterRecord,
  Component,
  ConnectionRecord,
  JoinTokenRecord,
  NodeInventory,
  PeeringRecord,
  ReservationFilter,
  ReservationRecord,
  ReservationState,
  ReserveRequest,
  ReserveResult,
} from '../model.js';
import type { Store, ViewFeed, ViewNotice } from './store.js';
import {
  compareReservations,
  compareText,
  isLive,
  newReservation,
  noFitReason,
  notFound,
  quotaViolation,
  storeUnavailable,
  tokenInvalid,
  validateReserveRequest,
} from './internal.js';
import { validateCapacityUpdate } from '../core/validate.js';

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

export interface RedisStoreOptions {
  /** Key prefix; several brokers (or tests) can share one Redis with distinct prefixes. */
  prefix?: string;
  logger?: Logger;
  /** How long a call waits for a (re)connecting client before STORE_UNAVAILABLE. */
  readyTimeoutMs?: number;
}

export const DEFAULT_REDIS_PREFIX = 'spillway:';

/**
 * Client options that make every call fail fast while Redis is down instead of queueing
 * forever, and keep reconnecting in the background with capped backoff.
 */
export function redisClientOptions() {
  return {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    commandTimeout: 5_000,
    // A resent Lua script could reserve twice; the caller retries with knowledge instead.
    autoResendUnfulfilledCommands: false,
    retryStrategy: (times: number) => Math.min(50 * 2 ** times, 2_000),
  } satisfies RedisOptions;
}

// Shared by release, endByPod and expire: a live reservation becomes finished, leaves the
// node's open set, the expiry index and the live-pod index, and stops counting in usage.
const FINISH_LUA = `
local function finish(P, id, state, reason, endedAt, endedMs)
  local rk = P .. 'rsv:' .. id
  local f = redis.call('HMGET', rk, 'state', 'donor', 'node', 'origin', 'gpus', 'podUid')
  if f[1] ~= 'open' and f[1] ~= 'bound' then return nil end
  redis.call('HSET', rk, 'state', state, 'endedAt', endedAt, 'reason', reason)
  redis.call('SREM', P .. 'rsv:open:' .. f[2] .. ':' .. f[3], id)
  redis.call('ZREM', P .. 'rsv:expiry', id)
  if redis.call('HGET', P .. 'rsv:pod', f[6]) == id then redis.call('HDEL', P .. 'rsv:pod', f[6]) end
  redis.call('SREM', P .. 'rsv:live:' .. f[2], id)
  local g = tonumber(f[5])
  local uk = P .. 'usage:' .. f[2]
  if redis.call('HINCRBY', uk, 'total', -g) <= 0 then redis.call('HDEL', uk, 'total') end
  if redis.call('HINCRBY', uk, 'o:' .. f[4], -g) <= 0 then redis.call('HDEL', uk, 'o:' .. f[4]) end
  redis.call('ZADD', P .. 'rsv:done', endedMs, id)
  return redis.call('HGETALL', rk)
end
`;

const LUA = {
  // ARGV: P, id, fields... ; creates the hash and indexes it only if the key is new.
  createIfAbsent: `
local P, id = ARGV[1], ARGV[2]
local key, index = P .. ARGV[3] .. id, P .. ARGV[4]
if redis.call('EXISTS', key) == 1 then return 0 end
redis.call('HSET', key, unpack(ARGV, 5))
redis.call('SADD', index, id)
return 1
`,
  // ARGV: P, id, secretHash, nowMs, usedAt
  consumeJoinToken: `
local k = ARGV[1] .. 'jt:' .. ARGV[2]
local t = redis.call('HMGET', k, 'secretHash', '_expiresMs', 'usedAt')
if not t[1] or t[3] or t[1] ~= ARGV[3] or tonumber(t[2]) <= tonumber(ARGV[4]) then return nil end
redis.call('HSET', k, 'usedAt', ARGV[5])
return redis.call('HGETALL', k)
`,
  // ARGV: P, id
  deleteCluster: `
local P, id = ARGV[1], ARGV[2]
redis.call('DEL', P .. 'cluster:' .. id, P .. 'inv:' .. id, P .. 'inv:' .. id .. ':nodes')
redis.call('SREM', P .. 'clusters', id)
redis.call('SREM', P .. 'invs', id)
for _, m in ipairs(redis.call('SMEMBERS', P .. 'conns')) do
  if string.sub(m, 1, #id + 1) == id .. ':' then
    redis.call('DEL', P .. 'conn:' .. m)
    redis.call('SREM', P .. 'conns', m)
  end
end
for _, m in ipairs(redis.call('SMEMBERS', P .. 'peerings')) do
  local sep = string.find(m, ':', 1, true)
  if string.sub(m, 1, sep - 1) == id or string.sub(m, sep + 1) == id then
    redis.call('DEL', P .. 'peering:' .. m)
    redis.call('SREM', P .. 'peerings', m)
  end
end
return 1
`,
  // ARGV: P, clusterId, full, sequence, updatedAt, nRemoved, removed..., (name, json)...
  applyCapacity: `
local P, c = ARGV[1], ARGV[2]
if redis.call('EXISTS', P .. 'cluster:' .. c) == 0 then return {'NOT_FOUND'} end
local full, seq = ARGV[3] == '1', tonumber(ARGV[4])
local ik, nk = P .. 'inv:' .. c, P .. 'inv:' .. c .. ':nodes'
local prev = redis.call('HGET', ik, 'sequence')
if prev and not full and seq < tonumber(prev) then return {'STALE'} end
local nRemoved = tonumber(ARGV[6])
if full then
  redis.call('DEL', nk)
else
  for i = 7, 6 + nRemoved do redis.call('HDEL', nk, ARGV[i]) end
end
for i = 7 + nRemoved, #ARGV, 2 do redis.call('HSET', nk, ARGV[i], ARGV[i + 1]) end
redis.call('HSET', ik, 'updatedAt', ARGV[5], 'sequence', ARGV[4])
redis.call('SADD', P .. 'invs', c)
local out = {'OK'}
for _, json in ipairs(redis.call('HVALS', nk)) do
  local uids = cjson.decode(json).offloadedPodUids
  if type(uids) == 'table' then
    for _, uid in ipairs(uids) do
      local id = redis.call('HGET', P .. 'rsv:pod', uid)
      if id then
        local rk = P .. 'rsv:' .. id
        local f = redis.call('HMGET', rk, 'state', 'donor', 'node')
        if f[1] == 'open' and f[2] == c then
          redis.call('HSET', rk, 'state', 'bound', 'boundAt', ARGV[5])
          redis.call('SREM', P .. 'rsv:open:' .. c .. ':' .. f[3], id)
          redis.call('ZREM', P .. 'rsv:expiry', id)
          table.insert(out, redis.call('HGETALL', rk))
        end
      else
        -- The donor runs a pod whose reservation lapsed before its report got here: the pod
        -- holds those GPUs all the same, so that reservation is bound again.
        local lid = redis.call('HGET', P .. 'rsv:lapsed', uid)
        if lid then
          local rk = P .. 'rsv:' .. lid
          local f = redis.call('HMGET', rk, 'state', 'donor', 'origin', 'gpus')
          if f[1] == 'expired' and f[2] == c then
            redis.call('HSET', rk, 'state', 'bound', 'boundAt', ARGV[5])
            redis.call('HDEL', rk, 'endedAt', 'reason')
            redis.call('HSET', P .. 'rsv:pod', uid, lid)
            redis.call('SADD', P .. 'rsv:live:' .. c, lid)
            redis.call('ZREM', P .. 'rsv:done', lid)
            local uk = P .. 'usage:' .. c
            redis.call('HINCRBY', uk, 'total', tonumber(f[4]))
            redis.call('HINCRBY', uk, 'o:' .. f[3], tonumber(f[4]))
            table.insert(out, redis.call('HGETALL', rk))
            redis.call('HDEL', P .. 'rsv:lapsed', uid)
          elseif f[1] ~= 'expired' then
            redis.call('HDEL', P .. 'rsv:lapsed', uid)
          end
        end
      end
    end
  end
end
return out
`,
  // ARGV: P, clusterId, component, brokerId, lastSeenAt
  touchConnection: `
local k = ARGV[1] .. 'conn:' .. ARGV[2] .. ':' .. ARGV[3]
if redis.call('HGET', k, 'brokerId') ~= ARGV[4] then return 0 end
redis.call('HSET', k, 'lastSeenAt', ARGV[5])
return 1
`,
  // ARGV: P, clusterId, component, brokerId
  deleteConnection: `
local m = ARGV[2] .. ':' .. ARGV[3]
local k = ARGV[1] .. 'conn:' .. m
if redis.call('HGET', k, 'brokerId') ~= ARGV[4] then return 0 end
redis.call('DEL', k)
redis.call('SREM', ARGV[1] .. 'conns', m)
return 1
`,
  // ARGV: P, id, origin, donor, node, resource, gpus, podUid, podJson, createdAt,
  //       expiresAt, createdMs, expiresMs, peeringMax, donorMax, perOriginMax
  reserve: `
local P, id, origin, donor, node, resource = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local gpus, podUid = tonumber(ARGV[7]), ARGV[8]
local rk = P .. 'rsv:' .. id
if redis.call('EXISTS', rk) == 1 then return {'ALREADY_EXISTS', 'id', id} end
local live = redis.call('HGET', P .. 'rsv:pod', podUid)
if live then return {'ALREADY_EXISTS', 'pod', live} end
local free, counted = 0, {}
local nodeJson = redis.call('HGET', P .. 'inv:' .. donor .. ':nodes', node)
if nodeJson then
  local n = cjson.decode(nodeJson)
  if n.ready == true and n.cordoned ~= true and type(n.gpus) == 'table'
      and type(n.gpus[resource]) == 'table' then
    free = tonumber(n.gpus[resource].free) or 0
  end
  if type(n.offloadedPodUids) == 'table' then
    for _, u in ipairs(n.offloadedPodUids) do counted[u] = true end
  end
end
local openKey = P .. 'rsv:open:' .. donor .. ':' .. node
if free > 0 then
  for _, oid in ipairs(redis.call('SMEMBERS', openKey)) do
    local f = redis.call('HMGET', P .. 'rsv:' .. oid, 'resource', 'gpus', 'podUid')
    if f[1] == resource and not counted[f[3]] then free = free - tonumber(f[2]) end
  end
end
if free < gpus then return {'NO_FIT', tostring(free)} end
local uk = P .. 'usage:' .. donor
local total = tonumber(redis.call('HGET', uk, 'total') or '0')
local mine = tonumber(redis.call('HGET', uk, 'o:' .. origin) or '0')
local peeringMax, donorMax, perOriginMax = tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16])
if (peeringMax > 0 and mine + gpus > peeringMax) or (perOriginMax > 0 and mine + gpus > perOriginMax)
    or (donorMax > 0 and total + gpus > donorMax) then
  return {'QUOTA_EXCEEDED', tostring(total), tostring(mine)}
end
redis.call('HSET', rk, 'id', id, 'origin', origin, 'donor', donor, 'node', node,
  'resource', resource, 'gpus', ARGV[7], 'podUid', podUid, 'pod', ARGV[9], 'state', 'open',
  'createdAt', ARGV[10], 'expiresAt', ARGV[11])
redis.call('ZADD', P .. 'rsv:all', ARGV[12], id)
redis.call('HSET', P .. 'rsv:pod', podUid, id)
redis.call('SADD', P .. 'rsv:live:' .. donor, id)
redis.call('HDEL', P .. 'rsv:lapsed', podUid)
redis.call('SADD', openKey, id)
redis.call('ZADD', P .. 'rsv:expiry', ARGV[13], id)
redis.call('HINCRBY', uk, 'total', gpus)
redis.call('HINCRBY', uk, 'o:' .. origin, gpus)
return {'OK'}
`,
  // ARGV: P, id, reason, endedAt, endedMs
  release: `${FINISH_LUA}
return finish(ARGV[1], ARGV[2], 'released', ARGV[3], ARGV[4], ARGV[5])
`,
  // ARGV: P, podUid, reason, endedAt, endedMs
  endByPod: `${FINISH_LUA}
local id = redis.call('HGET', ARGV[1] .. 'rsv:pod', ARGV[2])
if not id then return nil end
return finish(ARGV[1], id, 'ended', ARGV[3], ARGV[4], ARGV[5])
`,
  // ARGV: P, nowMs, reason, endedAt
  expire: `${FINISH_LUA}
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', ARGV[1] .. 'rsv:expiry', '-inf', ARGV[2])) do
  local r = finish(ARGV[1], id, 'expired', ARGV[3], ARGV[4], ARGV[2])
  if r then
    table.insert(out, r)
    redis.call('HSET', ARGV[1] .. 'rsv:lapsed', redis.call('HGET', ARGV[1] .. 'rsv:' .. id, 'podUid'), id)
  end
end
return out
`,
  // ARGV: P, id, expiresAt, expiresMs
  extend: `
local rk = ARGV[1] .. 'rsv:' .. ARGV[2]
if redis.call('HGET', rk, 'state') ~= 'open' then return nil end
redis.call('HSET', rk, 'expiresAt', ARGV[3])
redis.call('ZADD', ARGV[1] .. 'rsv:expiry', ARGV[4], ARGV[2])
return redis.call('HGETALL', rk)
`,
  // ARGV: P, podUid, (field, value)...
  updateRemoteStatus: `
local id = redis.call('HGET', ARGV[1] .. 'rsv:pod', ARGV[2])
if not id then return 0 end
if #ARGV > 2 then redis.call('HSET', ARGV[1] .. 'rsv:' .. id, unpack(ARGV, 3)) end
return 1
`,
  // ARGV: P, olderThanMs (exclusive), batch
  pruneFinished: `
local P = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', P .. 'rsv:done', '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  local uid = redis.call('HGET', P .. 'rsv:' .. id, 'podUid')
  if uid and redis.call('HGET', P .. 'rsv:lapsed', uid) == id then redis.call('HDEL', P .. 'rsv:lapsed', uid) end
  redis.call('DEL', P .. 'rsv:' .. id)
  redis.call('ZREM', P .. 'rsv:all', id)
  redis.call('ZREM', P .. 'rsv:done', id)
end
return #ids
`,
} as const;

type ScriptName = keyof typeof LUA;
const SHA: Record<ScriptName, string> = Object.fromEntries(
  Object.entries(LUA).map(([k, v]) => [k, createHash('sha1').update(v).digest('hex')]),
) as Record<ScriptName, string>;

type Hash = Record<string, string>;

/** Lua returns HGETALL as a flat [field, value, ...] array. */
function fromFlat(reply: unknown): Hash {
  const out: Hash = {};
  if (!Array.isArray(reply)) return out;
  for (let i = 0; i + 1 < reply.length; i += 2) out[String(reply[i])] = String(reply[i + 1]);
  return out;
}

function opt<K extends string>(key: K, v: string | undefined): { [P in K]?: string } {
  return v === undefined || v === '' ? {} : ({ [key]: v } as { [P in K]?: string });
}

/** HSET arguments of a record, skipping unset optional fields. */
function fields(obj: Record<string, string | number | undefined>): (string | number)[] {
  return Object.entries(obj).flatMap(([k, v]) => (v === undefined ? [] : [k, v]));
}

const req = (h: Hash, k: string): string => h[k] ?? '';

function toToken(h: Hash): JoinTokenRecord {
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

function toCluster(h: Hash): ClusterRecord {
  return {
    id: req(h, 'id'),
    role: req(h, 'role') as ClusterRecord['role'],
    createdAt: req(h, 'createdAt'),
    ...opt('certSerial', h.certSerial),
    ...opt('certNotAfter', h.certNotAfter),
    policy: JSON.parse(req(h, 'policy')) as ClusterRecord['policy'],
    ...opt('revokedAt', h.revokedAt),
  };
}

function toPeering(h: Hash): PeeringRecord {
  return {
    origin: req(h, 'origin'),
    donor: req(h, 'donor'),
    maxGpus: Number(h.maxGpus),
    gpuProducts: JSON.parse(req(h, 'gpuProducts')) as string[],
    createdAt: req(h, 'createdAt'),
    ...opt('deletingSince', h.deletingSince),
  };
}

function toConnection(h: Hash): ConnectionRecord {
  return {
    clusterId: req(h, 'clusterId'),
    component: req(h, 'component') as Component,
    brokerId: req(h, 'brokerId'),
    connectedAt: req(h, 'connectedAt'),
    lastSeenAt: req(h, 'lastSeenAt'),
  };
}

function toReservation(h: Hash): ReservationRecord {
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

function toApiToken(h: Hash): ApiTokenRecord {
  return {
    id: req(h, 'id'),
    secretHash: req(h, 'secretHash'),
    role: req(h, 'role') as ApiTokenRecord['role'],
    description: req(h, 'description'),
    createdAt: req(h, 'createdAt'),
  };
}

const isEmpty = (h: Hash): boolean => Object.keys(h).length === 0;

/** Runs a MULTI block; any command's error fails the whole call. */
async function execAll(tx: ChainableCommander): Promise<unknown[]> {
  const replies = await tx.exec();
  if (!replies) throw new Error('redis transaction aborted');
  return replies.map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}

/** The HA store: every broker replica shares its state through one Redis. */
export class RedisStore implements Store {
  readonly kind = 'redis' as const;
  readonly prefix: string;
  private readonly client: Redis;
  private readonly owned: boolean;
  private readonly logger: Logger | undefined;
  private readonly readyTimeoutMs: number;
  private closed = false;
  private waitingReady: Promise<void> | undefined;
  private down = false;

  constructor(connection: Redis | string, options: RedisStoreOptions = {}) {
    this.prefix = options.prefix ?? DEFAULT_REDIS_PREFIX;
    this.logger = options.logger;
    this.readyTimeoutMs = options.readyTimeoutMs ?? 2_000;
    if (typeof connection === 'string') {
      this.client = new Redis(connection, redisClientOptions());
      this.owned = true;
      // Without a listener ioredis prints every reconnect failure; log each outage once.
      this.client.on('error', (err: Error) => {
        if (!this.down) this.logger?.warn({ err: err.message }, 'redis store connection lost');
        this.down = true;
      });
      this.client.on('ready', () => {
        if (this.down) this.logger?.info('redis store reconnected');
        this.down = false;
      });
    } else {
      this.client = connection;
      this.owned = false;
    }
  }

  private k(key: string): string {
    return this.prefix + key;
  }

  openFeed(): ViewFeed {
    const channel = this.k('view');
    const self = randomUUID();
    let sub: Redis | undefined;
    return {
      publish: (notice) => {
        if (this.closed || this.client.status !== 'ready') return;
        this.client.publish(channel, JSON.stringify({ from: self, notice })).catch(() => {
          // A lost notice is repaired by the next full re-read of the view.
        });
      },
      subscribe: async (onNotice) => {
        sub = this.client.duplicate({ enableOfflineQueue: true });
        sub.on('error', (err: Error) =>
          this.logger?.debug({ err: err.message }, 'view feed connection error'),
        );
        sub.on('message', (_channel: string, message: string) => {
          try {
            const m = JSON.parse(message) as { from?: string; notice?: ViewNotice };
            if (m.from !== self && m.notice) onNotice(m.notice);
          } catch (err) {
            this.logger?.warn({ err }, 'unreadable view notice ignored');
          }
        });
        await sub.subscribe(channel);
      },
      close: async () => {
        const s = sub;
        sub = undefined;
        if (s) await s.quit().catch(() => s.disconnect());
      },
    };
  }

  /** Waits (bounded) for a connecting client; a down Redis is STORE_UNAVAILABLE, not a hang. */
  private async ready(): Promise<void> {
    if (this.closed) throw new SpillwayError(ErrorCode.STORE_UNAVAILABLE, 'redis store is closed');
    const c = this.client;
    if (c.status === 'ready') return;
    if (c.status === 'end') {
      throw new SpillwayError(ErrorCode.STORE_UNAVAILABLE, 'redis store: the connection has ended');
    }
    this.waitingReady ??= new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        clearTimeout(timer);
        c.off('ready', onReady);
        c.off('end', onEnd);
        this.waitingReady = undefined;
        if (err) reject(err);
        else resolve();
      };
      const onReady = (): void => done();
      const onEnd = (): void => done(new Error('the connection has ended'));
      const timer = setTimeout(
        () => done(new Error(`not connected after ${this.readyTimeoutMs} ms`)),
        this.readyTimeoutMs,
      );
      c.on('ready', onReady);
      c.on('end', onEnd);
      if (c.status === 'wait') {
        c.connect().catch(() => {
          // Reported through the timeout or 'end'; the client keeps retrying on its own.
        });
      }
    });
    try {
      await this.waitingReady;
    } catch (err) {
      throw storeUnavailable('redis', err);
    }
  }

  /** Runs one operation; connection failures become STORE_UNAVAILABLE. */
  private async op<T>(fn: () => Promise<T>): Promise<T> {
    await this.ready();
    try {
      return await fn();
    } catch (err) {
      throw mapRedisError(err);
    }
  }

  private async script(name: ScriptName, args: (string | number)[]): Promise<unknown> {
    try {
      return await this.client.evalsha(SHA[name], 0, this.prefix, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return await this.client.eval(LUA[name], 0, this.prefix, ...args);
    }
  }

  private async hashes(keys: string[]): Promise<Hash[]> {
    if (keys.length === 0) return [];
    const pipe = this.client.pipeline();
    for (const key of keys) pipe.hgetall(this.k(key));
    const replies = (await pipe.exec()) ?? [];
    return replies.flatMap(([err, h]) => {
      if (err) throw err;
      const hash = h as Hash;
      return isEmpty(hash) ? [] : [hash];
    });
  }

  ping(): Promise<void> {
    return this.op(async () => {
      await this.client.ping();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.owned) return;
    try {
      await this.client.quit();
    } catch {
      // Already disconnected: nothing left to flush.
      this.client.disconnect();
    }
  }

  // Join tokens.

  async createJoinToken(t: JoinTokenRecord): Promise<void> {
    const expiresMs = Date.parse(t.expiresAt);
    if (Number.isNaN(expiresMs)) {
      throw new SpillwayError(
        ErrorCode.INVALID_ARGUMENT,
        `expiresAt: ${JSON.stringify(t.expiresAt)} is not an RFC 3339 time`,
        { field: 'expiresAt' },
      );
    }
    return this.op(async () => {
      const created = await this.script('createIfAbsent', [
        t.id,
        'jt:',
        'jts',
        ...fields({ ...t, _expiresMs: expiresMs }),
      ]);
      if (created !== 1) {
        throw new SpillwayError(ErrorCode.ALREADY_EXISTS, `id: join token ${t.id} already exists`, {
          field: 'id',
        });
      }
    });
  }

  consumeJoinToken(id: string, secretHash: string, now: Date): Promise<JoinTokenRecord> {
    return this.op(async () => {
      const reply = await this.script('consumeJoinToken', [
        id,
        secretHash,
        now.getTime(),
        now.toISOString(),
      ]);
      if (reply === null) throw tokenInvalid();
      return toToken(fromFlat(reply));
    });
  }

  listJoinTokens(): Promise<JoinTokenRecord[]> {
    return this.op(async () => {
      const ids = await this.client.smembers(this.k('jts'));
      return (await this.hashes(ids.map((id) => `jt:${id}`)))
        .map(toToken)
        .sort((a, b) => compareText(a.createdAt, b.createdAt) || compareText(a.id, b.id));
    });
  }

  // Clusters.

  putCluster(c: ClusterRecord): Promise<void> {
    return this.op(async () => {
      const key = this.k(`cluster:${c.id}`);
      // DEL first so optional fields that were unset disappear; MULTI makes it one step.
      await execAll(
        this.client
          .multi()
          .del(key)
          .hset(
            key,
            ...fields({
              id: c.id,
              role: c.role,
              createdAt: c.createdAt,
              certSerial: c.certSerial,
              certNotAfter: c.certNotAfter,
              policy: JSON.stringify(c.policy),
              revokedAt: c.revokedAt,
            }),
          )
          .sadd(this.k('clusters'), c.id),
      );
    });
  }

  getCluster(id: string): Promise<ClusterRecord | undefined> {
    return this.op(async () => {
      const [h] = await this.hashes([`cluster:${id}`]);
      return h ? toCluster(h) : undefined;
    });
  }

  listClusters(): Promise<ClusterRecord[]> {
    return this.op(async () => {
      const ids = (await this.client.smembers(this.k('clusters'))).sort(compareText);
      return (await this.hashes(ids.map((id) => `cluster:${id}`))).map(toCluster);
    });
  }

  deleteCluster(id: string): Promise<void> {
    return this.op(async () => {
      await this.script('deleteCluster', [id]);
    });
  }

  // Revocation.

  revoke(e: RevokedEntry): Promise<void> {
    return this.op(async () => {
      const serial = normalizeSerial(e.serial);
      await this.client.hset(this.k('revoked'), serial, JSON.stringify({ ...e, serial }));
    });
  }

  isRevoked(serial: string): Promise<boolean> {
    return this.op(
      async () => (await this.client.hexists(this.k('revoked'), normalizeSerial(serial))) === 1,
    );
  }

  listRevoked(): Promise<RevokedEntry[]> {
    return this.op(async () =>
      (await this.client.hvals(this.k('revoked')))
        .map((v) => JSON.parse(v) as RevokedEntry)
        .sort((a, b) => compareText(a.revokedAt, b.revokedAt) || compareText(a.serial, b.serial)),
    );
  }

  // Peerings.

  putPeering(p: PeeringRecord): Promise<void> {
    return this.op(async () => {
      const member = `${p.origin}:${p.donor}`;
      const key = this.k(`peering:${member}`);
      await execAll(
        this.client
          .multi()
          .del(key)
          .hset(
            key,
            ...fields({
              origin: p.origin,
              donor: p.donor,
              maxGpus: p.maxGpus,
              gpuProducts: JSON.stringify(p.gpuProducts),
              createdAt: p.createdAt,
              deletingSince: p.deletingSince,
            }),
          )
          .sadd(this.k('peerings'), member),
      );
    });
  }

  getPeering(origin: string, donor: string): Promise<PeeringRecord | undefined> {
    return this.op(async () => {
      const [h] = await this.hashes([`peering:${origin}:${donor}`]);
      return h ? toPeering(h) : undefined;
    });
  }

  listPeerings(filter: { origin?: string; donor?: string } = {}): Promise<PeeringRecord[]> {
    return this.op(async () => {
      const members = (await this.client.smembers(this.k('peerings'))).filter((m) => {
        const [o, d] = m.split(':');
        return (
          (filter.origin === undefined || o === filter.origin) &&
          (filter.donor === undefined || d === filter.donor)
        );
      });
      return (await this.hashes(members.map((m) => `peering:${m}`)))
        .map(toPeering)
        .sort((a, b) => compareText(a.origin, b.origin) || compareText(a.donor, b.donor));
    });
  }

  deletePeering(origin: string, donor: string): Promise<boolean> {
    return this.op(async () => {
      const member = `${origin}:${donor}`;
      const [deleted] = await execAll(
        this.client
          .multi()
          .del(this.k(`peering:${member}`))
          .srem(this.k('peerings'), member),
      );
      return deleted === 1;
    });
  }

  // Inventory.

  async applyCapacity(
    clusterId: string,
    update: CapacityUpdate,
    now: Date,
  ): Promise<ReservationRecord[]> {
    validateCapacityUpdate(update);
    return this.op(async () => {
      const removed = update.full ? [] : update.removedNodes;
      const reply = (await this.script('applyCapacity', [
        clusterId,
        update.full ? '1' : '0',
        update.sequence,
        now.toISOString(),
        removed.length,
        ...removed,
        ...update.nodes.flatMap((n) => [n.name, JSON.stringify(n)]),
      ])) as [string, ...unknown[]];
      if (reply[0] === 'NOT_FOUND') throw notFound(`cluster ${clusterId}`, 'clusterId');
      return reply.slice(1).map((r) => toReservation(fromFlat(r)));
    });
  }

  private async readInventories(ids: string[]): Promise<ClusterInventory[]> {
    if (ids.length === 0) return [];
    const tx = this.client.multi();
    for (const id of ids) tx.hgetall(this.k(`inv:${id}`)).hgetall(this.k(`inv:${id}:nodes`));
    const replies = await execAll(tx);
    const out: ClusterInventory[] = [];
    ids.forEach((clusterId, i) => {
      const h = (replies[2 * i] ?? {}) as Hash;
      const nodes = replies[2 * i + 1];
      if (isEmpty(h)) return;
      out.push({
        clusterId,
        nodes: Object.values((nodes ?? {}) as Hash)
          .map((json) => JSON.parse(json) as NodeInventory)
          .sort((a, b) => compareText(a.name, b.name)),
        updatedAt: req(h, 'updatedAt'),
        sequence: Number(h.sequence),
      });
    });
    return out;
  }

  getInventory(clusterId: string): Promise<ClusterInventory | undefined> {
    return this.op(async () => (await this.readInventories([clusterId]))[0]);
  }

  listInventories(): Promise<ClusterInventory[]> {
    return this.op(async () =>
      this.readInventories((await this.client.smembers(this.k('invs'))).sort(compareText)),
    );
  }

  clearInventory(clusterId: string): Promise<void> {
    return this.op(async () => {
      await execAll(
        this.client
          .multi()
          .del(this.k(`inv:${clusterId}`), this.k(`inv:${clusterId}:nodes`))
          .srem(this.k('invs'), clusterId),
      );
    });
  }

  // Connections.

  putConnection(c: ConnectionRecord): Promise<void> {
    return this.op(async () => {
      const member = `${c.clusterId}:${c.component}`;
      await execAll(
        this.client
          .multi()
          .hset(this.k(`conn:${member}`), ...fields({ ...c }))
          .sadd(this.k('conns'), member),
      );
    });
  }

  touchConnection(
    clusterId: string,
    component: Component,
    brokerId: string,
    now: Date,
  ): Promise<void> {
    return this.op(async () => {
      await this.script('touchConnection', [clusterId, component, brokerId, now.toISOString()]);
    });
  }

  deleteConnection(clusterId: string, component: Component, brokerId: string): Promise<void> {
    return this.op(async () => {
      await this.script('deleteConnection', [clusterId, component, brokerId]);
    });
  }

  listConnections(): Promise<ConnectionRecord[]> {
    return this.op(async () => {
      const members = (await this.client.smembers(this.k('conns'))).sort(compareText);
      return (await this.hashes(members.map((m) => `conn:${m}`))).map(toConnection);
    });
  }

  // Reservations.

  async reserve(r: ReserveRequest, now: Date): Promise<ReserveResult> {
    validateReserveRequest(r);
    return this.op(async () => {
      const rec = newReservation(r, now);
      const reply = (await this.script('reserve', [
        rec.id,
        rec.origin,
        rec.donor,
        rec.node,
        rec.resource,
        rec.gpus,
        rec.pod.uid,
        JSON.stringify(rec.pod),
        rec.createdAt,
        rec.expiresAt,
        now.getTime(),
        Date.parse(rec.expiresAt),
        r.peeringMaxGpus,
        r.donorMaxGpus,
        r.donorMaxGpusPerOrigin,
      ])) as string[];
      switch (reply[0]) {
        case 'OK':
          return { ok: true, reservation: rec };
        case 'NO_FIT':
          return { ok: false, code: 'NO_FIT', reason: noFitReason(r, Number(reply[1])) };
        case 'QUOTA_EXCEEDED':
          return {
            ok: false,
            code: 'QUOTA_EXCEEDED',
            reason:
              quotaViolation(r, { total: Number(reply[1]), origin: Number(reply[2]) }) ??
              `a GPU limit of donor ${r.donor} would be passed`,
          };
        case 'ALREADY_EXISTS':
          return {
            ok: false,
            code: 'ALREADY_EXISTS',
            reason:
              reply[1] === 'id'
                ? `reservation ${r.id} already exists`
                : `pod ${r.pod.namespace}/${r.pod.name} (uid ${r.pod.uid}) already has live reservation ${reply[2]}`,
          };
        default:
          throw new SpillwayError(
            ErrorCode.INTERNAL,
            `redis store: unexpected reserve reply ${String(reply[0])}`,
          );
      }
    });
  }

  release(id: string, reason: string, now: Date): Promise<ReservationRecord | undefined> {
    return this.op(async () => {
      const reply = await this.script('release', [id, reason, now.toISOString(), now.getTime()]);
      return reply === null ? undefined : toReservation(fromFlat(reply));
    });
  }

  endByPod(podUid: string, reason: string, now: Date): Promise<ReservationRecord | undefined> {
    return this.op(async () => {
      const reply = await this.script('endByPod', [
        podUid,
        reason,
        now.toISOString(),
        now.getTime(),
      ]);
      return reply === null ? undefined : toReservation(fromFlat(reply));
    });
  }

  expire(now: Date): Promise<ReservationRecord[]> {
    return this.op(async () => {
      const reply = (await this.script('expire', [
        now.getTime(),
        'reservation TTL expired',
        now.toISOString(),
      ])) as unknown[];
      return reply.map((r) => toReservation(fromFlat(r)));
    });
  }

  extend(id: string, expiresAt: Date): Promise<ReservationRecord | undefined> {
    return this.op(async () => {
      const reply = await this.script('extend', [id, expiresAt.toISOString(), expiresAt.getTime()]);
      return reply === null ? undefined : toReservation(fromFlat(reply));
    });
  }

  getReservation(id: string): Promise<ReservationRecord | undefined> {
    return this.op(async () => {
      const [h] = await this.hashes([`rsv:${id}`]);
      return h ? toReservation(h) : undefined;
    });
  }

  findReservationByPod(podUid: string): Promise<ReservationRecord | undefined> {
    return this.op(async () => {
      const id = await this.client.hget(this.k('rsv:pod'), podUid);
      if (id === null) return undefined;
      const [h] = await this.hashes([`rsv:${id}`]);
      const r = h ? toReservation(h) : undefined;
      // It may have finished between the two reads.
      return r && isLive(r.state) ? r : undefined;
    });
  }

  listReservations(filter: ReservationFilter = {}): Promise<ReservationRecord[]> {
    return this.op(async () => {
      // Live reservations are indexed by pod; only history needs the full list.
      const liveOnly =
        filter.states !== undefined && filter.states.length > 0 && filter.states.every(isLive);
      const ids = !liveOnly
        ? await this.client.zrange(this.k('rsv:all'), 0, '-1')
        : filter.donor !== undefined
          ? await this.client.smembers(this.k(`rsv:live:${filter.donor}`))
          : await this.client.hvals(this.k('rsv:pod'));
      const states = filter.states && filter.states.length > 0 ? new Set(filter.states) : undefined;
      return (await this.hashes(ids.map((id) => `rsv:${id}`)))
        .map(toReservation)
        .filter(
          (r) =>
            (filter.origin === undefined || r.origin === filter.origin) &&
            (filter.donor === undefined || r.donor === filter.donor) &&
            (states === undefined || states.has(r.state)),
        )
        .sort(compareReservations);
    });
  }

  updateRemoteStatus(
    podUid: string,
    status: { remotePhase?: string; remoteNamespace?: string; remoteName?: string },
  ): Promise<void> {
    return this.op(async () => {
      const found = await this.script('updateRemoteStatus', [
        podUid,
        ...fields({
          remotePhase: status.remotePhase,
          remoteNamespace: status.remoteNamespace,
          remoteName: status.remoteName,
        }),
      ]);
      if (found !== 1) throw notFound(`live reservation of pod uid ${podUid}`, 'podUid');
    });
  }

  usage(donor: string): Promise<{ total: number; byOrigin: Record<string, number> }> {
    return this.op(async () => {
      const h = await this.client.hgetall(this.k(`usage:${donor}`));
      const byOrigin: Record<string, number> = {};
      for (const [k, v] of Object.entries(h)) {
        if (k.startsWith('o:') && Number(v) > 0) byOrigin[k.slice(2)] = Number(v);
      }
      return { total: Math.max(0, Number(h.total ?? 0)), byOrigin };
    });
  }

  /** Deletes reservations that finished before `olderThan`; returns how many. */
  pruneFinished(olderThan: Date): Promise<number> {
    return this.op(async () => {
      const batch = 1000;
      let total = 0;
      // Batches keep each script short so other replicas are not blocked behind it.
      for (;;) {
        const n = Number(await this.script('pruneFinished', [olderThan.getTime(), batch]));
        total += n;
        if (n < batch) return total;
      }
    });
  }

  // REST API tokens.

  putApiToken(t: ApiTokenRecord): Promise<void> {
    return this.op(async () => {
      const key = this.k(`apitoken:${t.id}`);
      await execAll(
        this.client
          .multi()
          .del(key)
          .hset(key, ...fields({ ...t }))
          .sadd(this.k('apitokens'), t.id),
      );
    });
  }

  getApiToken(id: string): Promise<ApiTokenRecord | undefined> {
    return this.op(async () => {
      const [h] = await this.hashes([`apitoken:${id}`]);
      return h ? toApiToken(h) : undefined;
    });
  }

  listApiTokens(): Promise<ApiTokenRecord[]> {
    return this.op(async () => {
      const ids = await this.client.smembers(this.k('apitokens'));
      return (await this.hashes(ids.map((id) => `apitoken:${id}`)))
        .map(toApiToken)
        .sort((a, b) => compareText(a.createdAt, b.createdAt) || compareText(a.id, b.id));
    });
  }

  deleteApiToken(id: string): Promise<boolean> {
    return this.op(async () => {
      const [deleted] = await execAll(
        this.client
          .multi()
          .del(this.k(`apitoken:${id}`))
          .srem(this.k('apitokens'), id),
      );
      return deleted === 1;
    });
  }
}

/** Server replies about our own data are bugs (INTERNAL); everything else is the link. */
function mapRedisError(err: unknown): SpillwayError {
  if (err instanceof SpillwayError) return err;
  const e = err as { name?: string; message?: string };
  const message = e.message ?? String(err);
  const transient = /^(LOADING|BUSY|READONLY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN)\b/.test(message);
  if (e.name === 'ReplyError' && !transient) {
    return new SpillwayError(ErrorCode.INTERNAL, `redis store: ${message}`, { cause: err });
  }
  return storeUnavailable('redis', err);
}
