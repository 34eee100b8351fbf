import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { timingSafeEqual } from 'node:crypto';
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';
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
  ReservationFilter,
  ReservationRecord,
  ReservationState,
  ReserveRequest,
  ReserveResult,
} from '../model.js';
import type { Store } from './store.js';
import {
  mergeCapacity,
  newReservation,
  noFitReason,
  notFound,
  reservableGpus,
  quotaViolation,
  storeUnavailable,
  tokenInvalid,
  validateReserveRequest,
} from './internal.js';
import { validateCapacityUpdate } from '../core/validate.js';

export interface SqliteStoreOptions {
  /** The database file; its directory is created if missing. */
  path: string;
  /** How long a writer waits for another connection's lock before failing. */
  busyTimeoutMs?: number;
  logger?: Logger;
}

type Row = Record<string, SQLInputValue>;

/**
 * Each entry migrates the schema from version i to i+1. Append only: a released
 * migration never changes, so every broker's file converges on the same schema.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE join_tokens (
    id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, cluster_id TEXT NOT NULL, role TEXT NOT NULL,
    created_at TEXT NOT NULL, expires_at TEXT NOT NULL, used_at TEXT
  ) STRICT;
  CREATE TABLE clusters (
    id TEXT PRIMARY KEY, role TEXT NOT NULL, created_at TEXT NOT NULL, cert_serial TEXT,
    cert_not_after TEXT, policy TEXT NOT NULL, revoked_at TEXT
  ) STRICT;
  CREATE TABLE revoked (
    serial TEXT PRIMARY KEY, revoked_at TEXT NOT NULL, reason TEXT NOT NULL, subject TEXT
  ) STRICT;
  CREATE TABLE peerings (
    origin TEXT NOT NULL, donor TEXT NOT NULL, max_gpus INTEGER NOT NULL,
    gpu_products TEXT NOT NULL, created_at TEXT NOT NULL, deleting_since TEXT,
    PRIMARY KEY (origin, donor)
  ) STRICT;
  CREATE INDEX peerings_donor ON peerings (donor);
  CREATE TABLE inventories (
    cluster_id TEXT PRIMARY KEY, updated_at TEXT NOT NULL, sequence INTEGER NOT NULL
  ) STRICT;
  CREATE TABLE inventory_nodes (
    cluster_id TEXT NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (cluster_id, name)
  ) STRICT;
  CREATE TABLE connections (
    cluster_id TEXT NOT NULL, component TEXT NOT NULL, broker_id TEXT NOT NULL,
    connected_at TEXT NOT NULL, last_seen_at TEXT NOT NULL, PRIMARY KEY (cluster_id, component)
  ) STRICT;
  CREATE TABLE reservations (
    id TEXT PRIMARY KEY, origin TEXT NOT NULL, donor TEXT NOT NULL, node TEXT NOT NULL,
    resource TEXT NOT NULL, gpus INTEGER NOT NULL, pod_uid TEXT NOT NULL, pod TEXT NOT NULL,
    state TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL, bound_at TEXT,
    ended_at TEXT, reason TEXT, remote_phase TEXT, remote_namespace TEXT, remote_name TEXT
  ) STRICT;
  -- At most one live reservation per pod: the last line of defence behind reserve()'s check.
  CREATE UNIQUE INDEX reservations_live_pod ON reservations (pod_uid)
    WHERE state IN ('open', 'bound');
  CREATE INDEX reservations_donor_state ON reservations (donor, state);
  CREATE INDEX reservations_open_expiry ON reservations (expires_at) WHERE state = 'open';
  CREATE INDEX reservations_finished ON reservations (ended_at)
    WHERE state IN ('released', 'expired', 'ended');
  CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, role TEXT NOT NULL,
    description TEXT NOT NULL, created_at TEXT NOT NULL
  ) STRICT;
  `,
];

export const SQLITE_SCHEMA_VERSION = MIGRATIONS.length;

/** Opens (creating or migrating) the broker's database file. */
export function openSqliteStore(opts: SqliteStoreOptions): Promise<SqliteStore> {
  try {
    return Promise.resolve(new SqliteStore(opts));
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}

/** Columns read as text are TEXT in a STRICT table: anything else is a corrupt row. */
function text(v: SQLInputValue | undefined): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  throw new SpillwayError(
    ErrorCode.INTERNAL,
    `sqlite store: expected a text column, got ${typeof v}`,
  );
}
const num = (v: SQLInputValue | undefined): number => Number(v);
/** Spreads `{ [key]: value }` only when the column is set (exactOptionalPropertyTypes). */
function opt<K extends string>(key: K, v: SQLInputValue | undefined): { [P in K]?: string } {
  return v === null || v === undefined ? {} : ({ [key]: text(v) } as { [P in K]?: string });
}
const orNull = (v: string | undefined): string | null => v ?? null;

