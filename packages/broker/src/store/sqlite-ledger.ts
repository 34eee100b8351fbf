import type { StatementSync } from 'node:sqlite';
import type { UsageRecord } from '../model.js';
import { num, text, type Row } from './sqlite-codec.js';
import { usageIdentity, validateUsageRecord } from './usage-record.js';

type Prepare = (sql: string) => StatementSync;

/**
 * The usage ledger's table (schema migration 2). Times are epoch milliseconds so that
 * overlap queries compare numbers; the rest of the record is one JSON column.
 */
export const LEDGER_MIGRATION = `
  CREATE TABLE usage_ledger (
    reservation TEXT PRIMARY KEY, start_ms INTEGER NOT NULL, end_ms INTEGER, record TEXT NOT NULL
  ) STRICT;
  CREATE INDEX usage_ledger_start ON usage_ledger (start_ms);
`;

/** One statement: inserts the record, or only sets a missing end; never moves a time. */
export function recordUsage(q: Prepare, r: UsageRecord): void {
  validateUsageRecord(r);
  q(
    `INSERT INTO usage_ledger (reservation, start_ms, end_ms, record) VALUES (?, ?, ?, ?)
     ON CONFLICT (reservation) DO UPDATE SET end_ms = excluded.end_ms
       WHERE usage_ledger.end_ms IS NULL AND excluded.end_ms IS NOT NULL`,
  ).run(
    r.reservation,
    Date.parse(r.start),
    r.end === undefined ? null : Date.parse(r.end),
    JSON.stringify(usageIdentity(r)),
  );
}

export function listUsage(q: Prepare, from: Date, to: Date): UsageRecord[] {
  return q(
    `SELECT start_ms, end_ms, record FROM usage_ledger
     WHERE start_ms < ? AND (end_ms IS NULL OR end_ms > ?) ORDER BY start_ms, reservation`,
  )
    .all(to.getTime(), from.getTime())
    .map(toUsage);
}

function toUsage(row: Row): UsageRecord {
  const base = JSON.parse(text(row.record)) as Omit<UsageRecord, 'start' | 'end'>;
  return {
    ...base,
    start: new Date(num(row.start_ms)).toISOString(),
    ...(row.end_ms === null || row.end_ms === undefined
      ? {}
      : { end: new Date(num(row.end_ms)).toISOString() }),
  };
}
