// Spillway broker replicas as real processes, launched by the shared harness
// (e2e/harness/broker-process.ts), so their CPU and memory can be read from /proc while load
// comes from other processes.
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BROKER_NODE_OPTIONS,
  startBrokerProcess as launch,
  type BrokerProcess as Launched,
} from '../../harness/broker-process.js';

export { BROKER_NODE_OPTIONS };

export const ADMIN_TOKEN = 'spillway-bench-admin-0123456789abcdef';
export const VIEWER_TOKEN = 'spillway-bench-viewer-0123456789abcdef';

export interface BrokerOptions {
  /** Directory for this replica's data and log. */
  dir: string;
  store: 'sqlite' | 'redis';
  redisPrefix?: string;
  /** Shared PKI (replicas of one broker share a CA). Default <dir>/data/pki. */
  pkiDir?: string;
  placementPolicy?: 'binpack' | 'spread';
  /** Where to write a CPU profile on exit (node --cpu-prof). */
  cpuProfDir?: string;
  logLevel?: string;
  extraFlags?: string[];
}

export interface BrokerProcess {
  readonly pid: number;
  readonly child: ChildProcess;
  readonly grpcAddress: string;
  readonly restUrl: string;
  readonly caPem: string;
  readonly pkiDir: string;
  readonly logFile: string;
  readonly options: BrokerOptions;
  /** The JSON body of a 2xx answer; throws on anything else. */
  rest<T = unknown>(method: string, path: string, body?: unknown, token?: string): Promise<T>;
  stop(): Promise<void>;
}

export async function startBrokerProcess(opts: BrokerOptions): Promise<BrokerProcess> {
  const b: Launched = await launch({
    dir: opts.dir,
    ...(opts.pkiDir ? { pkiDir: opts.pkiDir } : {}),
    adminToken: ADMIN_TOKEN,
    viewerToken: VIEWER_TOKEN,
    store: opts.store,
    ...(opts.redisPrefix ? { redisPrefix: opts.redisPrefix } : {}),
    logLevel: opts.logLevel ?? 'info',
    ...(opts.cpuProfDir ? { nodeFlags: ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] } : {}),
    flags: [
      `--placement-policy=${opts.placementPolicy ?? 'binpack'}`,
      // Placements are never bound in these runs; they must not expire mid-run either.
      '--reservation-ttl=1h',
      ...(opts.extraFlags ?? []),
    ],
  });
  return {
    pid: b.pid,
    child: b.child,
    grpcAddress: b.grpcAddress,
    restUrl: b.restUrl,
    caPem: b.caPem,
    pkiDir: b.pkiDir,
    logFile: b.logFile,
    options: opts,
    async rest<T>(method: string, path: string, body?: unknown, token = ADMIN_TOKEN): Promise<T> {
      // A loaded machine resets a connection now and then: try again (every call here is
      // safe to repeat: GETs, join tokens, peerings).
      for (let attempt = 1; ; attempt++) {
        let res: Awaited<ReturnType<Launched['rest']>>;
        try {
          res = await b.rest(method, path, { token, ...(body === undefined ? {} : { body }) });
        } catch (err) {
          if (attempt >= 4 || b.child.exitCode !== null) {
            const cause = (err as { cause?: unknown }).cause;
            const why = cause instanceof Error ? ` (${cause.message})` : '';
            throw new Error(
              `${method} ${path}: ${String(err)}${why}${b.child.exitCode !== null ? `; the broker exited with ${b.child.exitCode}, see ${b.logFile}` : ''}`,
              { cause: err },
            );
          }
          await sleep(500 * attempt);
          continue;
        }
        if (res.status >= 300) {
          throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
        }
        return res.body as T;
      }
    },
    stop: () => b.stop(30_000),
  };
}
