import type { Logger } from 'pino';

export type Stopper = () => Promise<void> | void;

/**
 * Runs `stop` once on SIGTERM or SIGINT, then exits 0 (or 1 if stopping failed or took
 * longer than `timeoutMs`). Every daemon's main.ts ends with this.
 */
export function handleShutdownSignals(logger: Logger, stop: Stopper, timeoutMs = 25_000): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const timer = setTimeout(() => {
      logger.error({ timeoutMs }, 'shutdown took too long; exiting');
      process.exit(1);
    }, timeoutMs);
    timer.unref();
    Promise.resolve()
      .then(stop)
      .then(
        () => {
          logger.info('stopped');
          logger.flush?.();
          process.exit(0);
        },
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
}

/** For main.ts: print a start-up failure as one line (no stack) and exit non-zero. */
export function exitOnStartupError(err: unknown, name: string): never {
  const e = err as { code?: string; message?: string };
  const code = typeof e.code === 'string' ? `${e.code}: ` : '';
  process.stderr.write(`${name}: ${code}${e.message ?? String(err)}\n`);
  process.exit(2);
}
