// Drives Spillway the way an admin does: the built `spillctl` binary and a real broker
// process (its own PKI from `spillctl broker init`, SQLite, real sockets). Shared by the
// CLI scenarios and the demo.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePorts } from '../testbed/ports.js';
import { poll } from '../testbed/index.js';

/** The repository root: the nearest parent whose package.json lists workspaces. */
export function repoRoot(from: string = fileURLToPath(import.meta.url)): string {
  let dir = dirname(from);
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && 'workspaces' in (JSON.parse(readFileSync(pkg, 'utf8')) as object)) {
      return dir;
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`no workspace root above ${from}`);
    dir = up;
  }
}

export const ROOT = repoRoot();
export const SPILLCTL = join(ROOT, 'packages/cli/dist/main.js');
export const BROKER_MAIN = join(ROOT, 'packages/broker/dist/main.js');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built spillctl; never throws on a non-zero exit. */
export function spillctl(
  args: readonly string[],
  env: Record<string, string | undefined>,
  timeoutMs = 120_000,
): Promise<RunResult> {
  if (!existsSync(SPILLCTL)) {
    throw new Error(`${SPILLCTL} is missing: run \`npm run build\` first`);
  }
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [SPILLCTL, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}

/** The environment a scenario's spillctl runs in: its own HOME, settings and state. */
export function cliEnv(dir: string): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const k of Object.keys(env))
    if (k.startsWith('SPILLWAY_') || k === 'KUBECONFIG') delete env[k];
  return {
    ...env,
    HOME: dir,
    SPILLWAY_CONFIG: join(dir, 'spillway-config'),
    SPILLWAY_STATE_DIR: join(dir, 'state'),
  };
}

export interface BrokerProcess {
  grpcAddress: string;
  restUrl: string;
  logFile: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Starts `spillway-broker` on the PKI directory `spillctl broker init` wrote. */
export async function startBrokerProcess(opts: {
  pkiDir: string;
  dataDir: string;
  logFile: string;
  ports?: { grpc: number; http: number };
  extraArgs?: string[];
}): Promise<BrokerProcess> {
  const [grpc, http] = opts.ports ? [opts.ports.grpc, opts.ports.http] : await freePorts(2);
  const fd = openSync(opts.logFile, 'a');
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('SPILLWAY_')) delete env[k];
  const child = spawn(
    process.execPath,
    [
      BROKER_MAIN,
      '--pki-dir',
      resolve(opts.pkiDir),
      '--data-dir',
      resolve(opts.dataDir),
      '--grpc-host',
      '127.0.0.1',
      '--grpc-port',
      String(grpc),
      '--http-host',
      '127.0.0.1',
      '--http-port',
      String(http),
      ...(opts.extraArgs ?? []),
    ],
    { stdio: ['ignore', fd, fd], env },
  );
  closeSync(fd);
  let exited: string | undefined;
  child.on('exit', (code, signal) => (exited = signal ?? `code ${code}`));
  const restUrl = `http://127.0.0.1:${http}`;
  await poll(
    async () => {
      const res = await fetch(`${restUrl}/readyz`).catch(() => undefined);
      return res?.ok ? true : undefined;
    },
    {
      timeoutMs: 30_000,
      what: `the broker to be ready (log ${opts.logFile})`,
      abort: () =>
        exited ? new Error(`the broker exited (${exited}); log ${opts.logFile}`) : undefined,
    },
  );
  return {
    grpcAddress: `127.0.0.1:${grpc}`,
    restUrl,
    logFile: opts.logFile,
    child,
    async stop() {
      if (exited) return;
      const done = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await done;
      clearTimeout(timer);
    },
  };
}
