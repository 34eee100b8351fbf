import { ErrorCode, SpillwayError } from '@spillway/common';
import type { UsageRecord } from '../model.js';

/**
 * Checks a ledger record before either store writes it: a record the ledger cannot
 * count (no GPUs, a start that is no time, an end before its start) is refused whole.
 */
export function validateUsageRecord(r: UsageRecord): void {
  const bad = (field: string, what: string): never => {
    throw new SpillwayError(ErrorCode.INVALID_ARGUMENT, `usage.${field}: ${what}`, {
      field: `usage.${field}`,
    });
  };
  if (r.reservation === '') bad('reservation', 'must not be empty');
  if (!Number.isInteger(r.gpus) || r.gpus <= 0)
    bad('gpus', `must be a positive integer, not ${r.gpus}`);
  const start = Date.parse(r.start);
  if (!Number.isFinite(start)) bad('start', `${JSON.stringify(r.start)} is not an RFC 3339 time`);
  if (r.end !== undefined) {
    const end = Date.parse(r.end);
    if (!Number.isFinite(end)) bad('end', `${JSON.stringify(r.end)} is not an RFC 3339 time`);
    if (end < start) bad('end', `${r.end} is before start ${r.start}`);
  }
}

/** The record's fields other than its times, as both stores keep them (JSON). */
export function usageIdentity(r: UsageRecord): Omit<UsageRecord, 'start' | 'end'> {
  return {
    reservation: r.reservation,
    origin: r.origin,
    namespace: r.namespace,
    pod: r.pod,
    donor: r.donor,
    node: r.node,
    product: r.product,
    resource: r.resource,
    gpus: r.gpus,
  };
}
