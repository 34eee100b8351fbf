import type { Redis, RedisOptions } from 'ioredis';
import { ErrorCode, SpillwayError, type Logger } from '@spillway/common';
import { storeUnavailable } from './internal.js';

/**
 * Client options that make every call fail fast while Redis is down instead of queueing
 * forever, and keep reconnecting in the background with capped backoff.
 */
export function redisClientOptions() {
  return {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    commandTimeout: 5_000,
    // A resent Lua script could reserve twice; the caller retries with knowledge instead.
    autoResendUnfulfilledCommands: false,
    retryStrategy: (times: number) => Math.min(50 * 2 ** times, 2_000),
  } satisfies RedisOptions;
}

/** Server replies about our own data are bugs (INTERNAL); everything else is the link. */
export function mapRedisError(err: unknown): SpillwayError {
  if (err instanceof SpillwayError) return err;
  const e = err as { name?: string; message?: string };
  const message = e.message ?? String(err);
  const transient = /^(LOADING|BUSY|READONLY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN)\b/.test(message);
  if (e.name === 'ReplyError' && !transient) {
    return new SpillwayError(ErrorCode.INTERNAL, `redis store: ${message}`, { cause: err });
  }
  return storeUnavailable('redis', err);
}

/** Settles once a connecting client is ready; rejects when it ends or after `timeoutMs`. */
export function untilReady(c: Redis, timeoutMs: number, logger?: Logger): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (err?: Error): void => {
      clearTimeout(timer);
      c.off('ready', onReady);
      c.off('end', onEnd);
      if (err) reject(err);
      else resolve();
    };
    const onReady = (): void => done();
    const onEnd = (): void => done(new Error('the connection has ended'));
    const timer = setTimeout(
      () => done(new Error(`not connected after ${timeoutMs} ms`)),
      timeoutMs,
    );
    c.on('ready', onReady);
    c.on('end', onEnd);
    if (c.status === 'wait') {
      c.connect().catch((err: unknown) => {
        // Reported through the timeout or 'end'; the client keeps retrying on its own.
        logger?.debug({ err }, 'redis store connect attempt failed');
      });
    }
  });
}
