import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import {
  ErrorCode,
  SpillwayError,
  isSpillwayError,
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
  ReservationState,
  ReserveRequest,
  ReserveResult,
  UsageRecord,
} from '../model.js';
import type { Store } from './store.js';
import {
  mergeCapacity,
  notFound,
  storeUnavailable,
  tokenInvalid,
  validateReserveRequest,
} from './internal.js';
import { validateCapacityUpdate } from '../core/validate.js';
import {
  RESERVATION_COLUMNS,
  mapSqliteError,
  num,
  orNull,
  sameSecret,
  text,
  toApiToken,
  toCluster,
  toConnection,
  toPeering,
  toReservation,
  toRevoked,
  toToken,
  type Row,
} from './sqlite-codec.js';
import { GangRefused, validateGangReserveRequest } from './gang.js';
import { reserveGangInTx } from './sqlite-gang.js';
import { listUsage, recordUsage } from './sqlite-ledger.js';
import { bindReported, reserveInTx } from './sqlite-reserve.js';
import { FINISHED_SQL, LIVE_SQL, MIGRATIONS, SQLITE_SCHEMA_VERSION } from './sqlite-schema.js';

export { SQLITE_SCHEMA_VERSION } from './sqlite-schema.js';

export interface SqliteStoreOptions {
  /** The database file; its directory is created if missing. */
  path: string;
  /** How long a writer waits for another connection's lock before failing. */
  busyTimeoutMs?: number;
  logger?: Logger;
}

