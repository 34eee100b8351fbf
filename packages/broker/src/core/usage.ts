import { invalid, parseDuration } from '@spillway/common';
import { USAGE_KEYS, type UsageReport, type UsageRow } from '@spillway/api/rest';
import type { ReservationRecord, UsageKey, UsageRecord } from '../model.js';

export { USAGE_KEYS, usageCsv } from '@spillway/api/rest';

/** What GET /usage and BrokerCore.usage() take, already parsed. */
export interface UsageFilter {
  from?: Date;
  to?: Date;
  by?: readonly UsageKey[];
  stepMs?: number;
}

/** Buckets one report may have (step): bounds its size and its cost. */
export const MAX_USAGE_BUCKETS = 1000;

/** The ledger record of a reservation, once the donor reported its pod bound; else none. */
export function usageRecordOf(
  r: ReservationRecord,
  product: string | undefined,
): UsageRecord | undefined {
  if (r.boundAt === undefined) return undefined;
  const finished = r.state !== 'open' && r.state !== 'bound';
  return {
    reservation: r.id,
    origin: r.origin,
    namespace: r.pod.namespace,
    pod: r.pod.name,
    donor: r.donor,
    node: r.node,
    product: product ?? '',
    resource: r.resource,
    gpus: r.gpus,
    start: r.boundAt,
    ...(finished && r.endedAt !== undefined
      ? { end: r.endedAt < r.boundAt ? r.boundAt : r.endedAt }
      : {}),
  };
}

/** GPU-seconds of one record within [from, to); a running pod counts up to `to`. */
export function gpuSecondsWithin(r: UsageRecord, from: Date, to: Date): number {
  const start = Math.max(Date.parse(r.start), from.getTime());
  const end = Math.min(r.end === undefined ? Infinity : Date.parse(r.end), to.getTime());
  return end > start ? (r.gpus * (end - start)) / 1000 : 0;
}

/** Parses the REST query (strings) into a filter; bad values are INVALID_ARGUMENT naming them. */
export function parseUsageQuery(q: {
  from?: string;
  to?: string;
  by?: string;
  step?: string;
}): UsageFilter {
  const out: { from?: Date; to?: Date; by?: UsageKey[]; stepMs?: number } = {};
  const time = (v: string, field: string): Date => {
    // Date.parse accepts far more than RFC 3339 ("1", "March 7"): only full timestamps pass.
    if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(v)) {
      throw invalid(
        field,
        `${JSON.stringify(v)} is not an RFC 3339 time such as 2026-03-01T00:00:00Z`,
      );
    }
    const d = new Date(v);
    if (Number.isNaN(d.getTime())) throw invalid(field, `${JSON.stringify(v)} is not a valid time`);
    return d;
  };
  if (q.from !== undefined && q.from !== '') out.from = time(q.from, 'from');
  if (q.to !== undefined && q.to !== '') out.to = time(q.to, 'to');
  if (out.from && out.to && out.to.getTime() <= out.from.getTime()) {
    throw invalid('to', `must be after from (${out.from.toISOString()})`);
  }
  if (q.by !== undefined && q.by !== '') {
    const keys: UsageKey[] = [];
    for (const k of q.by.split(',').map((s) => s.trim())) {
      if (!(USAGE_KEYS as readonly string[]).includes(k)) {
        throw invalid('by', `${JSON.stringify(k)} is not one of ${USAGE_KEYS.join(', ')}`);
      }
      if (!keys.includes(k as UsageKey)) keys.push(k as UsageKey);
    }
    out.by = keys;
  }
  if (q.step !== undefined && q.step !== '') {
    const ms = parseDuration(q.step, 'step');
    if (ms < 1000) throw invalid('step', `must be at least 1s, not ${JSON.stringify(q.step)}`);
    if (out.from === undefined) throw invalid('step', 'needs from: buckets start at from');
    out.stepMs = ms;
  }
  return out;
}

/**
 * aggregateUsage per bucket of `stepMs` from `from`: rows carry their bucket's start, in
 * time order; the total is the whole window's. INVALID_ARGUMENT (step) past MAX_USAGE_BUCKETS.
 */
export function aggregateUsageByStep(
  records: readonly UsageRecord[],
  from: Date,
  to: Date,
  by: readonly UsageKey[],
  stepMs: number,
): UsageReport {
  const buckets = Math.ceil((to.getTime() - from.getTime()) / stepMs);
  if (buckets > MAX_USAGE_BUCKETS) {
    throw invalid(
      'step',
      `${buckets} buckets from ${from.toISOString()} to ${to.toISOString()}; at most ${MAX_USAGE_BUCKETS}: use a longer step or a shorter window`,
    );
  }
  const whole = aggregateUsage(records, from, to, by);
  const rows: UsageRow[] = [];
  for (let i = 0; i < buckets; i++) {
    const start = new Date(from.getTime() + i * stepMs);
    const end = new Date(Math.min(to.getTime(), start.getTime() + stepMs));
    const live = records.filter((r) => gpuSecondsWithin(r, start, end) > 0);
    for (const row of aggregateUsage(live, start, end, by).rows) {
      rows.push({ start: start.toISOString(), ...row });
    }
  }
  return { ...whole, stepMs, rows };
}

/** Sums records into rows, one per distinct value of the `by` keys, sorted by them. */
export function aggregateUsage(
  records: readonly UsageRecord[],
  from: Date,
  to: Date,
  by: readonly UsageKey[],
): UsageReport {
  const keys = USAGE_KEYS.filter((k) => by.includes(k));
  const rows = new Map<string, UsageRow>();
  let total = 0;
  let pods = 0;
  for (const r of records) {
    const seconds = gpuSecondsWithin(r, from, to);
    if (seconds <= 0) continue;
    const group = keys.map((k) => r[k]);
    const id = JSON.stringify(group);
    let row = rows.get(id);
    if (!row) {
      const fresh: UsageRow = { gpuSeconds: 0, gpuHours: 0, pods: 0 };
      for (const k of keys) fresh[k] = r[k];
      row = fresh;
      rows.set(id, row);
    }
    row.gpuSeconds += seconds;
    row.pods++;
    total += seconds;
    pods++;
  }
  const sorted = [...rows.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return {
    from: from.toISOString(),
    to: to.toISOString(),
    by: keys,
    rows: sorted.map(([, r]) => ({
      ...r,
      gpuSeconds: round3(r.gpuSeconds),
      gpuHours: hours(r.gpuSeconds),
    })),
    total: { gpuSeconds: round3(total), gpuHours: hours(total), pods },
  };
}

const round3 = (n: number): number => Math.round(n * 1000) / 1000;
const hours = (seconds: number): number => Math.round((seconds / 3600) * 1e6) / 1e6;