function toToken(r: Row): JoinTokenRecord {
  return {
    id: text(r.id),
    secretHash: text(r.secret_hash),
    clusterId: text(r.cluster_id),
    role: text(r.role) as JoinTokenRecord['role'],
    createdAt: text(r.created_at),
    expiresAt: text(r.expires_at),
    ...opt('usedAt', r.used_at),
  };
}

function toCluster(r: Row): ClusterRecord {
  return {
    id: text(r.id),
    role: text(r.role) as ClusterRecord['role'],
    createdAt: text(r.created_at),
    ...opt('certSerial', r.cert_serial),
    ...opt('certNotAfter', r.cert_not_after),
    policy: JSON.parse(text(r.policy)) as ClusterRecord['policy'],
    ...opt('revokedAt', r.revoked_at),
  };
}

function toRevoked(r: Row): RevokedEntry {
  return {
    serial: text(r.serial),
    revokedAt: text(r.revoked_at),
    reason: text(r.reason),
    ...opt('subject', r.subject),
  };
}

function toPeering(r: Row): PeeringRecord {
  return {
    origin: text(r.origin),
    donor: text(r.donor),
    maxGpus: num(r.max_gpus),
    gpuProducts: JSON.parse(text(r.gpu_products)) as string[],
    createdAt: text(r.created_at),
    ...opt('deletingSince', r.deleting_since),
  };
}

function toConnection(r: Row): ConnectionRecord {
  return {
    clusterId: text(r.cluster_id),
    component: text(r.component) as Component,
    brokerId: text(r.broker_id),
    connectedAt: text(r.connected_at),
    lastSeenAt: text(r.last_seen_at),
  };
}

function toReservation(r: Row): ReservationRecord {
  return {
    id: text(r.id),
    origin: text(r.origin),
    donor: text(r.donor),
    node: text(r.node),
    resource: text(r.resource),
    gpus: num(r.gpus),
    pod: JSON.parse(text(r.pod)) as ReservationRecord['pod'],
    state: text(r.state) as ReservationState,
    createdAt: text(r.created_at),
    expiresAt: text(r.expires_at),
    ...opt('boundAt', r.bound_at),
    ...opt('endedAt', r.ended_at),
    ...opt('reason', r.reason),
    ...opt('remotePhase', r.remote_phase),
    ...opt('remoteNamespace', r.remote_namespace),
    ...opt('remoteName', r.remote_name),
  };
}

