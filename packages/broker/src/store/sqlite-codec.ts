import { timingSafeEqual } from 'node:crypto';
import type { SQLInputValue } from 'node:sqlite';
import { ErrorCode, SpillwayError, type RevokedEntry } from '@spillway/common';
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
import { storeUnavailable } from './internal.js';

export type Row = Record<string, SQLInputValue>;

/** Columns read as text are TEXT in a STRICT table: anything else is a corrupt row. */
export function text(v: SQLInputValue | undefined): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  throw new SpillwayError(
    ErrorCode.INTERNAL,
    `sqlite store: expected a text column, got ${typeof v}`,
  );
}
export const num = (v: SQLInputValue | undefined): number => Number(v);
/** Spreads `{ [key]: value }` only when the column is set (exactOptionalPropertyTypes). */
export function opt<K extends string>(key: K, v: SQLInputValue | undefined): { [P in K]?: string } {
  return v === null || v === undefined ? {} : ({ [key]: text(v) } as { [P in K]?: string });
}
export const orNull = (v: string | undefined): string | null => v ?? null;

export function toToken(r: Row): JoinTokenRecord {
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

export function toCluster(r: Row): ClusterRecord {
  return {
    id: text(r.id),
    role: text(r.role) as ClusterRecord['role'],
    createdAt: text(r.created_at),
    ...opt('certSerial', r.cert_serial),
    ...opt('certNotAfter', r.cert_not_after),
    ...(r.superseded_serials === null || r.superseded_serials === undefined
      ? {}
      : { supersededSerials: JSON.parse(text(r.superseded_serials)) as string[] }),
    policy: JSON.parse(text(r.policy)) as ClusterRecord['policy'],
    ...opt('revokedAt', r.revoked_at),
  };
}

export function toRevoked(r: Row): RevokedEntry {
  return {
    serial: text(r.serial),
    revokedAt: text(r.revoked_at),
    reason: text(r.reason),
    ...opt('subject', r.subject),
  };
}

export function toPeering(r: Row): PeeringRecord {
  return {
    origin: text(r.origin),
    donor: text(r.donor),
    maxGpus: num(r.max_gpus),
    gpuProducts: JSON.parse(text(r.gpu_products)) as string[],
    createdAt: text(r.created_at),
    ...opt('deletingSince', r.deleting_since),
  };
}

export function toConnection(r: Row): ConnectionRecord {
  return {
    clusterId: text(r.cluster_id),
    component: text(r.component) as Component,
    brokerId: text(r.broker_id),
    connectedAt: text(r.connected_at),
    lastSeenAt: text(r.last_seen_at),
  };
}

export function toReservation(r: Row): ReservationRecord {
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

export function toApiToken(r: Row): ApiTokenRecord {
  return {
    id: text(r.id),
    secretHash: text(r.secret_hash),
    role: text(r.role) as ApiTokenRecord['role'],
    description: text(r.description),
    createdAt: text(r.created_at),
  };
}

export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export const RESERVATION_COLUMNS =
  'id, origin, donor, node, resource, gpus, pod_uid, pod, state, created_at, expires_at, bound_at, ended_at, reason, remote_phase, remote_namespace, remote_name';

/** Lock contention past busy_timeout and I/O failures are transient: STORE_UNAVAILABLE. */
export function mapSqliteError(err: unknown): SpillwayError {
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
