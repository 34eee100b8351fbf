import { pino, type Logger, type LoggerOptions, type DestinationStream } from 'pino';

export type { Logger } from 'pino';

export interface LoggingOptions {
  level?: string;
  /** Human-readable output (pino-pretty) instead of JSON. */
  pretty?: boolean;
  /** Base bindings, e.g. { component: 'broker' }. */
  bindings?: Record<string, unknown>;
  destination?: DestinationStream;
}

/** Paths never written to a log: tokens, keys, certificates' private halves, auth headers. */
export const REDACT_PATHS = [
  'token',
  '*.token',
  'password',
  '*.password',
  'privateKeyPem',
  '*.privateKeyPem',
  'keyPem',
  '*.keyPem',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'headers.authorization',
  '*.secret',
];

export function createLogger(opts: LoggingOptions = {}): Logger {
  const options: LoggerOptions = {
    level: opts.level ?? 'info',
    base: { ...(opts.bindings ?? {}) },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  if (opts.destination) return pino(options, opts.destination);
  if (opts.pretty) {
    return pino({
      ...options,
      transport: {
        target: 'pino-pretty',
        options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' },
      },
    });
  }
  return pino(options);
}

/** A child logger tagged with where it runs; pass it down explicitly. */
export function componentLogger(
  parent: Logger,
  component: string,
  extra: Record<string, unknown> = {},
): Logger {
  return parent.child({ component, ...extra });
}

/** A logger that writes nothing, for tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
