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

/** The logger a component logger was made from; children are made from it (see below). */
const ROOT = Symbol('spillway.rootLogger');
type Rooted = Logger & { [ROOT]?: Logger };

export function createLogger(opts: LoggingOptions = {}): Logger {
  const { component, ...base } = opts.bindings ?? {};
  const root = createRoot(opts, base);
  return typeof component === 'string' ? componentLogger(root, component) : root;
}

function createRoot(opts: LoggingOptions, base: Record<string, unknown>): Logger {
  const options: LoggerOptions = {
    level: opts.level ?? 'info',
    base: { ...base },
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
  // pino writes a child's bindings after its parent's, keys and all: a second `component`
  // would appear twice on every JSON line. So the child is made from the root, carrying the
  // parent's other bindings, and its component replaces the parent's.
  const root = (parent as Rooted)[ROOT] ?? parent;
  const own = root.bindings();
  const bindings = Object.fromEntries(
    Object.entries({ ...parent.bindings(), component, ...extra }).filter(
      ([k, v]) => !(k in own && own[k] === v),
    ),
  );
  const child = root.child(bindings) as Rooted;
  child.level = parent.level;
  child[ROOT] = root;
  return child;
}

/** A logger that writes nothing, for tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
