import { describe, expect, it } from 'vitest';
import { isSpillwayError } from '@spillway/common';
import { bytesOf, cpuMillisOf, formatBytes, parseQuantity } from './quantity.js';

describe('parseQuantity', () => {
  it.each([
    ['2', 2],
    ['500m', 0.5],
    ['0.1', 0.1],
    ['.5', 0.5],
    ['1k', 1000],
    ['1M', 1e6],
    ['1e3', 1000],
    ['1E3', 1000],
    ['1E', 1e18],
    ['2.5e-3', 0.0025],
    ['1Ki', 1024],
    ['512Mi', 512 * 2 ** 20],
    ['1Gi', 2 ** 30],
    ['1.5Gi', 1.5 * 2 ** 30],
    ['-1', -1],
    ['+3', 3],
    [' 4 ', 4],
    [7, 7],
  ] as const)('%j -> %d', (input, expected) => {
    expect(parseQuantity(input, 'f')).toBeCloseTo(expected, 12);
  });

  it.each(['', 'abc', '1Gb', '1 Gi', '1.2.3', 'Gi', '1e', '0x10', 'NaN', 'Infinity'])(
    'refuses %j naming the field',
    (input) => {
      try {
        parseQuantity(input, 'spec.containers[0].resources.requests[cpu]');
        expect.unreachable();
      } catch (err) {
        expect(isSpillwayError(err, 'INVALID_ARGUMENT')).toBe(true);
        expect((err as { field: string }).field).toBe('spec.containers[0].resources.requests[cpu]');
        expect((err as Error).message).toContain('is not a Kubernetes quantity');
      }
    },
  );

  it('refuses non-finite numbers and other types', () => {
    expect(() => parseQuantity(Number.POSITIVE_INFINITY, 'f')).toThrow(/quantity/);
    expect(() => parseQuantity(null, 'f')).toThrow(/quantity/);
  });
});

describe('cpuMillisOf / bytesOf', () => {
  it.each([
    ['100m', 100],
    ['0.1', 100],
    ['1', 1000],
    ['1.5', 1500],
    ['1500m', 1500],
    ['0.0001', 1],
  ] as const)('cpu %s = %dm', (q, m) => expect(cpuMillisOf(q, 'cpu')).toBe(m));

  it.each([
    ['1Gi', 2 ** 30],
    ['1G', 1e9],
    ['128974848', 128974848],
    ['129e6', 129e6],
    ['123Mi', 123 * 2 ** 20],
    ['1500m', 2],
  ] as const)('memory %s = %d bytes', (q, b) => expect(bytesOf(q, 'memory')).toBe(b));

  it('formats bytes for messages', () => {
    expect(formatBytes(2 ** 30)).toBe('1Gi');
    expect(formatBytes(1.5 * 2 ** 30)).toBe('1.5Gi');
    expect(formatBytes(512 * 2 ** 20)).toBe('512Mi');
    expect(formatBytes(100)).toBe('100');
  });
});
