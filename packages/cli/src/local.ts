import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, SpillwayError, sleep } from '@spillway/common';

/**
 * `join --local`: the agent and the shim as detached local processes instead of pods,
 * each with a log and a pid file under <state-dir>/<cluster>/, so that later spillctl
 * calls (`spillctl local stop`) and the demo can find and stop them.
 */

export type LocalComponent = 'agent' | 'virtual-node';

export const COMPONENT_PACKAGES: Record<LocalComponent, string> = {
  agent: '@spillway/agent',
  'virtual-node': '@spillway/virtual-node',
};

const BIN_ENV: Record<LocalComponent, string> = {
  agent: 'SPILLWAY_AGENT_BIN',
  'virtual-node': 'SPILLWAY_VIRTUAL_NODE_BIN',
};

export function defaultStateDir(env: Readonly<Record<string, string | undefined>>): string {
  return env.SPILLWAY_STATE_DIR ?? join(env.HOME ?? homedir(), '.spillway', 'local');
}

/**
 * The built entry point (dist/main.js) of a component: $SPILLWAY_AGENT_BIN /
 * $SPILLWAY_VIRTUAL_NODE_BIN, else next to the package's resolved entry, else the
 * workspace layout relative to this file. Undefined when it has not been built.
 */
export function componentEntry(
  component: LocalComponent,
  env: Readonly<Record<string, string | undefined>> = process.env,
): string | undefined {
  const override = env[BIN_ENV[component]];
  if (override) return existsSync(override) ? resolve(override) : undefined;
  const candidates: string[] = [];
  try {
    const entry = fileURLToPath(import.meta.resolve(COMPONENT_PACKAGES[component]));
    // Under the source export condition (tests) the entry is src/index.ts; daemons run from dist.
    candidates.push(join(dirname(entry).replace(/[/\\]src$/, `${'/'}dist`), 'main.js'));
  } catch {
    // Not resolvable (not installed or not built): fall through to the workspace layout.
  }
  const pkgDir = component === 'agent' ? 'agent' : 'virtual-node';
  candidates.push(fileURLToPath(new URL(`../../${pkgDir}/dist/main.js`, import.meta.url)));
  return candidates.find((c) => existsSync(c));
}

export interface ProcessInfo {
  cluster: string;
  component: LocalComponent;
  pid: number;
  entry: string;
  log: string;
  startedAt: string;
  running: boolean;
}

function pidFile(stateDir: string, cluster: string, c: LocalComponent): string {
  return join(stateDir, cluster, `${c}.pid`);
}

export function logFile(stateDir: string, cluster: string, c: LocalComponent): string {
  return join(stateDir, cluster, `${c}.log`);
}

/** Alive, and still the process we started (pids are reused). */
function isOurs(pid: number, entry: string): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(entry);
  } catch {
    // No /proc (macOS): a live pid from our own pid file is the best we know.
    return true;
  }
}

function readInfo(stateDir: string, cluster: string, c: LocalComponent): ProcessInfo | undefined {
  const file = pidFile(stateDir, cluster, c);
  if (!existsSync(file)) return undefined;
  try {
    const rec = JSON.parse(readFileSync(file, 'utf8')) as Omit<ProcessInfo, 'running'>;
    return { ...rec, running: isOurs(rec.pid, rec.entry) };
  } catch {
    return undefined;
  }
}

/** Every local process spillctl started under `stateDir`, optionally of one cluster. */
export function listLocal(stateDir: string, cluster?: string): ProcessInfo[] {
  if (!existsSync(stateDir)) return [];
  const clusters = cluster ? [cluster] : readdirSync(stateDir).sort();
  const out: ProcessInfo[] = [];
  for (const name of clusters) {
    for (const c of ['agent', 'virtual-node'] as const) {
      const info = readInfo(stateDir, name, c);
      if (info) out.push(info);
    }
  }
  return out;
}

export interface StartOptions {
  stateDir: string;
  cluster: string;
  component: LocalComponent;
  entry: string;
  args: string[];
  env?: Record<string, string | undefined>;
}

export interface StartedProcess extends ProcessInfo {
  /** Set once the process has exited while this spillctl still runs. */
  exited(): { code: number | null; signal: string | null } | undefined;
}

/** Spawns a component detached from spillctl, logging to its file; writes its pid file. */
export function startLocal(opts: StartOptions): StartedProcess {
  const existing = readInfo(opts.stateDir, opts.cluster, opts.component);
  if (existing?.running) {
    throw new SpillwayError(
      ErrorCode.ALREADY_EXISTS,
      `a local ${opts.component} for ${opts.cluster} is already running (pid ${existing.pid}); stop it with \`spillctl local stop ${opts.cluster}\``,
    );
  }
  mkdirSync(join(opts.stateDir, opts.cluster), { recursive: true, mode: 0o700 });
  const log = logFile(opts.stateDir, opts.cluster, opts.component);
  const fd = openSync(log, 'a', 0o600);
  // Its own settings come from flags only: the admin's SPILLWAY_* variables are not for it.
  const env = Object.fromEntries(
    Object.entries(opts.env ?? process.env).filter(
      ([k]) => !k.startsWith('SPILLWAY_') && k !== 'KUBECONFIG',
    ),
  );
  const child = spawn(process.execPath, [opts.entry, ...opts.args], {
    detached: true,
    stdio: ['ignore', fd, fd],
    env,
  });
  closeSync(fd);
  let exit: { code: number | null; signal: string | null } | undefined;
  child.on('exit', (code, signal) => (exit = { code, signal }));
  child.on('error', () => (exit = { code: null, signal: null }));
  child.unref();
  if (child.pid === undefined) {
    throw new SpillwayError(ErrorCode.INTERNAL, `could not start ${opts.entry}`);
  }
  const info: ProcessInfo = {
    cluster: opts.cluster,
    component: opts.component,
    pid: child.pid,
    entry: opts.entry,
    log,
    startedAt: new Date().toISOString(),
    running: true,
  };
  const { running: _r, ...rec } = info;
  writeFileSync(pidFile(opts.stateDir, opts.cluster, opts.component), JSON.stringify(rec), {
    mode: 0o600,
  });
  return { ...info, exited: () => exit };
}

/** The last lines of a log, to say why a process died. */
export function logTail(path: string, lines = 5): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; removes the pid file. Returns what was stopped. */
export async function stopLocal(
  stateDir: string,
  cluster: string,
  graceMs = 10_000,
): Promise<ProcessInfo[]> {
  const stopped: ProcessInfo[] = [];
  // The shim first: it depends on the agent's identity, not the other way round.
  for (const c of ['virtual-node', 'agent'] as const) {
    const info = readInfo(stateDir, cluster, c);
    if (!info) continue;
    if (info.running) {
      try {
        process.kill(info.pid, 'SIGTERM');
      } catch {
        // Already gone.
      }
      const deadline = Date.now() + graceMs;
      while (isOurs(info.pid, info.entry) && Date.now() < deadline) await sleep(100);
      if (isOurs(info.pid, info.entry)) {
        try {
          process.kill(info.pid, 'SIGKILL');
        } catch {
          // Gone meanwhile.
        }
      }
      stopped.push(info);
    }
    rmSync(pidFile(stateDir, cluster, c), { force: true });
  }
  return stopped;
}

export function localClusters(stateDir: string): string[] {
  if (!existsSync(stateDir)) return [];
  return readdirSync(stateDir).filter((n) =>
    (['agent', 'virtual-node'] as const).some((c) => existsSync(pidFile(stateDir, n, c))),
  );
}
