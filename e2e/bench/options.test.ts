import { describe, expect, it } from 'vitest';
import { BenchUsageError, parseBenchArgs, wants } from './options.js';

function refusal(argv: string[]): BenchUsageError {
  try {
    parseBenchArgs(argv);
  } catch (err) {
    if (err instanceof BenchUsageError) return err;
    throw err;
  }
  throw new Error(`expected ${JSON.stringify(argv)} to be refused`);
}

describe('bench flags', () => {
  it('defaults to every benchmark on both stores', () => {
    const o = parseBenchArgs([]);
    expect(o).toMatchObject({ quick: false, cpuProf: false, keep: false, help: false });
    expect(o.stores).toBeUndefined();
    expect(o.shimWorkers).toBeUndefined();
    for (const n of ['offload', 'status', 'throughput', 'placement', 'scale'] as const) {
      expect(wants(o, n)).toBe(true);
    }
  });

  it('takes lists, repeated or comma-separated, without duplicates', () => {
    const o = parseBenchArgs([
      '--quick',
      '--only',
      'status, placement',
      '--only=placement',
      '--stores',
      'redis',
      '--shim-workers',
      '8',
    ]);
    expect([...o.only]).toEqual(['status', 'placement']);
    expect(wants(o, 'status')).toBe(true);
    expect(wants(o, 'offload')).toBe(false);
    expect(o.stores).toEqual(['redis']);
    expect(o.shimWorkers).toBe(8);
    expect(o.quick).toBe(true);
  });

  it.each([
    [['--stores', 'foo'], '--stores', 'foo'],
    [['--stores', ','], '--stores', 'sqlite, redis'],
    [['--only', 'latency'], '--only', 'latency'],
    [['--shim-workers', 'x'], '--shim-workers', '"x"'],
    [['--shim-workers', '0'], '--shim-workers', '"0"'],
    [['--shim-workers', '2.5'], '--shim-workers', '"2.5"'],
    [['--shim-workers'], '--shim-workers', 'argument missing'],
    [['--bogus'], '--bogus', 'Unknown option'],
    [['stray'], 'arguments', 'stray'],
    [['--out', ''], '--out', 'file'],
  ])('refuses %j naming %s', (argv, flag, detail) => {
    const err = refusal(argv);
    expect(err.flag).toBe(flag);
    expect(err.message).toContain(flag);
    expect(err.message).toContain(detail);
  });
});
