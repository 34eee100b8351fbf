import { ErrorCode, SpillwayError, type Logger } from '@spillway/common';
import { RedisStore } from './redis.js';
import { openSqliteStore } from './sqlite.js';
import type { Store } from './store.js';

export type { Store } from './store.js';
export { SqliteStore, openSqliteStore, SQLITE_SCHEMA_VERSION } from './sqlite.js';
export { RedisStore, DEFAULT_REDIS_PREFIX, redisClientOptions } from './redis.js';

export type StoreConfig =
  { kind: 'sqlite'; path: string } | { kind: 'redis'; url: string; prefix?: string };

/** The broker config's flat form: both backends' settings, `kind` picks one. */
export interface StoreSettings {
  kind: 'sqlite' | 'redis';
  sqlitePath: string;
  redisUrl: string;
  redisPrefix?: string;
  logger?: Logger;
}

function normalize(config: StoreConfig | StoreSettings): StoreConfig {
  if (!('sqlitePath' in config)) return config;
  if (config.kind === 'sqlite') return { kind: 'sqlite', path: config.sqlitePath };
  return {
    kind: 'redis',
    url: config.redisUrl,
    ...(config.redisPrefix === undefined ? {} : { prefix: config.redisPrefix }),
  };
}

/** Opens the configured store. Redis connects lazily: call ping() to fail fast at start. */
export async function createStore(
  config: StoreConfig | StoreSettings,
  logger?: Logger,
): Promise<Store> {
  const log = logger ?? ('sqlitePath' in config ? config.logger : undefined);
  const c = normalize(config);
  switch (c.kind) {
    case 'sqlite':
      return openSqliteStore({ path: c.path, ...(log ? { logger: log } : {}) });
    case 'redis':
      return new RedisStore(c.url, {
        ...(c.prefix === undefined ? {} : { prefix: c.prefix }),
        ...(log ? { logger: log } : {}),
      });
    default: {
      const kind: unknown = (c as { kind: unknown }).kind;
      throw new SpillwayError(
        ErrorCode.INVALID_CONFIG,
        `store: unknown store kind ${JSON.stringify(kind)}; use "sqlite" or "redis"`,
        { field: 'store' },
      );
    }
  }
}
