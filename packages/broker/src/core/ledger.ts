import type { Logger } from '@spillway/common';
import type { UsageReport } from '@spillway/api/rest';
import type { ReservationRecord, UsageRecord } from '../model.js';
import type { Store } from '../store/store.js';
import { aggregateUsage, aggregateUsageByStep, usageRecordOf, type UsageFilter } from './usage.js';

/** Where the ledger reads a donor node's GPU product (the view's inventory). */
export type ProductOf = (donor: string, node: string) => string | undefined;

/**
 * The usage ledger: GPU-seconds of every offloaded pod from its bind to its end. The store
 * sets a reservation's boundAt and endedAt once, atomically; the ledger copies them into
 * its own records (recordUsage is idempotent), as each bind or end is written
 * (ViewedStore) and again in a level-triggered pass over all reservations: at start, after
 * a failed write, and before finished reservations are pruned. So neither a broker killed
 * between the two writes nor a repeated report changes what is counted.
 */
export class UsageLedger {
  /** The next reconcile() pass is needed (start, or a write failed). */
  private dirty = true;

  constructor(
    private readonly store: Store,
    private readonly productOf: ProductOf,
    private readonly log: Logger,
  ) {}

  /** Records binds and ends just written; a failure is logged and left to reconcile(). */
  async note(reservations: readonly ReservationRecord[]): Promise<void> {
    for (const r of reservations) {
      const record = usageRecordOf(r, this.productOf(r.donor, r.node));
      if (!record) continue;
      try {
        await this.store.recordUsage(record);
      } catch (err) {
        this.dirty = true;
        this.log.warn({ err, reservation: r.id }, 'usage ledger write failed; the reaper retries');
      }
    }
  }

  /** Whether a pass is owed before the next prune or at the next reaper tick. */
  get needsReconcile(): boolean {
    return this.dirty;
  }

  /**
   * Brings the ledger level with the reservations on record: every bound or finished
   * reservation that was bound has its record, with its end once it ended. Returns how
   * many records it wrote.
   */
  async reconcile(): Promise<number> {
    this.dirty = false;
    try {
      const [reservations, known] = await Promise.all([
        this.store.listReservations({ states: ['bound', 'released', 'ended', 'expired'] }),
        this.store.listUsage(new Date(0), new Date(8.64e15)),
      ]);
      const byId = new Map(known.map((u) => [u.reservation, u]));
      let written = 0;
      for (const r of reservations) {
        const have = byId.get(r.id);
        const record = usageRecordOf(r, have?.product ?? this.productOf(r.donor, r.node));
        if (!record) continue;
        if (have && (have.end !== undefined || record.end === undefined)) continue;
        await this.store.recordUsage(record);
        written++;
      }
      if (written > 0) this.log.info({ written }, 'usage ledger caught up with reservations');
      return written;
    } catch (err) {
      this.dirty = true;
      throw err;
    }
  }

  async report(filter: UsageFilter, now: Date): Promise<UsageReport> {
    const to = filter.to && filter.to < now ? filter.to : now;
    const from = filter.from ?? new Date(0);
    // A window wholly in the future has nothing in it yet.
    const records: UsageRecord[] = from < to ? await this.store.listUsage(from, to) : [];
    const end = from < to ? to : from;
    const by = filter.by ?? [];
    const report =
      filter.stepMs === undefined
        ? aggregateUsage(records, from, end, by)
        : aggregateUsageByStep(records, from, end, by, filter.stepMs);
    return { ...report, to: (filter.to ?? now).toISOString() };
  }
}
