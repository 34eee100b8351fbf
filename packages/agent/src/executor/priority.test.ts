import { describe, expect, it } from 'vitest';
import { guestPriorityClass, priorityClassMatches } from './priority.js';

const preempt = {
  reclaim: 'preempt' as const,
  priorityClassName: 'spillway-guest',
  priority: -1000,
  maxGracePeriodSeconds: 30,
};

describe('guestPriorityClass', () => {
  it('never preempts, is never the default, carries the donor priority', () => {
    const pc = guestPriorityClass(preempt);
    expect(pc).toMatchObject({
      metadata: { name: 'spillway-guest', labels: { 'app.kubernetes.io/managed-by': 'spillway' } },
      value: -1000,
      preemptionPolicy: 'Never',
      globalDefault: false,
    });
    expect(pc.description).toMatch(/preempted when this cluster needs the GPUs/);
    expect(guestPriorityClass({ ...preempt, reclaim: 'never', priority: 0 }).description).toMatch(
      /not preempted by pods without a PriorityClass/,
    );
  });
});

describe('priorityClassMatches', () => {
  const want = guestPriorityClass(preempt);
  it('compares the immutable fields', () => {
    expect(priorityClassMatches({ ...want, description: 'edited' }, want)).toBe(true);
    expect(priorityClassMatches({ ...want, value: 0 }, want)).toBe(false);
    expect(priorityClassMatches({ value: -1000 }, want)).toBe(false);
    expect(priorityClassMatches({ value: -1000, preemptionPolicy: 'Never' }, want)).toBe(true);
  });
});
