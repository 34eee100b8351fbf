import { describe, expect, it } from 'vitest';
import { RateLimiter, WorkQueue, runWorkers } from './queue.js';

describe('WorkQueue', () => {
  it('deduplicates keys added before processing', async () => {
    const q = new WorkQueue<string>();
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.length).toBe(2);
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
  });

  it('never hands one key to two workers and reprocesses a key re-added while in flight', async () => {
    const q = new WorkQueue<string>();
    q.add('a');
    const first = await q.get();
    expect(first).toBe('a');
    q.add('a'); // changed while being processed
    expect(q.length).toBe(0); // not handed out again yet
    q.done('a');
    expect(q.length).toBe(1);
    expect(await q.get()).toBe('a');
  });

  it('wakes a waiting worker', async () => {
    const q = new WorkQueue<string>();
    const p = q.get();
    q.add('x');
    expect(await p).toBe('x');
  });

  it('delays with addAfter, the earliest delay winning', async () => {
    const q = new WorkQueue<string>();
    q.addAfter('k', 10_000);
    q.addAfter('k', 20);
    expect(q.pendingDelayed).toBe(1);
    const t0 = Date.now();
    expect(await q.get()).toBe('k');
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('returns undefined to waiters on shutdown', async () => {
    const q = new WorkQueue<string>();
    const p = q.get();
    q.shutdown();
    expect(await p).toBeUndefined();
    q.add('late');
    expect(q.length).toBe(0);
  });
});

describe('RateLimiter', () => {
  it('backs off per key and forgets on success', () => {
    const rl = new RateLimiter<string>({ baseMs: 100, maxMs: 1000, burst: 1000 });
    const d = [rl.when('a'), rl.when('a'), rl.when('a')];
    expect(d[0]).toBeGreaterThanOrEqual(80);
    expect(d[2]).toBeGreaterThan(d[0]!);
    expect(rl.when('b')).toBeLessThanOrEqual(100);
    rl.forget('a');
    expect(rl.retries('a')).toBe(0);
  });

  it('limits overall rate with a token bucket', () => {
    let now = 0;
    const rl = new RateLimiter<number>({ baseMs: 1, qps: 10, burst: 2 }, () => now);
    expect(rl.when(1)).toBeLessThan(5);
    expect(rl.when(2)).toBeLessThan(5);
    expect(rl.when(3)).toBeGreaterThanOrEqual(100); // bucket empty: one token per 100 ms
    now += 1000;
    expect(rl.when(4)).toBeLessThan(5);
  });
});

describe('runWorkers', () => {
  it('retries failing keys with backoff and stops on shutdown', async () => {
    const q = new WorkQueue<string>({ baseMs: 5, maxMs: 20 });
    const calls: string[] = [];
    let failures = 2;
    const done = runWorkers(
      q,
      (key) => {
        calls.push(key);
        if (key === 'flaky' && failures-- > 0) return Promise.reject(new Error('transient'));
        if (calls.filter((k) => k === 'flaky').length === 3) q.shutdown();
        return Promise.resolve();
      },
      { concurrency: 2 },
    );
    q.add('flaky');
    q.add('steady');
    await done;
    expect(calls.filter((k) => k === 'flaky')).toHaveLength(3);
    expect(calls).toContain('steady');
  });

  it('processes distinct keys concurrently but one key serially', async () => {
    const q = new WorkQueue<string>();
    let active = 0;
    let maxActive = 0;
    const perKey = new Map<string, number>();
    let processed = 0;
    const done = runWorkers(
      q,
      async (key) => {
        active++;
        perKey.set(key, (perKey.get(key) ?? 0) + 1);
        expect(perKey.get(key)).toBe(1);
        maxActive = Math.max(maxActive, active);
        await new Promise((r) => setTimeout(r, 5));
        perKey.set(key, perKey.get(key)! - 1);
        active--;
        if (++processed >= 4) q.shutdown();
      },
      { concurrency: 4 },
    );
    for (const k of ['a', 'b', 'c', 'd']) q.add(k);
    await done;
    expect(maxActive).toBeGreaterThan(1);
  });
});
