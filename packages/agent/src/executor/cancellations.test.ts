import { describe, expect, it } from 'vitest';
import { Cancellations } from './cancellations.js';

describe('Cancellations', () => {
  it('aborts one request by id, with the reason, once', () => {
    const c = new Cancellations();
    const a = c.begin('r1');
    const b = c.begin('r2');
    expect(c.cancel('r1', 'cancelled by the broker')).toBe(true);
    expect(a.aborted).toBe(true);
    expect((a.reason as Error).message).toBe('cancelled by the broker');
    expect(b.aborted).toBe(false);
    expect(c.cancel('r1', 'again')).toBe(false);
    expect(c.cancel('unknown', 'x')).toBe(false);
    expect(c.size).toBe(1);
  });

  it('ends every open request when the stream that asked for them ends', () => {
    const c = new Cancellations();
    const signals = ['a', 'b', 'c'].map((id) => c.begin(id));
    c.done('b', signals[1]!);
    expect(c.endAll('stream ended')).toBe(2);
    expect(signals.map((s) => s.aborted)).toEqual([true, false, true]);
    expect(c.size).toBe(0);
  });

  it('a resend of the same id stops the first; the first one’s done() leaves the second', () => {
    const c = new Cancellations();
    const first = c.begin('r');
    const second = c.begin('r');
    expect(first.aborted).toBe(true);
    c.done('r', first);
    expect(c.size).toBe(1);
    expect(c.cancel('r', 'x')).toBe(true);
    expect(second.aborted).toBe(true);
  });
});
