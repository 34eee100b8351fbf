// The Core on both stores: races, churn and concurrency. Shared setup: test-support/core/harness.ts.
import { describe, expect, it } from 'vitest';
import type { Core } from './broker-core.js';
import { describeCore, gpuNode, placement } from '../../test-support/core/harness.js';
describeCore((s) => {
  const { stores, time, newCore, peeredLab, joinAs } = s;
  describe('races', () => {
    it('one token, two concurrent joins: exactly one certificate', async () => {
      const a = await newCore();
      const b = await newCore();
      const { token } = await a.createJoinToken({ clusterId: 'c1', role: 'donor' });
      const results = await Promise.allSettled([a.join(token, s.csr), b.join(token, s.csr)]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const failed = results.find((r) => r.status === 'rejected');
      expect((failed as PromiseRejectedResult).reason).toMatchObject({ code: 'TOKEN_INVALID' });
    });

    it('the same pod placed concurrently on two replicas gets one reservation', async () => {
      const a = await newCore();
      const b = await newCore();
      await peeredLab(a);
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          (i % 2 ? a : b).place('lab', placement('same-pod', 2)),
        ),
      );
      const ids = new Set(results.map((r) => (r.placed ? r.reservation.id : `refused:${r.code}`)));
      expect(ids.size).toBe(1);
      expect([...ids][0]).not.toMatch(/^refused/);
      expect(await a.offloads({ states: ['open'] })).toHaveLength(1);
    });

    it('a peering limit holds under concurrent places across replicas', async () => {
      const a = await newCore();
      const b = await newCore();
      await peeredLab(a, 5);
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).place('lab', placement(`q-${i}`, 1))),
      );
      expect(results.filter((r) => r.placed)).toHaveLength(5);
      for (const r of results) if (!r.placed) expect(r.code).toBe('QUOTA_EXCEEDED');
      expect((await a.offloads({ origin: 'lab', states: ['open'] })).length).toBe(5);
    });
  });

  it('churn: 10,000 reservations placed and finished leave the store bounded by retention', async () => {
    const retentionMs = 60_000;
    const stepMs = 100;
    const core = await newCore({ reservationRetentionMs: retentionMs, pruneIntervalMs: 0 });
    await peeredLab(core);
    // One wide node, so fifty placements can run at once.
    await core.applyCapacity('donor-a', {
      full: true,
      nodes: [gpuNode('n1', 64)],
      removedNodes: [],
      sequence: 2,
    });
    const finished = async (): Promise<number> =>
      (await stores[0]!.listReservations({ states: ['released', 'expired', 'ended'] })).length;
    let most = 0;
    const batch = 100;
    for (let done = 0; done < 10_000; done += batch) {
      await Promise.all(
        Array.from({ length: 50 }, async (_, w) => {
          for (let i = w; i < batch; i += 50) {
            const r = await core.place('lab', placement(`churn-${done + i}`));
            if (!r.placed) throw new Error(r.reason);
            await core.release('lab', r.reservation.id, 'churn');
          }
        }),
      );
      time.advance(batch * stepMs);
      // Heartbeats keep the donor Ready while the fake clock runs ahead.
      await core.heartbeat('donor-a', 'agent');
      await core.tick();
      most = Math.max(most, await finished());
    }
    // What finished within the retention stays (one batch more: pruned at its tick).
    const bound = retentionMs / stepMs + batch;
    expect(most).toBeLessThanOrEqual(bound);
    expect(await finished()).toBeGreaterThan(0);
    expect(await finished()).toBeLessThanOrEqual(bound);
    expect(await stores[0]!.listReservations()).toHaveLength(await finished());
    if (s.backend.keys) expect(await s.backend.keys()).toBeLessThan(bound * 3 + 100);
  }, 180_000);

  it('concurrency: 1,000 places for 1 GPU each against 100 free GPUs on several replicas', async () => {
    // Redis: four replicas with their own connections; SQLite: two connections to one file.
    const replicas = s.backend.name === 'redis' ? 4 : 2;
    const all: Core[] = [];
    for (let i = 0; i < replicas; i++) all.push(await newCore());
    const first = all[0]!;
    await joinAs(first, 'lab', 'origin');
    // 100 free GPUs over 4 donors and 23 nodes of different sizes.
    const layout: Record<string, number[]> = {
      'donor-a': [8, 8, 8, 8],
      'donor-b': [8, 8, 8, 4],
      'donor-c': [4, 4, 4, 4, 4],
      'donor-d': [2, 2, 2, 2, 2, 2, 2, 2, 2, 2],
    };
    let total = 0;
    for (const [donor, sizes] of Object.entries(layout)) {
      await joinAs(first, donor, 'donor');
      await first.connected(donor, 'agent');
      await first.applyCapacity(donor, {
        full: true,
        nodes: sizes.map((free, i) => gpuNode(`node-${i}`, free)),
        removedNodes: [],
        sequence: 1,
      });
      await first.createPeering({ origin: 'lab', donor });
      total += sizes.reduce((a, b) => a + b, 0);
    }
    expect(total).toBe(100);

    const started = performance.now();
    const results = await Promise.all(
      Array.from({ length: 1000 }, (_, i) =>
        all[i % replicas]!.place('lab', placement(`pod-${i}`, 1)),
      ),
    );
    const elapsedMs = performance.now() - started;
    console.log(
      `[${s.backend.name}] 1000 concurrent place() on ${replicas} replicas: ${elapsedMs.toFixed(0)} ms`,
    );

    const placed = results.filter((r) => r.placed);
    expect(placed).toHaveLength(100);
    for (const r of results) if (!r.placed) expect(r.code).toBe('NO_FIT');

    const open = await stores[0]!.listReservations({ states: ['open'] });
    expect(open).toHaveLength(100);
    expect(new Set(open.map((r) => r.pod.uid)).size).toBe(100);
    const perNode = new Map<string, number>();
    for (const r of open)
      perNode.set(`${r.donor}/${r.node}`, (perNode.get(`${r.donor}/${r.node}`) ?? 0) + r.gpus);
    for (const [donor, sizes] of Object.entries(layout)) {
      sizes.forEach((free, i) => {
        expect(perNode.get(`${donor}/node-${i}`) ?? 0).toBeLessThanOrEqual(free);
      });
    }
    expect([...perNode.values()].reduce((a, b) => a + b, 0)).toBe(100);
    expect((await first.capacity({ origin: 'lab' })).totals.free).toBe(0);
  });
});
