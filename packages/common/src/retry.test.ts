import { describe, expect, it } from 'vitest';
import { Backoff, backoffDelay, retry, sleep } from './retry.js';

describe('backoff', () => {
  it('grows exponentially and is capped', () => {
    const fixed = { baseMs: 100, maxMs: 1000, jitter: 0 };
    expect([0, 1, 2, 3, 4, 10].map((a) => backoffDelay(a, fixed))).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ]);
  });

  it('jitters within [(1-j)·d, d]', () => {
    expect(backoffDelay(2, { baseMs: 100, jitter: 0.5, random: () => 0 })).toBe(200);
    expect(backoffDelay(2, { baseMs: 100, jitter: 0.5, random: () => 0.999999 })).toBe(400);
    const seen = new Set(
      Array.from({ length: 50 }, () => backoffDelay(3, { baseMs: 100, jitter: 1 })),
    );
    expect(seen.size).toBeGreaterThan(10);
  });

  it('resets', () => {
    const b = new Backoff({ baseMs: 10, jitter: 0 });
    expect([b.next(), b.next(), b.next()]).toEqual([10, 20, 40]);
    b.reset();
    expect(b.next()).toBe(10);
  });
});

describe('retry', () => {
  it('retries until success', async () => {
    let calls = 0;
    const v = await retry(
      () => {
        calls++;
        return calls < 3 ? Promise.reject(new Error('flaky')) : Promise.resolve('ok');
      },
      { baseMs: 1, attempts: 5 },
    );
    expect(v).toBe('ok');
    expect(calls).toBe(3);
  });

  it('gives up after the last attempt with the last error', async () => {
    let calls = 0;
    await expect(
      retry(() => Promise.reject(new Error(`fail ${++calls}`)), { baseMs: 1, attempts: 3 }),
    ).rejects.toThrow('fail 3');
  });

  it('stops at once on a non-retryable error', async () => {
    let calls = 0;
    await expect(
      retry(() => Promise.reject(new Error(`fatal ${++calls}`)), {
        baseMs: 1,
        attempts: 5,
        isRetryable: () => false,
      }),
    ).rejects.toThrow('fatal 1');
  });

  it('aborts a sleep', async () => {
    const ac = new AbortController();
    const p = sleep(10_000, ac.signal);
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: 'CANCELLED' });
  });
});
