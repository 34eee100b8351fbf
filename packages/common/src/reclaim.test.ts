import { describe, expect, it } from 'vitest';
import { guestGracePeriod, guestPriority, preemptedByScheduler, preemptorOf } from './reclaim.js';

describe('guestPriority', () => {
  it.each([
    ['preempt', undefined, -1000],
    ['never', undefined, 0],
    ['preempt', 500, 500],
    ['never', 2000, 2000],
  ] as const)('reclaim %s, chosen %s → %d', (mode, chosen, want) => {
    expect(guestPriority(mode, chosen)).toBe(want);
  });

  it('refuses a negative priority under never, saying why', () => {
    expect(() => guestPriority('never', -1)).toThrow(
      /--guest-priority -1 is below 0 with --reclaim never/,
    );
  });
});

describe('guestGracePeriod', () => {
  it.each([
    [undefined, 30, 30],
    [undefined, 5, 5],
    [60, 5, 5],
    [2, 5, 2],
    [0, 5, 0],
  ])('asked %s, cap %d → %d', (asked, cap, want) => {
    expect(guestGracePeriod(asked, cap)).toBe(want);
  });
});

describe('preemptedByScheduler', () => {
  const cond = (reason: string, status = 'True') => ({
    conditions: [{ type: 'DisruptionTarget', status, reason }],
  });
  it('is the scheduler preempting, nothing else', () => {
    expect(preemptedByScheduler(cond('PreemptionByScheduler'))).toBe(true);
    expect(preemptedByScheduler(cond('PreemptionByScheduler', 'False'))).toBe(false);
    expect(preemptedByScheduler(cond('EvictionByEvictionAPI'))).toBe(false);
    expect(preemptedByScheduler(cond('DeletionByTaintManager'))).toBe(false);
    expect(preemptedByScheduler({ conditions: [] })).toBe(false);
    expect(preemptedByScheduler(undefined)).toBe(false);
  });
});

describe('preemptorOf', () => {
  const base = {
    metadata: {},
    involvedObject: { kind: 'Pod', namespace: 'spillway-origin', name: 'ml-train-1' },
    reason: 'Preempted',
    message: 'Preempted by pod 5f0c-uid on node gpu-0',
  };
  it('names the related pod', () => {
    expect(
      preemptorOf({ ...base, related: { kind: 'Pod', namespace: 'serving', name: 'llm-0' } }),
    ).toBe('serving/llm-0');
  });
  it('is undefined without a related pod, or for other events', () => {
    expect(preemptorOf(base)).toBeUndefined();
    expect(preemptorOf({ ...base, related: { kind: 'Node', name: 'gpu-0' } })).toBeUndefined();
    expect(
      preemptorOf({ ...base, reason: 'Killing', related: { kind: 'Pod', name: 'x' } }),
    ).toBeUndefined();
  });
});
