import { ErrorCode, SpillwayError } from '@spillway/common';

/**
 * Kubernetes resource quantities ("500m", "2", "1Gi", "512Mi", "1e3", "1k"), as the API
 * server accepts them: a signed decimal number followed by a binary suffix (Ki..Ei), a
 * decimal suffix (m, k, M..E) or a decimal exponent (e3, E-2).
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

// The exponent form is tried first so that "1E3" is 1000 and "1E" is one exa.
const QUANTITY =
  /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei)|(n|u|m|k|M|G|T|P|E))?$/;

/** Float noise such as 0.1 * 1000 = 100.00000000000001 must not round up to 101. */
function clean(n: number): number {
  return Number(n.toPrecision(15));
}

/** Parses a quantity to a plain number; throws INVALID_ARGUMENT naming `field`. */
export function parseQuantity(input: unknown, field: string): number {
  if (typeof input === 'number') {
    if (Number.isFinite(input)) return input;
  } else if (typeof input === 'string') {
    const m = QUANTITY.exec(input.trim());
    if (m) {
      const base = Number(m[1]);
      let value: number;
      if (m[2] !== undefined) value = base * 10 ** Number(m[2]);
      else if (m[3] !== undefined) value = base * BINARY[m[3]]!;
      else value = base * DECIMAL[m[4] ?? '']!;
      if (Number.isFinite(value)) return clean(value);
    }
  }
  throw new SpillwayError(
    ErrorCode.INVALID_ARGUMENT,
    `${field}: ${JSON.stringify(input)} is not a Kubernetes quantity (e.g. 500m, 2, 1Gi, 512Mi, 1e3)`,
    { field },
  );
}

/** CPU in millicores, rounded up like the scheduler does. */
export function cpuMillisOf(input: unknown, field: string): number {
  return Math.ceil(clean(parseQuantity(input, field) * 1000));
}

/** Memory (or any byte quantity), rounded up to whole bytes. */
export function bytesOf(input: unknown, field: string): number {
  return Math.ceil(parseQuantity(input, field));
}

/** Formats bytes compactly for human messages ("1.5Gi", "512Mi", "100"). */
export function formatBytes(bytes: number): string {
  for (const [suffix, mult] of [
    ['Ti', 2 ** 40],
    ['Gi', 2 ** 30],
    ['Mi', 2 ** 20],
    ['Ki', 2 ** 10],
  ] as const) {
    if (bytes >= mult) {
      const v = bytes / mult;
      return `${Number.isInteger(v) ? v : v.toFixed(1)}${suffix}`;
    }
  }
  return String(bytes);
}

/** An extended resource (GPUs): must be a whole number. */
export function integerQuantity(input: unknown, field: string): number {
  const v = parseQuantity(input, field);
  if (!Number.isInteger(v)) {
    throw new SpillwayError(
      ErrorCode.INVALID_ARGUMENT,
      `${field}: ${JSON.stringify(input)} is not a whole number`,
      { field },
    );
  }
  return v;
}
