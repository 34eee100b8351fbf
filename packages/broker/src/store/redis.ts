import { Redis } from 'ioredis';
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
  GangReserveRequest,
  GangReserveResult,
  ReservationFilter,
  ReservationRecord,
  ReserveRequest,
  ReserveResult,
  UsageRecord,
} from '../model.js';
import type { Store, ViewFeed } from './store.js';
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
import { mapRedisError, redisClientOptions, untilReady } from './redis-client.js';
import {
  execAll,
  fields,
  fromFlat,
  isEmpty,
  req,
  toApiToken,
  toCluster,
  toConnection,
  toPeering,
  toReservation,
  toToken,
  type Hash,
} from './redis-codec.js';
import { openRedisFeed } from './redis-feed.js';
import { listUsageRedis, recordUsageRedis } from './redis-ledger.js';
import { LUA, SHA, type ScriptName } from './redis-lua.js';
import { validateGangReserveRequest } from './gang.js';
import { gangScriptArgs, gangScriptResult } from './redis-gang.js';

export { redisClientOptions } from './redis-client.js';

// Data layout and record codecs: redis-codec.ts; scripts: redis-lua.ts.

export interface RedisStoreOptions {
  /** Key prefix; several brokers (or tests) can share one Redis with distinct prefixes. */
  prefix?: string;
  logger?: Logger;
  /** How long a call waits for a (re)connecting client before STORE_UNAVAILABLE. */
  readyTimeoutMs?: number;
}

export const DEFAULT_REDIS_PREFIX = 'spillway:';

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
    return openRedisFeed(this.client, this.k('view'), {
      isClosed: () => this.closed,
      ...(this.logger ? { logger: this.logger } : {}),
    });
  }

  /** Waits (bounded) for a connecting client; a down Redis is STORE_UNAVAILABLE, not a hang. */
  private async ready(): Promise<void> {
    if (this.closed) throw new SpillwayError(ErrorCode.STORE_UNAVAILABLE, 'redis store is closed');
    const c = this.client;
    if (c.status === 'ready') return;
    if (c.status === 'end') {
      throw new SpillwayError(ErrorCode.STORE_UNAVAILABLE, 'redis store: the connection has ended');
    }
    this.waitingReady ??= untilReady(c, this.readyTimeoutMs, this.logger).finally(() => {
      this.waitingReady = undefined;
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
    } catch (err) {
      // Already disconnected: nothing left to flush.
      this.logger?.debug({ err }, 'redis store quit failed; disconnecting');
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
              supersededSerials:
                c.supersededSerials === undefined ? undefined : JSON.stringify(c.supersededSerials),
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

  async reserveGang(req: GangReserveRequest, now: Date): Promise<GangReserveResult> {
    validateGangReserveRequest(req);
    return this.op(async () => {
      const { args, records } = gangScriptArgs(req, now);
      const reply = (await this.script('reserveGang', args)) as string[];
      return gangScriptResult(req, records, reply);
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

  // Usage ledger (redis-ledger.ts).

  recordUsage(r: UsageRecord): Promise<void> {
    return this.op(() => recordUsageRedis(this.client, this.prefix, r));
  }

  listUsage(from: Date, to: Date): Promise<UsageRecord[]> {
    return this.op(() => listUsageRedis(this.client, this.prefix, from, to));
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
