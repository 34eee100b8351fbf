import { FINISHED_STATES, LIVE_STATES } from './internal.js';
import { LEDGER_MIGRATION } from './sqlite-ledger.js';

/**
 * Each entry migrates the schema from version i to i+1. Append only: a released
 * migration never changes, so every broker's file converges on the same schema.
 */
export const MIGRATIONS: readonly string[] = [
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
  // 2: certificates a renewal replaced, revoked once the renewal is confirmed (JSON list).
  `ALTER TABLE clusters ADD COLUMN superseded_serials TEXT;`,
  // 3: the usage ledger.
  LEDGER_MIGRATION,
];

export const SQLITE_SCHEMA_VERSION = MIGRATIONS.length;

const sqlList = (states: readonly string[]): string => states.map((s) => `'${s}'`).join(', ');
/** `state IN ('open', 'bound')`: the live-reservation predicate, as the schema's partial index has it. */
export const LIVE_SQL = `state IN (${sqlList(LIVE_STATES)})`;
/** `state IN ('released', 'expired', 'ended')`. */
export const FINISHED_SQL = `state IN (${sqlList(FINISHED_STATES)})`;
