import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import {
  ErrorCode,
  SpillwayError,
  loadConfig,
  type ConfigOf,
  type LoadOptions,
  type Schema,
} from '@spillway/common';

/**
 * The broker's configuration: named defaults, overridden by SPILLWAY_* environment variables,
 * overridden by flags. `loadBrokerConfig` validates it once; the result is passed down.
 */
export const BROKER_CONFIG_SCHEMA = {
  grpcHost: { type: 'string', default: '0.0.0.0', description: 'gRPC (mTLS) listen address' },
  grpcPort: {
    type: 'int',
    default: 7443,
    min: 0,
    max: 65535,
    description: 'gRPC (mTLS) port; 0 picks a free one',
  },
  httpHost: { type: 'string', default: '0.0.0.0', description: 'REST API listen address' },
  httpPort: {
    type: 'int',
    default: 8080,
    min: 0,
    max: 65535,
    description: 'REST API port; 0 picks a free one',
  },
  httpTls: {
    type: 'bool',
    description:
      'Serve the REST API over TLS with the server certificate; admin client certificates are then accepted',
  },
  dataDir: {
    type: 'string',
    default: './.spillway/broker',
    description: 'Directory for broker state (the SQLite file broker.db lives here)',
  },
  store: {
    type: 'string',
    default: 'sqlite',
    choices: ['sqlite', 'redis'] as const,
    description: 'State store: embedded SQLite (one broker) or Redis (several replicas)',
  },
  redisUrl: {
    type: 'string',
    default: 'redis://127.0.0.1:6379',
    pattern: /^rediss?:\/\//,
    description: 'Redis URL when --store redis',
  },
  redisPrefix: {
    type: 'string',
    default: 'spillway:',
    pattern: /^[A-Za-z0-9:_.-]{1,64}$/,
    description: 'Prefix of every Redis key, so brokers of different installs can share a Redis',
  },
  pkiDir: {
    type: 'string',
    description:
      'Directory with ca.crt, ca.key, server.crt, server.key, api-tokens.json (default <data-dir>/pki; created on first start when empty)',
  },
  serverDnsNames: {
    type: 'list',
    default: ['localhost'],
    description: 'DNS names put in a server certificate the broker creates itself',
  },
  serverIps: {
    type: 'list',
    default: ['127.0.0.1'],
    description: 'IP addresses put in a server certificate the broker creates itself',
  },
  heartbeatTimeout: {
    type: 'duration',
    default: '15s',
    minMs: 1000,
    maxMs: 3_600_000,
    description: 'A cluster whose stream is silent this long is NotReady',
  },
  reservationTtl: {
    type: 'duration',
    default: '60s',
    minMs: 1000,
    maxMs: 3_600_000,
    description: 'An open GPU reservation not seen bound on the donor expires after this',
  },
  reservationRetention: {
    type: 'duration',
    default: '24h',
    minMs: 0,
    maxMs: 8_760 * 3_600_000,
    description:
      'Finished reservations (released, expired, ended) are deleted this long after they finished; 0 keeps them forever',
  },
  clusterCertValidity: {
    type: 'duration',
    default: '720h',
    minMs: 10_000,
    maxMs: 8_760 * 3_600_000,
    description: 'Lifetime of the certificates issued to clusters; agents renew at two thirds',
  },
  placementPolicy: {
    type: 'string',
    default: 'binpack',
    choices: ['binpack', 'spread', 'cost'] as const,
    description: 'How a donor node is chosen among those that fit',
  },
  shutdownGrace: {
    type: 'duration',
    default: '10s',
    minMs: 0,
    maxMs: 120_000,
    description: 'How long streams and requests get to finish on shutdown',
  },
  logLevel: {
    type: 'string',
    default: 'info',
    choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const,
    description: 'Log level',
  },
  logPretty: { type: 'bool', description: 'Human-readable logs instead of JSON' },
  brokerId: {
    type: 'string',
    pattern: /^[A-Za-z0-9][-A-Za-z0-9._]{0,99}$/,
    description: 'This replica’s ID in the store (default <hostname>-<pid>-<random>)',
  },
  // Checked in resolveBrokerConfig, not with `pattern`: a pattern error would echo the secret.
  adminToken: {
    type: 'string',
    secret: true,
    description: 'Bootstrap REST token with the admin role (16+ characters)',
  },
  viewerToken: {
    type: 'string',
    secret: true,
    description: 'Bootstrap REST token with the viewer role (16+ characters)',
  },
  authFailureRateLimit: {
    type: 'int',
    default: 10,
    min: 1,
    max: 100_000,
    description: 'Failed REST authentications allowed per client IP per minute before 429',
  },
  trustedProxies: {
    type: 'list',
    default: [],
    description:
      'Addresses or CIDRs of the proxies in front of the REST API (an ingress); only from these is X-Forwarded-For believed (default none)',
  },
} satisfies Schema;

