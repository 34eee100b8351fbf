// The results table and the JSON record of a run.
import { cpus, freemem, loadavg, totalmem } from 'node:os';
import { readFileSync } from 'node:fs';

export interface Row {
  bench: string;
  metric: string;
  value: string;
  goal?: string;
  /** undefined: informative only. */
  met?: boolean;
}

export interface Invariant {
  bench: string;
  what: string;
  ok: boolean;
  detail: string;
}

export interface Machine {
  nproc: number;
  memTotalGiB: number;
  memFreeGiB: number;
  cpuModel: string;
  node: string;
  platform: string;
  loadAvg: number[];
}

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m?.[1]) return m[1].trim();
  } catch {
    // Not Linux.
  }
  return cpus()[0]?.model ?? 'unknown';
}

export function machine(): Machine {
  return {
    nproc: cpus().length,
    memTotalGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    memFreeGiB: Math.round((freemem() / 1024 ** 3) * 10) / 10,
    cpuModel: cpuModel(),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    loadAvg: loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

/** A Markdown table (readable on a terminal too). */
export function table(rows: readonly Row[]): string {
  const cells = rows.map((r) => [
    r.bench,
    r.metric,
    r.value,
    r.goal ?? '',
    r.met === undefined ? '' : r.met ? 'met' : 'NOT met',
  ]);
  const head = ['Benchmark', 'Metric', 'Value', 'Goal', 'Status'];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: readonly string[]): string =>
    `| ${c.map((x, i) => pad(x, widths[i]!)).join(' | ')} |`;
  return [
    line(head),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...cells.map(line),
  ].join('\n');
}
