// The one way the e2e suites, the benchmarks and the fault bed launch a Spillway broker as an
// operator runs it: `node packages/broker/dist/main.js` with flags, its log in a file, its
// ports read from its "listening" log lines (port 0) or given (a replica restarted in place).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

// Run from e2e/harness/ (vitest) or compiled to e2e/dist/harness/ (the bench).
const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROOT = resolve(HERE, HERE.includes(`${sep}dist${sep}`) ? '../../..' : '../..');

/** The built broker daemon. */
export const BROKER_MAIN = join(ROOT, 'packages', 'broker', 'dist', 'main.js');

/** The broker chart's default `nodeOptions` (charts/spillway-broker/values.yaml). */
export const BROKER_NODE_OPTIONS = '--max-semi-space-size=4';

export interface BrokerLaunch {
  /** This broker's directory: its data (unless dataDir) and its log. */
  dir: string;
  dataDir?: string;
  /** Shared PKI (replicas of one broker share a CA). Default <dataDir>/pki. */
  pkiDir?: string;
  /** 0 (the default) picks a free port, read back from the log. */
  grpcPort?: number;
  httpPort?: number;
  adminToken?: string;
  viewerToken?: string;
  store?: 'sqlite' | 'redis';
  redisUrl?: string;
  redisPrefix?: string;
  brokerId?: string;
  logLevel?: string;
  /** Any other broker flags. */
  flags?: readonly string[];
  /** Node flags before the script (e.g. --cpu-prof). */
  nodeFlags?: readonly string[];
  /** NODE_OPTIONS; default the chart's. */
  nodeOptions?: string;
  /** More environment (SPILLWAY_* settings). */
  env?: Record<string, string>;
  /** The log file; default <dir>/broker-<time>.log. */
  logFile?: string;
}

/** The broker's command line for `launch` (the binary is process.execPath). */
export function brokerArgs(o: BrokerLaunch): string[] {
  const dataDir = o.dataDir ?? join(o.dir, 'data');
  return [
    ...(o.nodeFlags ?? []),
    BROKER_MAIN,
    `--data-dir=${dataDir}`,
    ...(o.pkiDir ? [`--pki-dir=${o.pkiDir}`] : []),
    '--grpc-host=127.0.0.1',
    `--grpc-port=${o.grpcPort ?? 0}`,
    '--http-host=127.0.0.1',
    `--http-port=${o.httpPort ?? 0}`,
    ...(o.adminToken ? [`--admin-token=${o.adminToken}`] : []),
    ...(o.viewerToken ? [`--viewer-token=${o.viewerToken}`] : []),
    ...(o.store ? [`--store=${o.store}`] : []),
    ...(o.redisUrl ? [`--redis-url=${o.redisUrl}`] : []),
    ...(o.redisPrefix ? [`--redis-prefix=${o.redisPrefix}`] : []),
    ...(o.brokerId ? [`--broker-id=${o.brokerId}`] : []),
    `--log-level=${o.logLevel ?? 'info'}`,
    ...(o.flags ?? []),
  ];
}

/** The environment a launched broker gets: PATH, the chart's NODE_OPTIONS and `env`, nothing else. */
export function brokerEnv(o: Pick<BrokerLaunch, 'nodeOptions' | 'env'>): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '',
    NODE_OPTIONS: o.nodeOptions ?? BROKER_NODE_OPTIONS,
    ...o.env,
  };
}

/**
 * Builds the broker (and spillctl, which tests run against it) with `tsc -b`, for tests
 * outside the e2e run, which builds first. Up to date is a no-op.
 */
export function buildBroker(): void {
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const pkgs = ['broker', 'cli'].map((p) => join(ROOT, 'packages', p));
  execFileSync(process.execPath, [tsc, '-b', ...pkgs], { stdio: 'inherit' });
}

