// Percentiles with their spread. Shared 2-core machines make absolute numbers noisy, so a
// percentile is reported with a 95% bootstrap interval and a ratio with the interval of the
// ratio of the two resampled percentiles.

/** Nearest-rank percentile of an ascending array; NaN when empty. */
export function percentileSorted(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function percentile(values: readonly number[], p: number): number {
  return percentileSorted(
    [...values].sort((a, b) => a - b),
    p,
  );
}

/** A small deterministic PRNG (mulberry32), so a bootstrap gives the same interval twice. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function resample(values: readonly number[], rand: () => number): number[] {
  const out = new Array<number>(values.length);
  for (let i = 0; i < values.length; i++) out[i] = values[Math.floor(rand() * values.length)]!;
  return out.sort((a, b) => a - b);
}

export interface Estimate {
  value: number;
  /** 95% bootstrap interval. */
  lo: number;
  hi: number;
}

const ROUNDS = 400;

/** The p-th percentile with a 95% bootstrap interval. */
export function percentileCI(values: readonly number[], p: number, seed = 1): Estimate {
  const value = percentile(values, p);
  if (values.length < 2) return { value, lo: value, hi: value };
  const rand = rng(seed);
  const est: number[] = [];
  for (let i = 0; i < ROUNDS; i++) est.push(percentileSorted(resample(values, rand), p));
  est.sort((a, b) => a - b);
  return { value, lo: percentileSorted(est, 2.5), hi: percentileSorted(est, 97.5) };
}

/** percentile(a, p) / percentile(b, p) with a 95% interval from independent resamples. */
export function ratioCI(a: readonly number[], b: readonly number[], p: number, seed = 7): Estimate {
  const value = percentile(a, p) / percentile(b, p);
  if (a.length < 2 || b.length < 2) return { value, lo: value, hi: value };
  const rand = rng(seed);
  const est: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    est.push(percentileSorted(resample(a, rand), p) / percentileSorted(resample(b, rand), p));
  }
  est.sort((x, y) => x - y);
  return { value, lo: percentileSorted(est, 2.5), hi: percentileSorted(est, 97.5) };
}

/** Summary of a sample: the percentiles the tables print. */
export interface Summary {
  n: number;
  p50: Estimate;
  p95: Estimate;
  p99: Estimate;
  min: number;
  max: number;
  mean: number;
}

export function summarize(values: readonly number[]): Summary {
  const n = values.length;
  return {
    n,
    p50: percentileCI(values, 50),
    p95: percentileCI(values, 95),
    p99: percentileCI(values, 99),
    min: n ? Math.min(...values) : Number.NaN,
    max: n ? Math.max(...values) : Number.NaN,
    mean: n ? values.reduce((s, v) => s + v, 0) / n : Number.NaN,
  };
}

/** Median and range of a handful of repeated measurements (e.g. per-window rates). */
export function medianRange(values: readonly number[]): Estimate {
  return {
    value: percentile(values, 50),
    lo: values.length ? Math.min(...values) : Number.NaN,
    hi: values.length ? Math.max(...values) : Number.NaN,
  };
}

/** "12.3 [11.9–13.0]" with a precision fitting the magnitude. */
export function fmt(e: Estimate | number, unit = ''): string {
  if (typeof e === 'number') return `${num(e)}${unit}`;
  if (e.lo === e.value && e.hi === e.value) return `${num(e.value)}${unit}`;
  return `${num(e.value)}${unit} [${num(e.lo)}–${num(e.hi)}]`;
}

export function num(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 1000) return v.toFixed(0);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toFixed(3);
}
