// CPU time and memory of a process, read from /proc (Linux), so each Spillway daemon is
// measured on its own while the load generators run elsewhere.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticks: number | undefined;

/** Clock ticks per second of /proc/<pid>/stat times. */
function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

export interface ProcSample {
  /** user + system CPU seconds since the process started. */
  cpuSeconds: number;
  rssBytes: number;
  /** Peak RSS over the process's life (VmHWM). */
  peakRssBytes: number;
  atMs: number;
}

export function sampleProc(pid: number): ProcSample {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name is parenthesized and may hold spaces: split after it.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
    return m ? Number(m[1]) * 1024 : 0;
  };
  return {
    cpuSeconds: (utime + stime) / clockTicks(),
    rssBytes: kb('VmRSS'),
    peakRssBytes: kb('VmHWM'),
    atMs: performance.now(),
  };
}

export interface ProcUsage {
  cpuSeconds: number;
  wallSeconds: number;
  /** cpuSeconds / wallSeconds. */
  cores: number;
  /** Largest RSS seen by the sampler during the window. */
  peakRssBytes: number;
  /** RSS at the end of the window. */
  rssBytes: number;
  /** The process's own high-water mark (VmHWM) at the end. */
  lifetimePeakRssBytes: number;
}

/** Samples a set of processes every `everyMs` until `stop()`; reports each one's usage. */
export class ProcWatch {
  private readonly first = new Map<number, ProcSample>();
  private readonly last = new Map<number, ProcSample>();
  private readonly peak = new Map<number, number>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pids: readonly number[],
    everyMs = 250,
  ) {
    this.tick();
    this.timer = setInterval(() => this.tick(), everyMs);
    this.timer.unref();
  }

  private tick(): void {
    for (const pid of this.pids) {
      let s: ProcSample;
      try {
        s = sampleProc(pid);
      } catch {
        continue; // exited
      }
      if (!this.first.has(pid)) this.first.set(pid, s);
      this.last.set(pid, s);
      this.peak.set(pid, Math.max(this.peak.get(pid) ?? 0, s.rssBytes));
    }
  }

  stop(): Map<number, ProcUsage> {
    clearInterval(this.timer);
    this.tick();
    const out = new Map<number, ProcUsage>();
    for (const pid of this.pids) {
      const a = this.first.get(pid);
      const b = this.last.get(pid);
      if (!a || !b) continue;
      const wallSeconds = (b.atMs - a.atMs) / 1000;
      const cpuSeconds = b.cpuSeconds - a.cpuSeconds;
      out.set(pid, {
        cpuSeconds,
        wallSeconds,
        cores: wallSeconds > 0 ? cpuSeconds / wallSeconds : 0,
        peakRssBytes: this.peak.get(pid) ?? b.rssBytes,
        rssBytes: b.rssBytes,
        lifetimePeakRssBytes: b.peakRssBytes,
      });
    }
    return out;
  }
}

/** The sum of several processes' usage (e.g. three agents). */
export function sumUsage(usages: readonly ProcUsage[]): ProcUsage {
  const wall = Math.max(0, ...usages.map((u) => u.wallSeconds));
  const cpu = usages.reduce((s, u) => s + u.cpuSeconds, 0);
  return {
    cpuSeconds: cpu,
    wallSeconds: wall,
    cores: wall > 0 ? cpu / wall : 0,
    peakRssBytes: usages.reduce((s, u) => s + u.peakRssBytes, 0),
    rssBytes: usages.reduce((s, u) => s + u.rssBytes, 0),
    lifetimePeakRssBytes: usages.reduce((s, u) => s + u.lifetimePeakRssBytes, 0),
  };
}

export const MiB = 1024 * 1024;
