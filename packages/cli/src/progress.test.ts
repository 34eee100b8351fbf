import { afterEach, describe, expect, it, vi } from 'vitest';
import { createProgress } from './progress.js';

function stream(isTTY: boolean): {
  write: (s: string) => boolean;
  isTTY: boolean;
  text: () => string;
} {
  let text = '';
  return { write: (s) => ((text += s), true), isTTY, text: () => text };
}

afterEach(() => vi.useRealTimers());

describe('progress', () => {
  it('prints each step once as a plain line when not on a terminal', () => {
    const s = stream(false);
    const p = createProgress(s);
    p.update('waiting for the agent');
    p.update('waiting for the agent');
    p.update('waiting for the shim');
    p.done('connected');
    p.stop();
    expect(s.text()).toBe('waiting for the agent\nwaiting for the shim\nconnected\n');
  });

  it('redraws one spinner line on a terminal and ends it with a mark', () => {
    vi.useFakeTimers();
    const s = stream(true);
    const p = createProgress(s);
    p.update('draining');
    vi.advanceTimersByTime(250);
    p.fail('drain timed out');
    const text = s.text();
    const clear = '\r\u001b[2K';
    expect(
      text.split(clear).filter((f) => /^. draining \(\d+s\)$/.test(f)).length,
    ).toBeGreaterThanOrEqual(3);
    expect(text.endsWith('\r\x1b[2K\u2717 drain timed out\n')).toBe(true);
    vi.advanceTimersByTime(1000);
    expect(s.text()).toBe(text);
  });

  it('prints nothing when quiet', () => {
    const s = stream(true);
    const p = createProgress(s, true);
    p.update('x');
    p.done('y');
    expect(s.text()).toBe('');
  });
});
