import { ErrorCode, SpillwayError } from './errors.js';

/**
 * Kubernetes resource quantities ("500m", "2", "1Gi", "1.5G", "1e3") as numbers.
 * Enough precision for scheduling arithmetic: CPU in millicores, memory in bytes,
 * extended resources (GPUs) as integers.
 */

const BINARY: Record<string, number> = {
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};
const DECIMAL: Record<string, number> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
};

const QUANTITY =
  /^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$/;

/** The quantity's value in base units (cores, bytes, count). */
export function parseQuantity(input: string | number, field = 'quantity'): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input)) throw bad(String(input), field);
    return input;
  }
  const s = input.trim();
  const m = QUANTITY.exec(s);
  if (!m) throw bad(input, field);
  const n = Number(m[1]);
  if (m[2]) return n * Math.pow(10, Number(m[2].slice(1)));
  const suffix = m[3] ?? '';
  const mult = BINARY[suffix] ?? DECIMAL[suffix];
  if (mult === undefined) throw bad(input, field);
  return n * mult;
}

function bad(input: string, field: string): SpillwayError {
  return new SpillwayError(
    ErrorCode.INVALID_ARGUMENT,
    `${field}: "${input}" is not a Kubernetes quantity (e.g. 500m, 2, 1Gi)`,
    { field },
  );
}

/** CPU in millicores, rounded up like the scheduler. */
export function cpuMillis(q: string | number | undefined, field = 'cpu'): number {
  return q === undefined ? 0 : Math.ceil(parseQuantity(q, field) * 1000 - 1e-9);
}

/** Memory in bytes, rounded up. */
export function memoryBytes(q: string | number | undefined, field = 'memory'): number {
  return q === undefined ? 0 : Math.ceil(parseQuantity(q, field) - 1e-9);
}

/** An extended resource (GPUs): must be a whole number. */
export function integerQuantity(q: string | number | undefined, field: string): number {
  if (q === undefined) return 0;
  const v = parseQuantity(q, field);
  if (!Number.isInteger(v)) {
    throw new SpillwayError(
      ErrorCode.INVALID_ARGUMENT,
      `${field}: ${String(q)} is not a whole number`,
      { field },
    );
  }
  return v;
}
