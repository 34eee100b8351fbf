import { createHash } from 'node:crypto';
import { RESERVE_GANG_LUA_BODY } from './redis-gang-lua.js';

/*
 * The Redis store's Lua scripts (data layout in redis-codec.ts). Every change that reads before it
 * writes, or touches an index with its record, is one script, so replicas sharing this
 * Redis never interleave inside it. ARGV[1] is always the key prefix.
 */

/**
 * reservableGpus (internal.ts) in Lua: `n` is the decoded node inventory (false or nil when
 * absent), `claims` the open reservations on that node as {resource, gpus, podUid}.
 * redis-lua.int.test.ts runs both on the same random inputs.
 */
export const RESERVABLE_GPUS_LUA = `
local function reservable_gpus(n, resource, claims)
  if not n or n.ready ~= true or n.cordoned == true or type(n.gpus) ~= 'table'
      or type(n.gpus[resource]) ~= 'table' then
    return 0
  end
  local free = tonumber(n.gpus[resource].free) or 0
  if free == 0 then return 0 end
  local counted = {}
  if type(n.offloadedPodUids) == 'table' then
    for _, u in ipairs(n.offloadedPodUids) do counted[u] = true end
  end
  for _, c in ipairs(claims) do
    if c[1] == resource and not counted[c[3]] then free = free - tonumber(c[2]) end
  end
  return free
end
`;

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

export const LUA = {
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
  reserve: `${RESERVABLE_GPUS_LUA}
local P, id, origin, donor, node, resource = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local gpus, podUid = tonumber(ARGV[7]), ARGV[8]
local rk = P .. 'rsv:' .. id
if redis.call('EXISTS', rk) == 1 then return {'ALREADY_EXISTS', 'id', id} end
local live = redis.call('HGET', P .. 'rsv:pod', podUid)
if live then return {'ALREADY_EXISTS', 'pod', live} end
local nodeJson = redis.call('HGET', P .. 'inv:' .. donor .. ':nodes', node)
local openKey = P .. 'rsv:open:' .. donor .. ':' .. node
local claims = {}
if nodeJson then
  for _, oid in ipairs(redis.call('SMEMBERS', openKey)) do
    table.insert(claims, redis.call('HMGET', P .. 'rsv:' .. oid, 'resource', 'gpus', 'podUid'))
  end
end
local free = reservable_gpus(nodeJson and cjson.decode(nodeJson), resource, claims)
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
  // See redis-gang.ts.
  reserveGang: `${RESERVABLE_GPUS_LUA}${RESERVE_GANG_LUA_BODY}`,
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

export type ScriptName = keyof typeof LUA;
export const SHA: Record<ScriptName, string> = Object.fromEntries(
  Object.entries(LUA).map(([k, v]) => [k, createHash('sha1').update(v).digest('hex')]),
) as Record<ScriptName, string>;
