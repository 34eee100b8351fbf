import { describe, expect, it } from 'vitest';
import { usageKeys, usageTime } from './commands/get.js';
import type { CliIO } from './context.js';
import { renderTable, usageColumns } from './output.js';
import { run } from './program.js';

function io(): CliIO & { out: string; err: string } {
  const state = { out: '', err: '' };
  return Object.assign(state, {
    stdout: { write: (s: string) => ((state.out += s), true) },
    stderr: { write: (s: string) => ((state.err += s), true) },
    env: { HOME: '/nonexistent-home-for-tests' },
    cwd: '/',
  });
}

describe('spillctl get usage: flags', () => {
  const now = Date.parse('2026-03-08T12:00:00Z');
  it('reads --since/--until as a duration back from now or an RFC 3339 time', () => {
    expect(usageTime('24h', '--since', now)).toBe('2026-03-07T12:00:00.000Z');
    expect(usageTime('1d12h', '--since', now)).toBe('2026-03-07T00:00:00.000Z');
    expect(usageTime('2026-03-01T00:00:00Z', '--until', now)).toBe('2026-03-01T00:00:00Z');
    expect(() => usageTime('yesterday', '--since', now)).toThrow(/--since: expected a duration/);
    expect(() => usageTime('2026-13-01T00:00:00Z', '--until', now)).toThrow(/--until/);
  });

  it('checks --by keys', () => {
    expect(usageKeys('origin,product')).toEqual(['origin', 'product']);
    expect(() => usageKeys('origin,node')).toThrow(/--by: "node" is not one of origin, namespace/);
  });

  it('prints one column per key, then the sums', () => {
    const text = renderTable(
      [{ origin: 'lab', donor: 'gpu-east', gpuSeconds: 7200.4, gpuHours: 2.000111, pods: 3 }],
      usageColumns(['origin', 'donor']),
      false,
    );
    expect(text).toBe(
      'ORIGIN   DONOR      GPU-HOURS   GPU-SECONDS   PODS\nlab      gpu-east   2.000       7200          3\n',
    );
  });

  it.each([
    [['get', 'usage', '--by', 'planet'], /--by: "planet" is not one of/],
    [['get', 'usage', '--since', 'soon'], /--since: expected a duration/],
    [['get', 'usage', '--origin', 'lab'], /--origin does not apply to "get usage"/],
    [['get', 'offloads', '-o', 'csv'], /-o csv applies to "get usage" only/],
    [['get', 'clusters', '--since', '1h'], /--since does not apply to "get clusters"/],
  ])('%j is a usage error: one line, exit 2', async (argv, pattern) => {
    const o = io();
    expect(await run(argv, o)).toBe(2);
    expect(o.out).toBe('');
    expect(o.err).toMatch(pattern);
  });
});
