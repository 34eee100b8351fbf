import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { UsageRecord } from '../model.js';
import { usageIdentity, validateUsageRecord } from './usage-record.js';

/*
 * The usage ledger on Redis (P = key prefix):
 *   P ledger:r:<reservation> hash {record: JSON of the record without its times, startMs, endMs?}
 *   P ledger:start          zset reservation -> startMs (overlap queries read start < to)
 * Reservation pruning never touches these keys (apart from usage:<donor>, the live counters).
 */

// ARGV: P, reservation, startMs, record JSON, endMs or ''. One script: replicas recording the
// same pod's report at once still count it once, and an end is set at most once.
const RECORD_USAGE = `
local P, id = ARGV[1], ARGV[2]
local key = P .. 'ledger:r:' .. id
if redis.call('EXISTS', key) == 0 then
  redis.call('HSET', key, 'record', ARGV[4], 'startMs', ARGV[3])
  redis.call('ZADD', P .. 'ledger:start', ARGV[3], id)
end
if ARGV[5] ~= '' and redis.call('HEXISTS', key, 'endMs') == 0 then
  redis.call('HSET', key, 'endMs', ARGV[5])
end
return 1
`;
const RECORD_USAGE_SHA = createHash('sha1').update(RECORD_USAGE).digest('hex');

export async function recordUsageRedis(
  client: Redis,
  prefix: string,
  r: UsageRecord,
): Promise<void> {
  validateUsageRecord(r);
  const args = [
    prefix,
    r.reservation,
    Date.parse(r.start),
    JSON.stringify(usageIdentity(r)),
    r.end === undefined ? '' : Date.parse(r.end),
  ];
  try {
    await client.evalsha(RECORD_USAGE_SHA, 0, ...args);
  } catch (err) {
    if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
    await client.eval(RECORD_USAGE, 0, ...args);
  }
}

export async function listUsageRedis(
  client: Redis,
  prefix: string,
  from: Date,
  to: Date,
): Promise<UsageRecord[]> {
  const ids = await client.zrangebyscore(`${prefix}ledger:start`, '-inf', `(${to.getTime()}`);
  if (ids.length === 0) return [];
  const pipe = client.pipeline();
  for (const id of ids) pipe.hmget(`${prefix}ledger:r:${id}`, 'record', 'startMs', 'endMs');
  const replies = (await pipe.exec()) ?? [];
  const out: UsageRecord[] = [];
  for (const [err, reply] of replies) {
    if (err) throw err;
    const [record, startMs, endMs] = reply as (string | null)[];
    if (!record || !startMs) continue;
    if (endMs && Number(endMs) <= from.getTime()) continue;
    out.push({
      ...(JSON.parse(record) as Omit<UsageRecord, 'start' | 'end'>),
      start: new Date(Number(startMs)).toISOString(),
      ...(endMs ? { end: new Date(Number(endMs)).toISOString() } : {}),
    });
  }
  // zrangebyscore orders by start, ties by id: the SQLite order.
  return out;
}
