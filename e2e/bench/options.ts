// The bench's command line, validated: a bad value exits 2 with a line naming the flag.
import { parseArgs } from 'node:util';

export const BENCHES = ['offload', 'status', 'throughput', 'placement', 'scale', 'gang'] as const;
export type BenchName = (typeof BENCHES)[number];
export const STORES = ['sqlite', 'redis'] as const;
export type BenchStore = (typeof STORES)[number];

export interface BenchOptions {
  help: boolean;
  quick: boolean;
  /** Empty: every benchmark. */
  only: ReadonlySet<BenchName>;
  out: string | undefined;
  cpuProf: boolean;
  /** Stores for the placement benchmark; undefined: both. */
  stores: BenchStore[] | undefined;
  shimWorkers: number | undefined;
  keep: boolean;
}

export class BenchUsageError extends Error {
  constructor(
    readonly flag: string,
    message: string,
  ) {
    super(`${flag}: ${message}`);
  }
}

/** The comma-separated values of a list flag, each one of `allowed`, at least one. */
function listOf<T extends string>(flag: string, raw: string[], allowed: readonly T[]): T[] {
  const out: T[] = [];
  for (const v of raw.flatMap((x) => x.split(',')).map((x) => x.trim())) {
    if (v === '') continue;
    if (!(allowed as readonly string[]).includes(v)) {
      throw new BenchUsageError(flag, `unknown value "${v}"; one of ${allowed.join(', ')}`);
    }
    if (!out.includes(v as T)) out.push(v as T);
  }
  if (out.length === 0)
    throw new BenchUsageError(flag, `give one or more of ${allowed.join(', ')}`);
  return out;
}

const MAX_SHIM_WORKERS = 256;

export function parseBenchArgs(argv: readonly string[]): BenchOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        quick: { type: 'boolean', default: false },
        only: { type: 'string', multiple: true },
        out: { type: 'string' },
        'cpu-prof': { type: 'boolean', default: false },
        stores: { type: 'string', multiple: true },
        'shim-workers': { type: 'string' },
        keep: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
      allowPositionals: false,
      strict: true,
    }));
  } catch (err) {
    // parseArgs names the offending option or argument in its message.
    const message = err instanceof Error ? err.message : String(err);
    const flag = /'(-[^' ]+)/.exec(message)?.[1] ?? 'arguments';
    throw new BenchUsageError(flag, message.replace(/\. To specify .*$/s, ''));
  }
  let shimWorkers: number | undefined;
  const sw = values['shim-workers'];
  if (sw !== undefined) {
    if (!/^\d+$/.test(sw) || Number(sw) < 1 || Number(sw) > MAX_SHIM_WORKERS) {
      throw new BenchUsageError(
        '--shim-workers',
        `"${sw}" is not a whole number from 1 to ${MAX_SHIM_WORKERS}`,
      );
    }
    shimWorkers = Number(sw);
  }
  if (values.out === '') throw new BenchUsageError('--out', 'give a file name');
  return {
    help: values.help,
    quick: values.quick,
    only: new Set(values.only === undefined ? [] : listOf('--only', values.only, BENCHES)),
    out: values.out,
    cpuProf: values['cpu-prof'],
    stores: values.stores === undefined ? undefined : listOf('--stores', values.stores, STORES),
    shimWorkers,
    keep: values.keep,
  };
}

/** Whether `name` runs under `--only` (everything when none is given). */
export function wants(o: Pick<BenchOptions, 'only'>, name: BenchName): boolean {
  return o.only.size === 0 || o.only.has(name);
}
