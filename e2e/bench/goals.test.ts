import { describe, expect, it } from 'vitest';
import { GOALS, goal, goalText, meets, type Goal } from './goals.js';

describe('bench goals', () => {
  it.each([
    ['offloadLatencyP50Ratio', '≤ 1.5×'],
    ['statusP99Ms', '< 500 ms'],
    ['throughputRatio', '≥ 0.7×'],
    ['shimPeakRssMB', '≤ 300 MB'],
    ['brokerScalePeakRssMB', '< 500 MB'],
    ['placementsPerSecondSqlite', '≥ 2000/s'],
    ['doubleBookedGpus', '0'],
  ] as const)('prints %s as %j', (name, text) => {
    expect(goalText(GOALS[name])).toBe(text);
  });

  it('checks the value against the number it prints, at the boundary', () => {
    const cases: [Goal, number, boolean][] = [
      [{ op: '<', limit: 10, unit: ' ms' }, 9.99, true],
      [{ op: '<', limit: 10, unit: ' ms' }, 10, false],
      [{ op: '≤', limit: 300, unit: ' MB' }, 300, true],
      [{ op: '≤', limit: 300, unit: ' MB' }, 300.01, false],
      [{ op: '≥', limit: 0.7, unit: '×' }, 0.7, true],
      [{ op: '≥', limit: 0.7, unit: '×' }, 0.69, false],
      [{ op: '=', limit: 0, unit: '' }, 0, true],
      [{ op: '=', limit: 0, unit: '' }, 1, false],
    ];
    for (const [g, v, ok] of cases) expect(meets(g, v), `${goalText(g)} for ${v}`).toBe(ok);
  });

  it('holds memory goals in MB (10^6 bytes), the unit values are printed in', () => {
    // 290 MiB is 304 MB: over a 300 MB goal, though "290" < 300 if units were mixed.
    expect(goal('shimPeakRssMB', (290 * 1024 * 1024) / 1e6)).toEqual({
      goal: '≤ 300 MB',
      met: false,
    });
    expect(goal('shimPeakRssMB', 299)).toEqual({ goal: '≤ 300 MB', met: true });
  });

  it('states every goal with a unit it can print and a finite limit', () => {
    for (const [name, g] of Object.entries(GOALS)) {
      expect(Number.isFinite(g.limit), name).toBe(true);
      expect(goalText(g), name).toContain(String(g.limit));
    }
  });
});