export type BrokerConfigInput = ConfigOf<typeof BROKER_CONFIG_SCHEMA>;

/** The validated config with derived values filled in (absolute dirs, broker ID). */
export type BrokerConfig = Omit<BrokerConfigInput, 'pkiDir' | 'brokerId' | 'dataDir'> & {
  dataDir: string;
  pkiDir: string;
  brokerId: string;
  /** The SQLite file, inside dataDir. */
  sqlitePath: string;
};

export const SQLITE_FILE_NAME = 'broker.db';

/** A replica ID unique across restarts, so a restarted broker never inherits stale streams. */
export function defaultBrokerId(): string {
  const host =
    hostname()
      .replace(/[^A-Za-z0-9._-]/g, '-')
      .slice(0, 60) || 'broker';
  return `${host}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/** `10.1.2.3`, `10.0.0.0/8`, `fd00::1`, `fd00::/8`. */
export function isAddressOrCidr(entry: string): boolean {
  const [address = '', prefix, ...more] = entry.split('/');
  const family = isIP(address);
  if (family === 0 || more.length > 0) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
}

/** Fills derived values; `cwd` anchors relative directories. */
export function resolveBrokerConfig(
  input: BrokerConfigInput,
  cwd: string = process.cwd(),
): BrokerConfig {
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(cwd, p));
  for (const [name, flag] of [
    ['adminToken', '--admin-token'],
    ['viewerToken', '--viewer-token'],
  ] as const) {
    const token = input[name];
    if (token !== undefined && !/^\S{16,256}$/.test(token)) {
      throw new SpillwayError(
        ErrorCode.INVALID_CONFIG,
        `invalid configuration: ${flag} must be 16-256 characters without spaces (value not shown)`,
        { field: flag },
      );
    }
  }
  for (const entry of input.trustedProxies) {
    if (!isAddressOrCidr(entry)) {
      throw new SpillwayError(
        ErrorCode.INVALID_CONFIG,
        `invalid configuration: --trusted-proxies: "${entry}" is not an IP address or CIDR (e.g. 10.0.0.0/8, fd00::/8)`,
        { field: '--trusted-proxies' },
      );
    }
  }
  const dataDir = abs(input.dataDir);
  return {
    ...input,
    dataDir,
    pkiDir:
      input.pkiDir === undefined || input.pkiDir === '' ? join(dataDir, 'pki') : abs(input.pkiDir),
    brokerId: input.brokerId ?? defaultBrokerId(),
    sqlitePath: join(dataDir, SQLITE_FILE_NAME),
  };
}

export interface LoadedBrokerConfig {
  config: BrokerConfig;
  help: boolean;
  /** Non-flag arguments; the broker takes none. */
  positionals: string[];
}

/** Parses flags and environment; throws INVALID_CONFIG naming the bad flag or variable. */
export function loadBrokerConfig(opts: LoadOptions & { cwd?: string } = {}): LoadedBrokerConfig {
  const { config, help, positionals } = loadConfig(BROKER_CONFIG_SCHEMA, opts);
  return { config: resolveBrokerConfig(config, opts.cwd), help, positionals };
}

/** A complete config for tests and embedding: defaults plus `overrides`. */
export function brokerConfig(overrides: Partial<BrokerConfig> = {}, cwd?: string): BrokerConfig {
  const { config } = loadConfig(BROKER_CONFIG_SCHEMA, { argv: [], env: {} });
  const resolved = resolveBrokerConfig(config, cwd);
  const merged = { ...resolved, ...overrides };
  if (overrides.dataDir !== undefined) {
    if (overrides.pkiDir === undefined) merged.pkiDir = join(merged.dataDir, 'pki');
    if (overrides.sqlitePath === undefined)
      merged.sqlitePath = join(merged.dataDir, SQLITE_FILE_NAME);
  }
  return merged;
}
