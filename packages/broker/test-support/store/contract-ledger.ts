import { beforeEach, expect, it } from 'vitest';
import type { UsageRecord } from '../../src/model.js';
import type { Store } from '../../src/store/store.js';
import {
  type ContractContext,
  GPU,
  at,
  errorOf,
  full,
  node,
  reserveOk,
  reserveRequest,
  seedDonor,
} from './fixtures.js';

function usage(reservation: string, startMs: number, endMs?: number): UsageRecord {
  return {
    reservation,
    origin: 'origin-a',
    namespace: 'ml',
    pod: `train-${reservation}`,
    donor: 'gpu-east',
    node: 'n1',
    product: 'NVIDIA-A100-SXM4-80GB',
    resource: GPU,
    gpus: 2,
    start: at(startMs).toISOString(),
    ...(endMs === undefined ? {} : { end: at(endMs).toISOString() }),
  };
}

const ALL: [Date, Date] = [new Date(0), at(86_400_000)];

/** Store contract: the usage ledger (idempotent, durable, apart from reservation pruning). */
export function ledgerContract(ctx: ContractContext): void {
  let store: Store;
  beforeEach(() => {
    store = ctx.store;
  });

  it('ledger: a record repeated, or ended twice, counts once with its first times', async () => {
    await store.recordUsage(usage('r1', 1_000));
    await store.recordUsage(usage('r1', 1_000));
    // A later report cannot move the start.
    await store.recordUsage(usage('r1', 5_000));
    expect(await store.listUsage(...ALL)).toStrictEqual([usage('r1', 1_000)]);
    await store.recordUsage(usage('r1', 1_000, 61_000));
    // Nor the end, once set: a repeated end report after a reconnect is the same pod.
    await store.recordUsage(usage('r1', 1_000, 99_000));
    await store.recordUsage(usage('r1', 1_000));
    expect(await store.listUsage(...ALL)).toStrictEqual([usage('r1', 1_000, 61_000)]);
  });

  it('ledger: parallel writers of one report leave one record', async () => {
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        store.recordUsage(usage('r1', 1_000, i % 2 === 0 ? 61_000 : undefined)),
      ),
    );
    expect(await store.listUsage(...ALL)).toStrictEqual([usage('r1', 1_000, 61_000)]);
  });

  it('ledger: lists the records that overlap [from, to), by start', async () => {
    await store.recordUsage(usage('late', 50_000));
    await store.recordUsage(usage('early', 0, 10_000));
    await store.recordUsage(usage('mid', 20_000, 40_000));
    const ids = async (from: number, to: number): Promise<string[]> =>
      (await store.listUsage(at(from), at(to))).map((r) => r.reservation);
    expect(await ids(-1, 100_000)).toEqual(['early', 'mid', 'late']);
    expect(await ids(10_000, 20_000)).toEqual([]);
    expect(await ids(9_999, 20_001)).toEqual(['early', 'mid']);
    // Still running: counts for any window after its start.
    expect(await ids(1_000_000, 2_000_000)).toEqual(['late']);
    expect(await ids(0, 50_000)).toEqual(['early', 'mid']);
  });

  it('ledger: refuses a record it cannot count, naming the field, and stores nothing', async () => {
    const bad: [Partial<UsageRecord>, string][] = [
      [{ gpus: 0 }, 'usage.gpus'],
      [{ gpus: 1.5 }, 'usage.gpus'],
      [{ start: 'yesterday' }, 'usage.start'],
      [{ end: at(0).toISOString(), start: at(5).toISOString() }, 'usage.end'],
      [{ reservation: '' }, 'usage.reservation'],
    ];
    for (const [change, field] of bad) {
      const err = await errorOf(store.recordUsage({ ...usage('r1', 10), ...change }));
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.field).toBe(field);
    }
    expect(await store.listUsage(...ALL)).toEqual([]);
  });

  it('ledger: survives a restart and the pruning of finished reservations', async () => {
    await seedDonor(store, 'gpu-east', [node('n1', 4)]);
    const r = await reserveOk(store, reserveRequest('gpu-east', 'n1', 2));
    const [bound] = await store.applyCapacity(
      'gpu-east',
      full([node('n1', 2, { offloadedPodUids: [r.pod.uid] })], 2),
      at(1_000),
    );
    expect(bound?.boundAt).toBe(at(1_000).toISOString());
    await store.recordUsage({ ...usage(r.id, 1_000), gpus: 2 });
    await store.endByPod(r.pod.uid, 'remote pod Succeeded', at(31_000));
    await store.recordUsage({ ...usage(r.id, 1_000, 31_000), gpus: 2 });
    expect(await store.pruneFinished?.(at(3_600_000))).toBe(1);
    expect(await store.getReservation(r.id)).toBeUndefined();

    store = await ctx.h.reopen();
    expect(await store.listUsage(...ALL)).toStrictEqual([usage(r.id, 1_000, 31_000)]);
  });
}
