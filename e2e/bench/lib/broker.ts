// Spillway broker replicas as real processes (`node packages/broker/dist/main.js`), so their
// CPU and memory can be read from /proc while load comes from other processes.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

export const ADMIN_TOKEN = 'spillway-bench-admin-0123456789abcdef';
export const VIEWER_TOKEN = 'spillway-bench-viewer-0123456789abcdef';

// Compiled to e2e/dist/bench/lib/: four levels up is the repository root.
/** The broker chart's default `nodeOptions` (charts/spillway-broker/values.yaml). */
export const BROKER_NODE_OPTIONS = '--max-semi-space-size=4';

// From e2e/dist/bench/lib/ (compiled) four levels up is the repository root; from
// e2e/bench/lib/ (a vitest run of the sources) three.
const MAIN = ['../../../../packages/broker/dist/main.js', '../../../packages/broker/dist/main.js']
  .map((p) => fileURLToPath(new URL(p, import.meta.url)))
  .find((p, i, all) => existsSync(p) || i === all.length - 1)!;

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
  rest<T = unknown>(method: string, path: string, body?: unknown, token?: string): Promise<T>;
  stop(): Promise<void>;
}

async function waitForPorts(
  logFile: string,
  child: ChildProcess,
  timeoutMs: number,
): Promise<{ grpcPort: number; httpPort: number }> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(
        `broker exited with ${child.exitCode}: ${(await readFile(logFile, 'utf8')).slice(-2000)}`,
      );
    }
    let grpcPort: number | undefined;
    let httpPort: number | undefined;
    const text = await readFile(logFile, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        const rec = JSON.parse(line) as { msg?: string; port?: number };
        if (rec.msg === 'gRPC (mTLS) listening') grpcPort = rec.port;
        if (rec.msg === 'REST API listening') httpPort = rec.port;
      } catch {
        // A line still being written.
      }
    }
    if (grpcPort !== undefined && httpPort !== undefined) return { grpcPort, httpPort };
    await sleep(100);
  }
  throw new Error(`broker did not listen within ${timeoutMs} ms; see ${logFile}`);
}

export async function startBrokerProcess(opts: BrokerOptions): Promise<BrokerProcess> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first`);
  await mkdir(opts.dir, { recursive: true });
  const dataDir = join(opts.dir, 'data');
  const pkiDir = opts.pkiDir ?? join(dataDir, 'pki');
  const logFile = join(opts.dir, `broker-${Date.now()}.log`);
  const fd = openSync(logFile, 'a');
  const nodeFlags = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : [];
  const child = spawn(
    process.execPath,
    [
      ...nodeFlags,
      MAIN,
      '--data-dir',
      dataDir,
      '--pki-dir',
      pkiDir,
      '--grpc-host',
      '127.0.0.1',
      '--grpc-port',
      '0',
      '--http-host',
      '127.0.0.1',
      '--http-port',
      '0',
      '--admin-token',
      ADMIN_TOKEN,
      '--viewer-token',
      VIEWER_TOKEN,
      '--store',
      opts.store,
      ...(opts.redisPrefix ? ['--redis-prefix', opts.redisPrefix] : []),
      '--placement-policy',
      opts.placementPolicy ?? 'binpack',
      // Placements are never bound in these runs; they must not expire mid-run either.
      '--reservation-ttl',
      '1h',
      '--log-level',
      opts.logLevel ?? 'info',
      ...(opts.extraFlags ?? []),
    ],
    {
      stdio: ['ignore', fd, fd],
      // As the broker chart runs it (its default `nodeOptions`).
      env: { PATH: process.env.PATH ?? '', NODE_OPTIONS: BROKER_NODE_OPTIONS },
    },
  );
  closeSync(fd);
  const { grpcPort, httpPort } = await waitForPorts(logFile, child, 60_000);
  const restUrl = `http://127.0.0.1:${httpPort}`;
  const caPem = await readFile(join(pkiDir, 'ca.crt'), 'utf8');
  return {
    pid: child.pid!,
    child,
    grpcAddress: `127.0.0.1:${grpcPort}`,
    restUrl,
    caPem,
    pkiDir,
    logFile,
    options: opts,
    async rest<T>(method: string, path: string, body?: unknown, token = ADMIN_TOKEN): Promise<T> {
      // A loaded machine resets a connection now and then: try again (every call here is
      // safe to repeat: GETs, join tokens, peerings).
      for (let attempt = 1; ; attempt++) {
        let res: Response;
        try {
          res = await fetch(`${restUrl}${path}`, {
            method,
            headers: {
              authorization: `Bearer ${token}`,
              ...(body === undefined ? {} : { 'content-type': 'application/json' }),
            },
            ...(body === undefined ? {} : { body: JSON.stringify(body) }),
            signal: AbortSignal.timeout(120_000),
          });
        } catch (err) {
          if (attempt >= 4 || child.exitCode !== null) {
            const cause = (err as { cause?: unknown }).cause;
            const why = cause instanceof Error ? ` (${cause.message})` : '';
            throw new Error(
              `${method} ${path}: ${String(err)}${why}${child.exitCode !== null ? `; the broker exited with ${child.exitCode}, see ${logFile}` : ''}`,
              { cause: err },
            );
          }
          await sleep(500 * attempt);
          continue;
        }
        const text = await res.text();
        if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${text}`);
        return (text === '' ? undefined : JSON.parse(text)) as T;
      }
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
