import { describe, expect, it } from 'vitest';
import type { UsageRecord } from '../model.js';
import {
  aggregateUsage,
  aggregateUsageByStep,
  gpuSecondsWithin,
  parseUsageQuery,
  usageCsv,
} from './usage.js';

const rec = (
  id: string,
  start: string,
  end: string | undefined,
  extra: Partial<UsageRecord> = {},
): UsageRecord => ({
  reservation: id,
  origin: 'o1',
  namespace: 'ml',
  pod: id,
  donor: 'd1',
  node: 'n1',
  product: 'A100',
  resource: 'nvidia.com/gpu',
  gpus: 2,
  start,
  ...(end === undefined ? {} : { end }),
  ...extra,
});
const t = (s: number): Date => new Date(Date.UTC(2026, 2, 1, 0, 0, s));
const iso = (s: number): string => t(s).toISOString();

describe('gpuSecondsWithin', () => {
  it.each([
    ['inside', 10, 20, 0, 100, 20],
    ['clipped at from', 10, 20, 15, 100, 10],
    ['clipped at to', 10, 20, 0, 12, 4],
    ['before', 10, 20, 20, 30, 0],
    ['after', 10, 20, 0, 10, 0],
  ] as const)('%s', (_n, s, e, from, to, want) => {
    expect(gpuSecondsWithin(rec('r', iso(s), iso(e)), t(from), t(to))).toBe(want);
  });
  it('counts a running pod up to `to`', () => {
    expect(gpuSecondsWithin(rec('r', iso(10), undefined), t(0), t(40))).toBe(60);
  });
});

describe('aggregateUsage', () => {
  const records = [
    rec('a', iso(0), iso(10)),
    rec('b', iso(0), iso(5), { origin: 'o2', gpus: 1 }),
    rec('c', iso(0), undefined, { namespace: 'web' }),
  ];
  it('sums by the keys, in key order, whatever order `by` names them', () => {
    const r = aggregateUsage(records, t(0), t(20), ['namespace', 'origin']);
    expect(r.by).toEqual(['origin', 'namespace']);
    expect(r.rows).toEqual([
      { origin: 'o1', namespace: 'ml', gpuSeconds: 20, gpuHours: 0.005556, pods: 1 },
      { origin: 'o1', namespace: 'web', gpuSeconds: 40, gpuHours: 0.011111, pods: 1 },
      { origin: 'o2', namespace: 'ml', gpuSeconds: 5, gpuHours: 0.001389, pods: 1 },
    ]);
    expect(r.total).toEqual({ gpuSeconds: 65, gpuHours: 0.018056, pods: 3 });
  });
  it('gives one total row without keys, and none for an empty window', () => {
    expect(aggregateUsage(records, t(0), t(20), []).rows).toEqual([
      { gpuSeconds: 65, gpuHours: 0.018056, pods: 3 },
    ]);
    expect(aggregateUsage(records, t(100), t(100), []).rows).toEqual([]);
  });
  it('renders CSV with quoted cells where needed', () => {
    const r = aggregateUsage([rec('a', iso(0), iso(10), { product: 'A,"B"' })], t(0), t(20), [
      'product',
    ]);
    expect(usageCsv(r)).toBe('product,gpuSeconds,gpuHours,pods\r\n"A,""B""",20,0.005556,1\r\n');
  });
});

describe('parseUsageQuery', () => {
  it('parses times and keys, dropping repeats', () => {
    expect(
      parseUsageQuery({
        from: '2026-03-01T00:00:00Z',
        to: '2026-03-01T02:00:00+01:00',
        by: 'donor,origin,donor',
      }),
    ).toEqual({
      from: t(0),
      to: t(3600),
      by: ['donor', 'origin'],
    });
  });
  it.each([
    [{ from: '1' }, 'from'],
    [{ from: '2026-03-01' }, 'from'],
    [{ to: '2026-02-30T25:00:00Z' }, 'to'],
    [{ from: '2026-03-01T00:00:01Z', to: '2026-03-01T00:00:00Z' }, 'to'],
    [{ by: 'origin,,donor' }, 'by'],
    [{ by: 'node' }, 'by'],
  ])('refuses %j naming %s', (q, field) => {
    expect(() => parseUsageQuery(q)).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT', field }),
    );
  });
});

describe('aggregateUsageByStep', () => {
  it('splits the window into buckets from `from`, each row with its start', () => {
    const records = [
      rec('a', iso(5), iso(25)),
      rec('b', iso(0), undefined, { origin: 'o2', gpus: 1 }),
    ];
    const r = aggregateUsageByStep(records, t(0), t(30), ['origin'], 10_000);
    expect(r.stepMs).toBe(10_000);
    expect(r.rows).toEqual([
      { start: iso(0), origin: 'o1', gpuSeconds: 10, gpuHours: 0.002778, pods: 1 },
      { start: iso(0), origin: 'o2', gpuSeconds: 10, gpuHours: 0.002778, pods: 1 },
      { start: iso(10), origin: 'o1', gpuSeconds: 20, gpuHours: 0.005556, pods: 1 },
      { start: iso(10), origin: 'o2', gpuSeconds: 10, gpuHours: 0.002778, pods: 1 },
      { start: iso(20), origin: 'o1', gpuSeconds: 10, gpuHours: 0.002778, pods: 1 },
      { start: iso(20), origin: 'o2', gpuSeconds: 10, gpuHours: 0.002778, pods: 1 },
    ]);
    expect(r.total).toEqual({ gpuSeconds: 70, gpuHours: 0.019444, pods: 2 });
    expect(usageCsv(r).split('\r\n')[1]).toBe(`${iso(0)},o1,10,0.002778,1`);
  });
  it('refuses more than 1000 buckets, a step under 1s, and a step without from', () => {
    expect(() => aggregateUsageByStep([], t(0), t(2000), [], 1000)).toThrow(
      expect.objectContaining({ field: 'step' }),
    );
    expect(() => parseUsageQuery({ from: iso(0), step: '500ms' })).toThrow(
      /step: must be at least 1s/,
    );
    expect(() => parseUsageQuery({ step: '1h' })).toThrow(/step: needs from/);
    expect(() => parseUsageQuery({ from: iso(0), step: 'hourly' })).toThrow(
      expect.objectContaining({ field: 'step' }),
    );
    expect(parseUsageQuery({ from: iso(0), step: '6h' }).stepMs).toBe(21_600_000);
  });
});
