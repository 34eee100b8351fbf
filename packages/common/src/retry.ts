import { ErrorCode, SpillwayError } from './errors.js';

export interface BackoffOptions {
  /** First delay, in ms. */
  baseMs?: number;
  /** Largest delay, in ms. */
  maxMs?: number;
  factor?: number;
  /** Share of the delay that is random: 1 is "full jitter", 0 is none. */
  jitter?: number;
  /** For tests: a source of randomness in [0, 1). */
  random?: () => number;
}

/** The delay before attempt `attempt` (0-based), exponential with jitter, capped. */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}): number {
  const base = opts.baseMs ?? 100;
  const max = opts.maxMs ?? 30_000;
  const factor = opts.factor ?? 2;
  const jitter = opts.jitter ?? 0.5;
  const random = opts.random ?? Math.random;
  const exp = Math.min(max, base * Math.pow(factor, Math.max(0, attempt)));
  // Keep (1 - jitter) of the delay fixed and randomise the rest, so reconnecting clients
  // spread out instead of arriving together.
  return Math.round(exp * (1 - jitter) + exp * jitter * random());
}

/** A stateful backoff for reconnect loops: `next()` grows, `reset()` after success. */
export class Backoff {
  private attempt = 0;
  constructor(private readonly opts: BackoffOptions = {}) {}
  next(): number {
    return backoffDelay(this.attempt++, this.opts);
  }
  reset(): void {
    this.attempt = 0;
  }
  get attempts(): number {
    return this.attempt;
  }
}

export interface RetryOptions extends BackoffOptions {
  /** Attempts in all, including the first. */
  attempts?: number;
  signal?: AbortSignal;
  /** Return false to stop retrying (the error is thrown at once). */
  isRetryable?: (err: unknown) => boolean;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

/** Resolves after `ms`, or rejects with CANCELLED when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new SpillwayError(ErrorCode.CANCELLED, 'cancelled'));
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new SpillwayError(ErrorCode.CANCELLED, 'cancelled'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Calls `fn` until it succeeds, with jittered exponential backoff between attempts. */
export async function retry<T>(
  fn: (attempt: number) => Promise<T>,
  opts: RetryOptions = {},
): Promise<T> {
  const attempts = opts.attempts ?? 5;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      const last = attempt + 1 >= attempts;
      if (last || opts.signal?.aborted || (opts.isRetryable && !opts.isRetryable(err))) throw err;
      const delay = backoffDelay(attempt, opts);
      opts.onRetry?.(err, attempt + 1, delay);
      await sleep(delay, opts.signal);
    }
  }
}
