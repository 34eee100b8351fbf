import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';

/** How a component process ended. */
export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const live = new Set<ComponentProcess>();
let hooksInstalled = false;
let watchdogStarted = false;
const pidFile = join(tmpdir(), `spillway-testbed-${process.pid}.pids`);

/**
 * Kills every live component at once. Synchronous so it also works from an
 * 'exit' handler, where no more promises run.
 */
export function killAllComponentsSync(): void {
  for (const proc of live) proc.killSync();
  live.clear();
  writePidFile();
}

function writePidFile(): void {
  try {
    if (live.size === 0) rmSync(pidFile, { force: true });
    else writeFileSync(pidFile, [...live].map((p) => String(p.pid)).join('\n'));
  } catch {
    // Best effort: the exit hooks still kill what the file misses.
  }
}

// A detached Node process that outlives us only to kill our component process
// groups if this process dies without running its exit hooks (SIGKILL, OOM).
const WATCHDOG = `
const fs = require('node:fs');
const [parent, file] = process.argv.slice(1);
setInterval(() => {
  try { process.kill(Number(parent), 0); return; } catch {}
  let pids = [];
  try { pids = fs.readFileSync(file, 'utf8').split('\\n').filter(Boolean); } catch {}
  for (const pid of pids) { try { process.kill(-Number(pid), 'SIGKILL'); } catch {} }
  try { fs.rmSync(file, { force: true }); } catch {}
  process.exit(0);
}, 500);
`;

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', killAllComponentsSync);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killAllComponentsSync();
      process.exit(128 + constants.signals[signal]);
    });
  }
  if (!watchdogStarted) {
    watchdogStarted = true;
    const child = spawn(process.execPath, ['-e', WATCHDOG, String(process.pid), pidFile], {
      detached: true,
      stdio: 'ignore',
    });
    child.unref();
  }
}

/**
 * One control-plane process (etcd, kube-apiserver, ...), in its own process
 * group, with stdout and stderr appended to a log file.
 */
export class ComponentProcess {
  private child: ChildProcess | undefined;
  private exitPromise: Promise<ExitStatus> | undefined;
  private exitStatus: ExitStatus | undefined;

  constructor(
    readonly cluster: string,
    readonly name: string,
    readonly binary: string,
    readonly args: readonly string[],
    readonly logFile: string,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.exitStatus === undefined;
  }

  /** Resolves when the process has ended (immediately if it never started). */
  get exited(): Promise<ExitStatus> {
    return this.exitPromise ?? Promise.resolve({ code: null, signal: null });
  }

  start(): void {
    if (this.running) throw new Error(`${this.cluster}/${this.name} is already running`);
    installHooks();
    const fd = openSync(this.logFile, 'a');
    try {
      const child = spawn(this.binary, this.args, { detached: true, stdio: ['ignore', fd, fd] });
      this.child = child;
      this.exitStatus = undefined;
      this.exitPromise = new Promise((resolve) => {
        const done = (status: ExitStatus): void => {
          if (this.exitStatus !== undefined) return;
          this.exitStatus = status;
          live.delete(this);
          writePidFile();
          resolve(status);
        };
        child.once('exit', (code, signal) => done({ code, signal }));
        child.once('error', () => done({ code: null, signal: null }));
      });
      // Stopping is explicit; a live component must not keep the test process alive.
      child.unref();
    } finally {
      closeSync(fd);
    }
    live.add(this);
    writePidFile();
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  async stop(graceMs = 5_000): Promise<void> {
    if (!this.running) return;
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    try {
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  killSync(): void {
    if (this.running) this.signal('SIGKILL');
  }

  private signal(signal: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // Already gone.
    }
  }

  /** Resident memory of the process in bytes (Linux /proc), or 0 when it is not running. */
  rssBytes(): number {
    const pid = this.pid;
    if (pid === undefined || !this.running) return 0;
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
      return kib === undefined ? 0 : Number(kib) * 1024;
    } catch {
      return 0;
    }
  }

  /** The last `lines` lines of the component's log, for error messages. */
  tail(lines = 15): string {
    try {
      return readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }
}
