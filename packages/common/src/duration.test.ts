import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from './duration.js';

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['15s', 15_000],
    ['1m30s', 90_000],
    ['2h', 7_200_000],
    ['1.5s', 1500],
    ['250', 250],
  ])('%s is %d ms', (s, ms) => expect(parseDuration(s)).toBe(ms));

  it.each(['', 'soon', '10x', '1m 30s', 's', '-5s'])('refuses %j', (s) => {
    expect(() => parseDuration(s, 'timeout')).toThrow(/timeout/);
  });

  it('formats', () => {
    expect(formatDuration(250)).toBe('250ms');
    expect(formatDuration(15_000)).toBe('15s');
    expect(formatDuration(90_000)).toBe('1m30s');
  });
});
