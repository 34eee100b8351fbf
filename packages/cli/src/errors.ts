import { ErrorCode, SpillwayError, isSpillwayError } from '@spillway/common';

/**
 * Exit codes scripts can rely on. They never change meaning:
 *   0  the command did what was asked
 *   1  the operation failed (broker refused, cluster unreachable, timed out, not found)
 *   2  the command line was wrong (unknown command or flag, bad value); nothing was done
 *   130 interrupted (Ctrl-C)
 */
export const EXIT = { OK: 0, FAILED: 1, USAGE: 2, INTERRUPTED: 130 } as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export const EXIT_CODES_HELP = `Exit codes:
  0    success
  1    the operation failed (the broker refused it, a cluster was unreachable, a wait timed out)
  2    usage error: unknown command or flag, or a bad value; nothing was changed
  130  interrupted (Ctrl-C)`;

/** A bad command line: reported as one line, exit code 2. */
export class UsageError extends SpillwayError {
  constructor(message: string, field?: string) {
    super(ErrorCode.INVALID_ARGUMENT, message, field === undefined ? {} : { field });
    this.name = 'UsageError';
  }
}

export function isUsageError(err: unknown): err is UsageError {
  return err instanceof UsageError;
}

/** The exit code an error maps to. */
export function exitCodeOf(err: unknown): ExitCode {
  if (isUsageError(err)) return EXIT.USAGE;
  // A kubeconfig, context or settings file that cannot be used is the invocation's fault.
  if (
    isSpillwayError(err, ErrorCode.INVALID_CONFIG) &&
    ['--kubeconfig', '--context', '--config'].includes(err.field ?? '')
  ) {
    return EXIT.USAGE;
  }
  if (isSpillwayError(err, ErrorCode.CANCELLED)) return EXIT.INTERRUPTED;
  return EXIT.FAILED;
}

/** One line for stderr: what went wrong, never a stack trace. */
export function errorLine(err: unknown): string {
  if (err instanceof SpillwayError) {
    const msg = err.message.replace(/\s*\n\s*/g, '; ');
    // The code helps scripts and searches; for plain argument errors it is noise.
    const quiet: string[] = [ErrorCode.INTERNAL, ErrorCode.INVALID_ARGUMENT];
    return quiet.includes(err.code) ? msg : `${msg} (${err.code})`;
  }
  const e = err as { message?: unknown };
  return typeof e?.message === 'string' && e.message !== ''
    ? e.message.replace(/\s*\n\s*/g, '; ')
    : String(err);
}
