import { ErrorCode, SpillwayError, formatDuration, sleep } from '@spillway/common';

export interface WaitOptions {
  timeoutMs: number;
  intervalMs?: number;
  signal?: AbortSignal | undefined;
  /** For the timeout message: "the agent of gpu-east to connect". */
  what: string;
  /** Extra words for the timeout message, computed at the time (e.g. what is still running). */
  detail?: () => string;
}

/**
 * Calls `check` until it returns something other than undefined. Errors from `check`
 * that are not transient (anything but UNAVAILABLE/NOT_FOUND) end the wait at once.
 */
export async function waitFor<T>(
  check: () => Promise<T | undefined>,
  opts: WaitOptions,
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
      last = undefined;
    } catch (err) {
      const transient =
        err instanceof SpillwayError &&
        (err.code === ErrorCode.UNAVAILABLE || err.code === ErrorCode.NOT_FOUND);
      if (!transient) throw err;
      last = err;
    }
    if (Date.now() >= deadline) {
      const extra = opts.detail?.() ?? (last instanceof Error ? last.message : '');
      throw new SpillwayError(
        ErrorCode.TIMEOUT,
        `timed out after ${formatDuration(opts.timeoutMs)} waiting for ${opts.what}${extra ? `: ${extra}` : ''}`,
      );
    }
    await sleep(Math.min(opts.intervalMs ?? 500, Math.max(0, deadline - Date.now())), opts.signal);
  }
}