/** Runs the broker to its end with these arguments (--help, a bad flag) and no environment. */
export function runBrokerCommand(
  args: readonly string[],
  timeoutMs = 20_000,
): { status: number | null; stdout: string; stderr: string } {
  assertBrokerBuilt();
  const r = spawnSync(process.execPath, [BROKER_MAIN, ...args], {
    encoding: 'utf8',
    env: {},
    timeout: timeoutMs,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function assertBrokerBuilt(): void {
  if (!existsSync(BROKER_MAIN)) {
    throw new Error(`${BROKER_MAIN} is missing: run \`npm run build\` (tsc -b) first`);
  }
}

export interface RestResponse {
  status: number;
  body: unknown;
  headers: Headers;
}

export interface RestCall {
  /** Bearer token; null sends none. Default the launch's admin token. */
  token?: string | null;
  /** JSON-encoded unless a string. */
  body?: unknown;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

/** One REST call: status, body (JSON when it parses, else text) and headers. */
export async function restCall(
  baseUrl: string,
  method: string,
  path: string,
  opts: RestCall & { token: string | null },
): Promise<RestResponse> {
  const res = await fetch(`${baseUrl}${path}`, {
    method,
    headers: {
      ...(opts.token === null ? {} : { authorization: `Bearer ${opts.token}` }),
      ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...opts.headers,
    },
    ...(opts.body === undefined
      ? {}
      : { body: typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body) }),
    signal: AbortSignal.timeout(opts.timeoutMs ?? 120_000),
  });
  const text = await res.text();
  let body: unknown = text === '' ? undefined : text;
  try {
    if (text !== '') body = JSON.parse(text);
  } catch {
    // Not JSON (metrics): the text is the body.
  }
  return { status: res.status, body, headers: res.headers };
}

/** The ports a broker logged as listening, once both are there. */
export async function waitForBrokerPorts(
  logFile: string,
  exited: () => number | null,
  timeoutMs = 60_000,
): Promise<{ grpcPort: number; httpPort: number }> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const text = await readFile(logFile, 'utf8').catch(() => '');
    if (exited() !== null) {
      throw new Error(`broker exited with ${exited()}: ${text.slice(-2000)}`);
    }
    let grpcPort: number | undefined;
    let httpPort: number | undefined;
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

export interface BrokerProcess {
  readonly pid: number;
  readonly child: ChildProcess;
  readonly grpcAddress: string;
  readonly restUrl: string;
  readonly caPem: string;
  /** The CA key an operator holds: lets a test mint certificates the broker never would. */
  readonly caKeyPem: string;
  readonly dataDir: string;
  readonly pkiDir: string;
  readonly logFile: string;
  readonly launch: BrokerLaunch;
  /** How the process ended, once it has. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  rest(method: string, path: string, opts?: RestCall): Promise<RestResponse>;
  /** SIGTERM, SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

/** Starts a broker and resolves once it listens on both ports. */
export async function startBrokerProcess(o: BrokerLaunch): Promise<BrokerProcess> {
  assertBrokerBuilt();
  await mkdir(o.dir, { recursive: true });
  const dataDir = o.dataDir ?? join(o.dir, 'data');
  const pkiDir = o.pkiDir ?? join(dataDir, 'pki');
  const logFile = o.logFile ?? join(o.dir, `broker-${Date.now()}.log`);
  const fd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, brokerArgs(o), {
      stdio: ['ignore', fd, fd],
      env: brokerEnv(o),
    });
  } finally {
    closeSync(fd);
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once('exit', (code, signal) => r({ code, signal })),
  );
  let ports: { grpcPort: number; httpPort: number };
  try {
    ports = await waitForBrokerPorts(logFile, () => child.exitCode);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  const restUrl = `http://127.0.0.1:${ports.httpPort}`;
  const [caPem, caKeyPem] = await Promise.all([
    readFile(join(pkiDir, 'ca.crt'), 'utf8'),
    readFile(join(pkiDir, 'ca.key'), 'utf8'),
  ]);
  return {
    pid: child.pid!,
    child,
    grpcAddress: `127.0.0.1:${ports.grpcPort}`,
    restUrl,
    caPem,
    caKeyPem,
    dataDir,
    pkiDir,
    logFile,
    launch: o,
    exited,
    rest: (method, path, opts = {}) =>
      restCall(restUrl, method, path, {
        ...opts,
        token: opts.token === undefined ? (o.adminToken ?? null) : opts.token,
      }),
    async stop(graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