function toApiToken(r: Row): ApiTokenRecord {
  return {
    id: text(r.id),
    secretHash: text(r.secret_hash),
    role: text(r.role) as ApiTokenRecord['role'],
    description: text(r.description),
    createdAt: text(r.created_at),
  };
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

const RESERVATION_COLUMNS =
  'id, origin, donor, node, resource, gpus, pod_uid, pod, state, created_at, expires_at, bound_at, ended_at, reason, remote_phase, remote_namespace, remote_name';

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
        `INSERT INTO clusters (id, role, created_at, cert_serial, cert_not_after, policy, revoked_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET role = excluded.role, created_at = excluded.created_at,
           cert_serial = excluded.cert_serial, cert_not_after = excluded.cert_not_after,
           policy = excluded.policy, revoked_at = excluded.revoked_at`,
      ).run(
        c.id,
        c.role,
        c.createdAt,
        orNull(c.certSerial),
        orNull(c.certNotAfter),
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

        const offloaded = new Set(next.nodes.flatMap((n) => n.offloadedPodUids));
        const open = this.q(
          `SELECT ${RESERVATION_COLUMNS} FROM reservations WHERE donor = ? AND state = 'open'`,
        )
          .all(clusterId)
          .map(toReservation)
          .filter((r) => offloaded.has(r.pod.uid));
        const boundAt = now.toISOString();
        const bind = this.q(`UPDATE reservations SET state = 'bound', bound_at = ? WHERE id = ?`);
        for (const r of open) bind.run(boundAt, r.id);
        // A pod the donor runs whose reservation lapsed meanwhile (its report could not reach
        // us in time) holds its GPUs all the same: that reservation is bound again.
        const live = new Set(
          this.q(`SELECT pod_uid FROM reservations WHERE donor = ? AND state IN ('open', 'bound')`)
            .all(clusterId)
            .map((r) => text(r.pod_uid)),
        );
        const lapsed = new Map<string, ReservationRecord>();
        if ([...offloaded].some((uid) => !live.has(uid))) {
          for (const row of this.q(
            `SELECT ${RESERVATION_COLUMNS} FROM reservations
             WHERE donor = ? AND state = 'expired' ORDER BY created_at, id`,
          ).all(clusterId)) {
            const r = toReservation(row);
            if (offloaded.has(r.pod.uid) && !live.has(r.pod.uid)) lapsed.set(r.pod.uid, r);
          }
        }
        const rebind = this.q(
          `UPDATE reservations SET state = 'bound', bound_at = ?, ended_at = NULL, reason = NULL
           WHERE id = ?`,
        );
        const rebound = [...lapsed.values()].map((r) => {
          rebind.run(boundAt, r.id);
          const out: ReservationRecord = { ...r, state: 'bound', boundAt };
          delete out.endedAt;
          delete out.reason;
          return out;
        });
        return [...open.map((r) => ({ ...r, state: 'bound' as const, boundAt })), ...rebound];
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
        if (this.q('SELECT 1 FROM reservations WHERE id = ?').get(req.id)) {
          return {
            ok: false,
            code: 'ALREADY_EXISTS',
            reason: `reservation ${req.id} already exists`,
          };
        }
        const live = this.q(
          `SELECT id FROM reservations WHERE pod_uid = ? AND state IN ('open', 'bound')`,
        ).get(req.pod.uid);
        if (live) {
          return {
            ok: false,
            code: 'ALREADY_EXISTS',
            reason: `pod ${req.pod.namespace}/${req.pod.name} (uid ${req.pod.uid}) already has live reservation ${text(live.id)}`,
          };
        }
        const nodeRow = this.q(
          'SELECT data FROM inventory_nodes WHERE cluster_id = ? AND name = ?',
        ).get(req.donor, req.node);
        const node = nodeRow ? (JSON.parse(text(nodeRow.data)) as NodeInventory) : undefined;
        const open = this.q(
          `SELECT resource, gpus, pod_uid FROM reservations
           WHERE donor = ? AND node = ? AND state = 'open'`,
        )
          .all(req.donor, req.node)
          .map((r) => ({
            state: 'open' as const,
            node: req.node,
            resource: text(r.resource),
            gpus: num(r.gpus),
            pod: { uid: text(r.pod_uid) },
          }));
        const free = reservableGpus(node, req.resource, open);
        if (free < req.gpus) return { ok: false, code: 'NO_FIT', reason: noFitReason(req, free) };

        const used = this.q(
          `SELECT COALESCE(SUM(gpus), 0) AS total,
                  COALESCE(SUM(CASE WHEN origin = ? THEN gpus ELSE 0 END), 0) AS origin
           FROM reservations WHERE donor = ? AND state IN ('open', 'bound')`,
        ).get(req.origin, req.donor);
        const violation = quotaViolation(req, {
          total: num(used?.total ?? 0),
          origin: num(used?.origin ?? 0),
        });
        if (violation) return { ok: false, code: 'QUOTA_EXCEEDED', reason: violation };

        const r = newReservation(req, now);
        this.q(
          `INSERT INTO reservations (id, origin, donor, node, resource, gpus, pod_uid, pod, state,
             created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?)`,
        ).run(
          r.id,
          r.origin,
          r.donor,
          r.node,
          r.resource,
          r.gpus,
          r.pod.uid,
          JSON.stringify(r.pod),
          r.createdAt,
          r.expiresAt,
        );
        return { ok: true, reservation: r };
      });
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
             WHERE id = ? AND state IN ('open', 'bound')`,
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
             WHERE pod_uid = ? AND state IN ('open', 'bound')`,
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
         WHERE pod_uid = ? AND state IN ('open', 'bound')`,
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
         WHERE pod_uid = ? AND state IN ('open', 'bound')`,
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
         WHERE donor = ? AND state IN ('open', 'bound') GROUP BY origin ORDER BY origin`,
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
           WHERE state IN ('released', 'expired', 'ended') AND ended_at < ?`,
        ).run(olderThan.toISOString()).changes,
      ),
    );
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

/** Lock contention past busy_timeout and I/O failures are transient: STORE_UNAVAILABLE. */
function mapSqliteError(err: unknown): SpillwayError {
  if (err instanceof SpillwayError) return err;
  const e = err as { code?: string; errcode?: number; message?: string };
  const primary = typeof e.errcode === 'number' ? e.errcode & 0xff : undefined;
  // SQLITE_BUSY 5, SQLITE_LOCKED 6, SQLITE_IOERR 10, SQLITE_FULL 13, SQLITE_CANTOPEN 14.
  if (
    (primary !== undefined && [5, 6, 10, 13, 14].includes(primary)) ||
    /database is not open|database is locked/i.test(e.message ?? '')
  ) {
    return storeUnavailable('sqlite', err);
  }
  return new SpillwayError(ErrorCode.INTERNAL, `sqlite store: ${e.message ?? String(err)}`, {
    cause: err,
  });
}
