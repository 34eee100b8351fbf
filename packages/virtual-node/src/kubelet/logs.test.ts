import { describe, expect, it } from 'vitest';
import { parseLogRequest } from './logs.js';

const url = (p: string): URL => new URL(p, 'https://kubelet');

describe('parseLogRequest', () => {
  it('reads what the API server sends for kubectl logs', () => {
    expect(
      parseLogRequest(
        url(
          '/containerLogs/ml/train-0/train?follow=true&tailLines=10&timestamps=true&limitBytes=500',
        ),
      ),
    ).toEqual({
      namespace: 'ml',
      pod: 'train-0',
      container: 'train',
      follow: true,
      previous: false,
      timestamps: true,
      tailLines: 10,
      sinceSeconds: 0,
      limitBytes: 500,
    });
  });
  it('turns sinceTime into seconds', () => {
    const now = Date.parse('2026-05-01T10:01:00Z');
    expect(
      parseLogRequest(url('/containerLogs/ml/p/c?sinceTime=2026-05-01T10:00:00Z'), now)
        ?.sinceSeconds,
    ).toBe(60);
  });
  it('ignores other paths and refuses bad numbers', () => {
    expect(parseLogRequest(url('/exec/ml/p/c'))).toBeUndefined();
    expect(parseLogRequest(url('/containerLogs/ml/p'))).toBeUndefined();
    expect(() => parseLogRequest(url('/containerLogs/ml/p/c?tailLines=-1'))).toThrow(/tailLines/);
  });
});