/** Opens (creating or migrating) the broker's database file. */
export function openSqliteStore(opts: SqliteStoreOptions): Promise<SqliteStore> {
  try {
    return Promise.resolve(new SqliteStore(opts));
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}

/**
 * The embedded store: one SQLite file in WAL mode. Every multi-step change runs in one
 * `BEGIN IMMEDIATE` transaction, which takes the file's write lock up front, so several
 * connections (or processes) on the same file never interleave a read-check-write.
 */
export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  private readonly db: DatabaseSync;
  private readonly statements = new Map<string, StatementSync>();
  private closed = false;

  constructor(opts: SqliteStoreOptions) {
    try {
      if (opts.path !== ':memory:') mkdirSync(dirname(opts.path), { recursive: true });
      this.db = new DatabaseSync(opts.path);
      this.db.exec(
        `PRAGMA busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 10_000))}`,
      );
      this.db.exec('PRAGMA journal_mode = WAL');
      // NORMAL is durable against process crashes in WAL mode, and much cheaper than FULL.
      this.db.exec('PRAGMA synchronous = NORMAL');
      this.migrate();
    } catch (err) {
      if (isSpillwayError(err)) throw err;
      throw storeUnavailable(`sqlite (${opts.path})`, err);
    }
    opts.logger?.debug(
      { path: opts.path, schemaVersion: SQLITE_SCHEMA_VERSION },
      'sqlite store open',
    );
  }

  private migrate(): void {
    this.tx(() => {
      this.db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL) STRICT');
      const row = this.db.prepare('SELECT version FROM schema_version').get();
      let version = row ? num(row.version) : 0;
      if (!row) this.db.exec('INSERT INTO schema_version (version) VALUES (0)');
      if (version > MIGRATIONS.length) {
        throw new SpillwayError(
          ErrorCode.INVALID_CONFIG,
          `store.path: the database has schema version ${version}, newer than this broker supports (${MIGRATIONS.length}); run a newer broker`,
          { field: 'store.path' },
        );
      }
      for (; version < MIGRATIONS.length; version++) this.db.exec(MIGRATIONS[version] ?? '');
      this.db.prepare('UPDATE schema_version SET version = ?').run(version);
    });
  }

  private q(sql: string): StatementSync {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  /** Runs `fn` in one BEGIN IMMEDIATE transaction; maps driver failures to SpillwayError. */
  private tx<T>(fn: () => T): T {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const out = fn();
      this.db.exec('COMMIT');
      return out;
    } catch (err) {
      if (this.db.isTransaction) this.db.exec('ROLLBACK');
      throw err;
    }
  }

  /** Every public method goes through here: closed or locked databases are STORE_UNAVAILABLE. */
  private run<T>(fn: () => T): Promise<T> {
    try {
      if (this.closed)
        throw new SpillwayError(ErrorCode.STORE_UNAVAILABLE, 'sqlite store is closed');
      return Promise.resolve(fn());
    } catch (err) {
      return Promise.reject(mapSqliteError(err));
    }
  }

  ping(): Promise<void> {
    return this.run(() => {
      this.q('SELECT 1').get();
    });
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.statements.clear();
      this.db.close();
    }
    return Promise.resolve();
  }

  // Join tokens.

  createJoinToken(t: JoinTokenRecord): Promise<void> {
    return this.run(() => {
      const res = this.q(
        `INSERT INTO join_tokens (id, secret_hash, cluster_id, role, created_at, expires_at, used_at)
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
      ).run(t.id, t.secretHash, t.clusterId, t.role, t.createdAt, t.expiresAt, orNull(t.usedAt));
      if (res.changes === 0) {
        throw new SpillwayError(ErrorCode.ALREADY_EXISTS, `id: join token ${t.id} already exists`, {
          field: 'id',
        });
      }
    });
  }

  consumeJoinToken(id: string, secretHash: string, now: Date): Promise<JoinTokenRecord> {
    return this.run(() =>
      this.tx(() => {
        const row = this.q('SELECT * FROM join_tokens WHERE id = ?').get(id);
        if (!row) throw tokenInvalid();
        const token = toToken(row);
        if (
          token.usedAt !== undefined ||
          Date.parse(token.expiresAt) <= now.getTime() ||
          !sameSecret(token.secretHash, secretHash)
        ) {
          throw tokenInvalid();
        }
        const usedAt = now.toISOString();
        this.q('UPDATE join_tokens SET used_at = ? WHERE id = ?').run(usedAt, id);
        return { ...token, usedAt };
      }),
    );
  }

  listJoinTokens(): Promise<JoinTokenRecord[]> {
    return this.run(() =>
      this.q('SELECT * FROM join_tokens ORDER BY created_at, id').all().map(toToken),
    );
  }

  // Clusters.

  putCluster(c: ClusterRecord): Promise<void> {
    return this.run(() => {
      this.q(
        `INSERT INTO clusters (id, role, created_at, cert_serial, cert_not_after,
           superseded_serials, policy, revoked_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET role = excluded.role, created_at = excluded.created_at,
           cert_serial = excluded.cert_serial, cert_not_after = excluded.cert_not_after,
           superseded_serials = excluded.superseded_serials,
           policy = excluded.policy, revoked_at = excluded.revoked_at`,
      ).run(
        c.id,
        c.role,
        c.createdAt,
        orNull(c.certSerial),
        orNull(c.certNotAfter),
        c.supersededSerials === undefined ? null : JSON.stringify(c.supersededSerials),
        JSON.stringify(c.policy),
        orNull(c.revokedAt),
      );
    });
  }

  getCluster(id: string): Promise<ClusterRecord | undefined> {
    return this.run(() => {
      const row = this.q('SELECT * FROM clusters WHERE id = ?').get(id);
      return row ? toCluster(row) : undefined;
    });
  }

  listClusters(): Promise<ClusterRecord[]> {
    return this.run(() => this.q('SELECT * FROM clusters ORDER BY id').all().map(toCluster));
  }

  deleteCluster(id: string): Promise<void> {
    return this.run(() =>
      this.tx(() => {
        this.q('DELETE FROM clusters WHERE id = ?').run(id);
        this.q('DELETE FROM inventories WHERE cluster_id = ?').run(id);
        this.q('DELETE FROM inventory_nodes WHERE cluster_id = ?').run(id);
        this.q('DELETE FROM connections WHERE cluster_id = ?').run(id);
        this.q('DELETE FROM peerings WHERE origin = ? OR donor = ?').run(id, id);
      }),
    );
  }

  // Revocation.

  revoke(e: RevokedEntry): Promise<void> {
    return this.run(() => {
      this.q(
        `INSERT INTO revoked (serial, revoked_at, reason, subject) VALUES (?, ?, ?, ?)
         ON CONFLICT (serial) DO UPDATE SET revoked_at = excluded.revoked_at,
           reason = excluded.reason, subject = excluded.subject`,
      ).run(normalizeSerial(e.serial), e.revokedAt, e.reason, orNull(e.subject));
    });
  }

  isRevoked(serial: string): Promise<boolean> {
    return this.run(
      () =>
        this.q('SELECT 1 FROM revoked WHERE serial = ?').get(normalizeSerial(serial)) !== undefined,
    );
  }

  listRevoked(): Promise<RevokedEntry[]> {
    return this.run(() =>
      this.q('SELECT * FROM revoked ORDER BY revoked_at, serial').all().map(toRevoked),
    );
  }

  // Peerings.

  putPeering(p: PeeringRecord): Promise<void> {
    return this.run(() => {
      this.q(
        `INSERT INTO peerings (origin, donor, max_gpus, gpu_products, created_at, deleting_since)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (origin, donor) DO UPDATE SET max_gpus = excluded.max_gpus,
           gpu_products = excluded.gpu_products, created_at = excluded.created_at,
           deleting_since = excluded.deleting_since`,
      ).run(
        p.origin,
        p.donor,
        p.maxGpus,
        JSON.stringify(p.gpuProducts),
        p.createdAt,
        orNull(p.deletingSince),
      );
    });
  }

  getPeering(origin: string, donor: string): Promise<PeeringRecord | undefined> {
    return this.run(() => {
      const row = this.q('SELECT * FROM peerings WHERE origin = ? AND donor = ?').get(
        origin,
        donor,
      );
      return row ? toPeering(row) : undefined;
    });
  }

  listPeerings(filter: { origin?: string; donor?: string } = {}): Promise<PeeringRecord[]> {
    return this.run(() =>
      this.q(
        `SELECT * FROM peerings WHERE (?1 IS NULL OR origin = ?1) AND (?2 IS NULL OR donor = ?2)
         ORDER BY origin, donor`,
      )
        .all(filter.origin ?? null, filter.donor ?? null)
        .map(toPeering),
    );
  }

  deletePeering(origin: string, donor: string): Promise<boolean> {
    return this.run(
      () =>
        this.q('DELETE FROM peerings WHERE origin = ? AND donor = ?').run(origin, donor).changes >
        0,
    );
  }

  // Inventory.

  private readInventory(clusterId: string): ClusterInventory | undefined {
    const head = this.q('SELECT * FROM inventories WHERE cluster_id = ?').get(clusterId);
    if (!head) return undefined;
    const nodes = this.q('SELECT data FROM inventory_nodes WHERE cluster_id = ? ORDER BY name')
      .all(clusterId)
      .map((r) => JSON.parse(text(r.data)) as NodeInventory);
    return {
      clusterId,
      nodes,
      updatedAt: text(head.updated_at),
      sequence: num(head.sequence),
    };
  }

  applyCapacity(
    clusterId: string,
    update: CapacityUpdate,
    now: Date,
  ): Promise<ReservationRecord[]> {
    return this.run(() => {
      validateCapacityUpdate(update);
      return this.tx(() => {
        if (!this.q('SELECT 1 FROM clusters WHERE id = ?').get(clusterId)) {
          // A late report from a removed cluster must not resurrect its inventory.
          throw notFound(`cluster ${clusterId}`, 'clusterId');
        }
        const prev = this.readInventory(clusterId);
        const next = mergeCapacity(prev, clusterId, update, now);
        if (!next) return [];
        this.q(
          `INSERT INTO inventories (cluster_id, updated_at, sequence) VALUES (?, ?, ?)
           ON CONFLICT (cluster_id) DO UPDATE SET updated_at = excluded.updated_at,
             sequence = excluded.sequence`,
        ).run(clusterId, next.updatedAt, next.sequence);
        if (update.full) {
          this.q('DELETE FROM inventory_nodes WHERE cluster_id = ?').run(clusterId);
        } else {
          for (const name of update.removedNodes) {
            this.q('DELETE FROM inventory_nodes WHERE cluster_id = ? AND name = ?').run(
              clusterId,
              name,
            );
          }
        }
        const upsert = this.q(
          `INSERT INTO inventory_nodes (cluster_id, name, data) VALUES (?, ?, ?)
           ON CONFLICT (cluster_id, name) DO UPDATE SET data = excluded.data`,
        );
        for (const n of update.nodes) upsert.run(clusterId, n.name, JSON.stringify(n));

        return bindReported(this.q.bind(this), clusterId, next, now);
      });
    });
  }

  getInventory(clusterId: string): Promise<ClusterInventory | undefined> {
    return this.run(() => this.readInventory(clusterId));
  }

  listInventories(): Promise<ClusterInventory[]> {
    return this.run(() =>
      this.q('SELECT cluster_id FROM inventories ORDER BY cluster_id')
        .all()
        .flatMap((r) => this.readInventory(text(r.cluster_id)) ?? []),
    );
  }

  clearInventory(clusterId: string): Promise<void> {
    return this.run(() =>
      this.tx(() => {
        this.q('DELETE FROM inventories WHERE cluster_id = ?').run(clusterId);
        this.q('DELETE FROM inventory_nodes WHERE cluster_id = ?').run(clusterId);
      }),
    );
  }

  // Connections.

  putConnection(c: ConnectionRecord): Promise<void> {
    return this.run(() => {
      this.q(
        `INSERT INTO connections (cluster_id, component, broker_id, connected_at, last_seen_at)
         VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (cluster_id, component) DO UPDATE SET broker_id = excluded.broker_id,
           connected_at = excluded.connected_at, last_seen_at = excluded.last_seen_at`,
      ).run(c.clusterId, c.component, c.brokerId, c.connectedAt, c.lastSeenAt);
    });
  }

  touchConnection(
    clusterId: string,
    component: Component,
    brokerId: string,
    now: Date,
  ): Promise<void> {
    return this.run(() => {
      this.q(
        `UPDATE connections SET last_seen_at = ?
         WHERE cluster_id = ? AND component = ? AND broker_id = ?`,
      ).run(now.toISOString(), clusterId, component, brokerId);
    });
  }

  deleteConnection(clusterId: string, component: Component, brokerId: string): Promise<void> {
    return this.run(() => {
      this.q(
        'DELETE FROM connections WHERE cluster_id = ? AND component = ? AND broker_id = ?',
      ).run(clusterId, component, brokerId);
    });
  }

  listConnections(): Promise<ConnectionRecord[]> {
    return this.run(() =>
      this.q('SELECT * FROM connections ORDER BY cluster_id, component').all().map(toConnection),
    );
  }

  // Reservations.

  reserve(req: ReserveRequest, now: Date): Promise<ReserveResult> {
    return this.run(() => {
      validateReserveRequest(req);
      return this.tx((): ReserveResult => {
        return reserveInTx(this.q.bind(this), req, now);
      });
    });
  }

  reserveGang(req: GangReserveRequest, now: Date): Promise<GangReserveResult> {
    return this.run(() => {
      validateGangReserveRequest(req);
      try {
        return this.tx(() => reserveGangInTx(this.q.bind(this), req, now));
      } catch (err) {
        if (err instanceof GangRefused) return err.result;
        throw err;
      }
    });
  }

  /** Moves one live reservation to a finished state inside the caller's transaction. */
  private finish(
    row: Row | undefined,
    state: ReservationState,
    reason: string,
    now: Date,
  ): ReservationRecord | undefined {
    if (!row) return undefined;
    const r = toReservation(row);
    const endedAt = now.toISOString();
    this.q('UPDATE reservations SET state = ?, ended_at = ?, reason = ? WHERE id = ?').run(
      state,
      endedAt,
      reason,
      r.id,
    );
    return { ...r, state, endedAt, reason };
  }

  release(id: string, reason: string, now: Date): Promise<ReservationRecord | undefined> {
    return this.run(() =>
      this.tx(() =>
        this.finish(
          this.q(
            `SELECT ${RESERVATION_COLUMNS} FROM reservations
             WHERE id = ? AND ${LIVE_SQL}`,
          ).get(id),
          'released',
          reason,
          now,
        ),
      ),
    );
  }

  endByPod(podUid: string, reason: string, now: Date): Promise<ReservationRecord | undefined> {
    return this.run(() =>
      this.tx(() =>
        this.finish(
          this.q(
            `SELECT ${RESERVATION_COLUMNS} FROM reservations
             WHERE pod_uid = ? AND ${LIVE_SQL}`,
          ).get(podUid),
          'ended',
          reason,
          now,
        ),
      ),
    );
  }

  expire(now: Date): Promise<ReservationRecord[]> {
    return this.run(() =>
      this.tx(() =>
        this.q(
          `SELECT ${RESERVATION_COLUMNS} FROM reservations
           WHERE state = 'open' AND expires_at <= ? ORDER BY expires_at, id`,
        )
          .all(now.toISOString())
          .flatMap((row) => this.finish(row, 'expired', 'reservation TTL expired', now) ?? []),
      ),
    );
  }

  getReservation(id: string): Promise<ReservationRecord | undefined> {
    return this.run(() => {
      const row = this.q(`SELECT ${RESERVATION_COLUMNS} FROM reservations WHERE id = ?`).get(id);
      return row ? toReservation(row) : undefined;
    });
  }

  findReservationByPod(podUid: string): Promise<ReservationRecord | undefined> {
    return this.run(() => {
      const row = this.q(
        `SELECT ${RESERVATION_COLUMNS} FROM reservations
         WHERE pod_uid = ? AND ${LIVE_SQL}`,
      ).get(podUid);
      return row ? toReservation(row) : undefined;
    });
  }

  listReservations(filter: ReservationFilter = {}): Promise<ReservationRecord[]> {
    return this.run(() => {
      const states = filter.states ?? [];
      return this.q(
        `SELECT ${RESERVATION_COLUMNS} FROM reservations
         WHERE (?1 IS NULL OR origin = ?1) AND (?2 IS NULL OR donor = ?2)
           AND (?3 = '[]' OR state IN (SELECT value FROM json_each(?3)))
         ORDER BY created_at, id`,
      )
        .all(filter.origin ?? null, filter.donor ?? null, JSON.stringify(states))
        .map(toReservation);
    });
  }

  extend(id: string, expiresAt: Date): Promise<ReservationRecord | undefined> {
    return this.run(() => {
      const at = expiresAt.toISOString();
      const res = this.q(
        `UPDATE reservations SET expires_at = ? WHERE id = ? AND state = 'open'`,
      ).run(at, id);
      if (res.changes === 0) return undefined;
      const row = this.q(`SELECT ${RESERVATION_COLUMNS} FROM reservations WHERE id = ?`).get(id);
      return row ? toReservation(row) : undefined;
    });
  }

  updateRemoteStatus(
    podUid: string,
    status: { remotePhase?: string; remoteNamespace?: string; remoteName?: string },
  ): Promise<void> {
    return this.run(() => {
      const res = this.q(
        `UPDATE reservations SET remote_phase = COALESCE(?, remote_phase),
           remote_namespace = COALESCE(?, remote_namespace), remote_name = COALESCE(?, remote_name)
         WHERE pod_uid = ? AND ${LIVE_SQL}`,
      ).run(
        orNull(status.remotePhase),
        orNull(status.remoteNamespace),
        orNull(status.remoteName),
        podUid,
      );
      if (res.changes === 0) throw notFound(`live reservation of pod uid ${podUid}`, 'podUid');
    });
  }

  usage(donor: string): Promise<{ total: number; byOrigin: Record<string, number> }> {
    return this.run(() => {
      const byOrigin: Record<string, number> = {};
      let total = 0;
      for (const r of this.q(
        `SELECT origin, SUM(gpus) AS gpus FROM reservations
         WHERE donor = ? AND ${LIVE_SQL} GROUP BY origin ORDER BY origin`,
      ).all(donor)) {
        byOrigin[text(r.origin)] = num(r.gpus);
        total += num(r.gpus);
      }
      return { total, byOrigin };
    });
  }

  /** Deletes reservations that finished before `olderThan`; returns how many. */
  pruneFinished(olderThan: Date): Promise<number> {
    return this.run(() =>
      Number(
        this.q(
          `DELETE FROM reservations
           WHERE ${FINISHED_SQL} AND ended_at < ?`,
        ).run(olderThan.toISOString()).changes,
      ),
    );
  }

  // Usage ledger (sqlite-ledger.ts).

  recordUsage(r: UsageRecord): Promise<void> {
    return this.run(() => recordUsage(this.q.bind(this), r));
  }

  listUsage(from: Date, to: Date): Promise<UsageRecord[]> {
    return this.run(() => listUsage(this.q.bind(this), from, to));
  }

  // REST API tokens.

  putApiToken(t: ApiTokenRecord): Promise<void> {
    return this.run(() => {
      this.q(
        `INSERT INTO api_tokens (id, secret_hash, role, description, created_at)
         VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET secret_hash = excluded.secret_hash, role = excluded.role,
           description = excluded.description, created_at = excluded.created_at`,
      ).run(t.id, t.secretHash, t.role, t.description, t.createdAt);
    });
  }

  getApiToken(id: string): Promise<ApiTokenRecord | undefined> {
    return this.run(() => {
      const row = this.q('SELECT * FROM api_tokens WHERE id = ?').get(id);
      return row ? toApiToken(row) : undefined;
    });
  }

  listApiTokens(): Promise<ApiTokenRecord[]> {
    return this.run(() =>
      this.q('SELECT * FROM api_tokens ORDER BY created_at, id').all().map(toApiToken),
    );
  }

  deleteApiToken(id: string): Promise<boolean> {
    return this.run(() => this.q('DELETE FROM api_tokens WHERE id = ?').run(id).changes > 0);
  }
}
