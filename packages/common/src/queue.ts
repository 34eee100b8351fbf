import type { Logger } from 'pino';
import { backoffDelay } from './retry.js';

export interface RateLimiterOptions {
  /** First per-key retry delay, ms. */
  baseMs?: number;
  /** Largest per-key retry delay, ms. */
  maxMs?: number;
  /** Overall token bucket across keys: steady rate per second and burst. */
  qps?: number;
  burst?: number;
}

/**
 * Per-key exponential backoff combined with an overall token bucket, as controllers use to
 * retry failing keys without hammering the API server.
 */
export class RateLimiter<K> {
  private readonly failures = new Map<K, number>();
  private tokens: number;
  private last: number;
  constructor(
    private readonly opts: RateLimiterOptions = {},
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = opts.burst ?? 100;
    this.last = now();
  }

  /** The delay before `key` may be retried; each call counts as one more failure. */
  when(key: K): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const perKey = backoffDelay(n, {
      baseMs: this.opts.baseMs ?? 50,
      maxMs: this.opts.maxMs ?? 300_000,
      jitter: 0.2,
    });
    return Math.max(perKey, this.bucketDelay());
  }

  private bucketDelay(): number {
    const qps = this.opts.qps ?? 10;
    const burst = this.opts.burst ?? 100;
    const t = this.now();
    this.tokens = Math.min(burst, this.tokens + ((t - this.last) / 1000) * qps);
    this.last = t;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / qps) * 1000);
  }

  forget(key: K): void {
    this.failures.delete(key);
  }

  retries(key: K): number {
    return this.failures.get(key) ?? 0;
  }
}

export interface WorkQueueOptions extends RateLimiterOptions {
  name?: string;
}

/**
 * A keyed, deduplicating work queue with the semantics controllers rely on:
 * - a key added many times before it is processed is processed once;
 * - a key is never processed by two workers at once; one added while being processed is
 *   processed again after `done`;
 * - `addAfter` and `addRateLimited` delay a key (the earliest pending delay wins).
 */
export class WorkQueue<K = string> {
  readonly name: string;
  private readonly queue: K[] = [];
  private readonly dirty = new Set<K>();
  private readonly processing = new Set<K>();
  private readonly delayed = new Map<K, { at: number; timer: NodeJS.Timeout }>();
  private readonly waiters: ((key: K | undefined) => void)[] = [];
  private readonly limiter: RateLimiter<K>;
  private shuttingDown = false;

  constructor(opts: WorkQueueOptions = {}) {
    this.name = opts.name ?? 'queue';
    this.limiter = new RateLimiter<K>(opts);
  }

  add(key: K): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    const waiter = this.waiters.shift();
    if (waiter) {
      this.dirty.delete(key);
      this.processing.add(key);
      waiter(key);
    } else {
      this.queue.push(key);
    }
  }

  addAfter(key: K, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + ms;
    const existing = this.delayed.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    timer.unref();
    this.delayed.set(key, { at, timer });
  }

  addRateLimited(key: K): void {
    this.addAfter(key, this.limiter.when(key));
  }

  /** Clears the key's failure history after a success. */
  forget(key: K): void {
    this.limiter.forget(key);
  }

  retries(key: K): number {
    return this.limiter.retries(key);
  }

  /** The next key, or undefined once the queue shuts down. Call `done(key)` afterwards. */
  get(): Promise<K | undefined> {
    const key = this.queue.shift();
    if (key !== undefined) {
      this.dirty.delete(key);
      this.processing.add(key);
      return Promise.resolve(key);
    }
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  done(key: K): void {
    this.processing.delete(key);
    if (this.dirty.has(key)) {
      this.dirty.delete(key);
      this.add(key);
    }
  }

  /** Keys waiting (not counting delayed or in-flight ones). */
  get length(): number {
    return this.queue.length;
  }

  get inFlight(): number {
    return this.processing.size;
  }

  get pendingDelayed(): number {
    return this.delayed.size;
  }

  shutdown(): void {
    this.shuttingDown = true;
    for (const { timer } of this.delayed.values()) clearTimeout(timer);
    this.delayed.clear();
    this.queue.length = 0;
    this.dirty.clear();
    for (const w of this.waiters.splice(0)) w(undefined);
  }

  get isShuttingDown(): boolean {
    return this.shuttingDown;
  }
}

export interface RunWorkersOptions {
  concurrency?: number;
  logger?: Logger;
}

/**
 * Runs `reconcile` for keys from the queue until it shuts down. A key whose reconcile
 * throws is retried with backoff; a success clears its backoff. Resolves when every
 * worker has stopped.
 */
export async function runWorkers<K>(
  queue: WorkQueue<K>,
  reconcile: (key: K) => Promise<void>,
  opts: RunWorkersOptions = {},
): Promise<void> {
  const worker = async (): Promise<void> => {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      try {
        await reconcile(key);
        queue.forget(key);
      } catch (err) {
        opts.logger?.warn(
          { err, key, queue: queue.name, retries: queue.retries(key) },
          'reconcile failed; will retry',
        );
        queue.addRateLimited(key);
      } finally {
        queue.done(key);
      }
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency ?? 1 }, () => worker()));
}
