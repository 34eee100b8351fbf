/**
 * reserveGang() on Redis: one script checks every member (each node's open claims plus the
 * members placed on it before, and the gang's total against the limits), and only when all
 * pass writes every reservation exactly as `reserve` does. Nothing is written otherwise.
 *
 * Run after RESERVABLE_GPUS_LUA (redis-lua.ts composes them).
 *
 * ARGV: P, origin, donor, createdAt, expiresAt, createdMs, expiresMs, peeringMax, donorMax,
 *       perOriginMax, n, then per member: id, node, resource, gpus, podUid, podJson.
 * Replies: {'OK'} | {'ALREADY_EXISTS', i, 'id'|'pod', id} | {'NO_FIT', i, free}
 *        | {'QUOTA_EXCEEDED', total, mine, gangGpus}.
 */
export const RESERVE_GANG_LUA_BODY = `
local P, origin, donor = ARGV[1], ARGV[2], ARGV[3]
local n = tonumber(ARGV[11])
local nodes, claims = {}, {}
local sum = 0
for i = 1, n do
  local b = 12 + (i - 1) * 6
  local id, node, resource, gpus, uid = ARGV[b], ARGV[b + 1], ARGV[b + 2], tonumber(ARGV[b + 3]), ARGV[b + 4]
  if redis.call('EXISTS', P .. 'rsv:' .. id) == 1 then return {'ALREADY_EXISTS', tostring(i), 'id', id} end
  local live = redis.call('HGET', P .. 'rsv:pod', uid)
  if live then return {'ALREADY_EXISTS', tostring(i), 'pod', live} end
  if nodes[node] == nil then
    local json = redis.call('HGET', P .. 'inv:' .. donor .. ':nodes', node)
    nodes[node] = json and cjson.decode(json) or false
    local list = {}
    if json then
      for _, oid in ipairs(redis.call('SMEMBERS', P .. 'rsv:open:' .. donor .. ':' .. node)) do
        table.insert(list, redis.call('HMGET', P .. 'rsv:' .. oid, 'resource', 'gpus', 'podUid'))
      end
    end
    claims[node] = list
  end
  local free = reservable_gpus(nodes[node], resource, claims[node])
  if not nodes[node] or free < gpus then return {'NO_FIT', tostring(i), tostring(free)} end
  table.insert(claims[node], {resource, tostring(gpus), uid})
  sum = sum + gpus
end
local uk = P .. 'usage:' .. donor
local total = tonumber(redis.call('HGET', uk, 'total') or '0')
local mine = tonumber(redis.call('HGET', uk, 'o:' .. origin) or '0')
local peeringMax, donorMax, perOriginMax = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
if (peeringMax > 0 and mine + sum > peeringMax) or (perOriginMax > 0 and mine + sum > perOriginMax)
    or (donorMax > 0 and total + sum > donorMax) then
  return {'QUOTA_EXCEEDED', tostring(total), tostring(mine), tostring(sum)}
end
for i = 1, n do
  local b = 12 + (i - 1) * 6
  local id, node, uid = ARGV[b], ARGV[b + 1], ARGV[b + 4]
  local rk = P .. 'rsv:' .. id
  redis.call('HSET', rk, 'id', id, 'origin', origin, 'donor', donor, 'node', node,
    'resource', ARGV[b + 2], 'gpus', ARGV[b + 3], 'podUid', uid, 'pod', ARGV[b + 5], 'state', 'open',
    'createdAt', ARGV[4], 'expiresAt', ARGV[5])
  redis.call('ZADD', P .. 'rsv:all', ARGV[6], id)
  redis.call('HSET', P .. 'rsv:pod', uid, id)
  redis.call('SADD', P .. 'rsv:live:' .. donor, id)
  redis.call('HDEL', P .. 'rsv:lapsed', uid)
  redis.call('SADD', P .. 'rsv:open:' .. donor .. ':' .. node, id)
  redis.call('ZADD', P .. 'rsv:expiry', ARGV[7], id)
end
if sum > 0 then
  redis.call('HINCRBY', uk, 'total', sum)
  redis.call('HINCRBY', uk, 'o:' .. origin, sum)
end
return {'OK'}
`;
