import { parseArgs } from 'node:util';
import { parseDuration } from './duration.js';
import { ErrorCode, SpillwayError } from './errors.js';

/**
 * Typed configuration: named defaults, overridden by environment variables, overridden by
 * command-line flags; validated once at start-up into one object that is passed down.
 */

interface Common {
  description: string;
  /** Environment variable; defaults to SPILLWAY_<UPPER_SNAKE_NAME>. `false` disables it. */
  env?: string | false;
  /** Long flag without dashes; defaults to the kebab-case name. */
  flag?: string;
  /** A value is needed and there is no default. */
  required?: boolean;
  /** Redact in logs and --help (tokens, passwords). */
  secret?: boolean;
}

export type FieldSpec =
  | (Common & { type: 'string'; default?: string; choices?: readonly string[]; pattern?: RegExp })
  | (Common & { type: 'int'; default?: number; min?: number; max?: number })
  | (Common & { type: 'number'; default?: number; min?: number; max?: number })
  | (Common & { type: 'bool'; default?: boolean })
  | (Common & { type: 'duration'; default?: string; minMs?: number; maxMs?: number })
  | (Common & { type: 'list'; default?: readonly string[] });

export type Schema = Record<string, FieldSpec>;

type ValueOf<F extends FieldSpec> = F extends { type: 'string' }
  ? F extends { choices: readonly (infer C)[] }
    ? C
    : string
  : F extends { type: 'int' | 'number' | 'duration' }
    ? number
    : F extends { type: 'bool' }
      ? boolean
      : F extends { type: 'list' }
        ? string[]
        : never;

type HasValue<F extends FieldSpec> = F extends { required: true }
  ? true
  : F extends { default: unknown }
    ? true
    : F extends { type: 'bool' | 'list' }
      ? true
      : false;

/** The typed object a schema produces; fields without default or `required` are optional. */
export type ConfigOf<S extends Schema> = {
  [K in keyof S as HasValue<S[K]> extends true ? K : never]: ValueOf<S[K]>;
} & {
  [K in keyof S as HasValue<S[K]> extends true ? never : K]?: ValueOf<S[K]>;
};

export interface LoadOptions {
  argv?: readonly string[];
  env?: Readonly<Record<string, string | undefined>>;
  /** Prefix of derived environment variable names. */
  envPrefix?: string;
}

export interface LoadResult<S extends Schema> {
  config: ConfigOf<S>;
  /** Non-flag arguments. */
  positionals: string[];
  help: boolean;
}

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
}

function envName(name: string, spec: FieldSpec, prefix: string): string | undefined {
  if (spec.env === false) return undefined;
  return spec.env ?? `${prefix}${snake(name)}`;
}

function flagName(name: string, spec: FieldSpec): string {
  return spec.flag ?? kebab(name);
}

function convert(name: string, spec: FieldSpec, raw: string | boolean, source: string): unknown {
  const where = `${source}`;
  switch (spec.type) {
    case 'string': {
      const v = String(raw);
      if (spec.choices && !spec.choices.includes(v)) {
        throw new Error(`${where}: "${v}" is not one of ${spec.choices.join(', ')}`);
      }
      if (spec.pattern && !spec.pattern.test(v)) {
        throw new Error(`${where}: "${v}" does not match ${String(spec.pattern)}`);
      }
      return v;
    }
    case 'int':
    case 'number': {
      const s = String(raw).trim();
      const n = Number(s);
      if (s === '' || !Number.isFinite(n) || (spec.type === 'int' && !Number.isInteger(n))) {
        throw new Error(
          `${where}: "${s}" is not ${spec.type === 'int' ? 'an integer' : 'a number'}`,
        );
      }
      if (spec.min !== undefined && n < spec.min)
        throw new Error(`${where}: ${n} is below the minimum ${spec.min}`);
      if (spec.max !== undefined && n > spec.max)
        throw new Error(`${where}: ${n} is above the maximum ${spec.max}`);
      return n;
    }
    case 'bool': {
      if (typeof raw === 'boolean') return raw;
      const s = raw.trim().toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(s)) return true;
      if (['0', 'false', 'no', 'off', ''].includes(s)) return false;
      throw new Error(`${where}: "${raw}" is not a boolean (true/false)`);
    }
    case 'duration': {
      let ms: number;
      try {
        ms = parseDuration(String(raw), name);
      } catch {
        throw new Error(`${where}: "${String(raw)}" is not a duration; use e.g. 500ms, 15s, 1m30s`);
      }
      if (spec.minMs !== undefined && ms < spec.minMs)
        throw new Error(`${where}: ${String(raw)} is shorter than ${spec.minMs}ms`);
      if (spec.maxMs !== undefined && ms > spec.maxMs)
        throw new Error(`${where}: ${String(raw)} is longer than ${spec.maxMs}ms`);
      return ms;
    }
    case 'list':
      return String(raw)
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
  }
}

/**
 * Builds the config object. Throws one INVALID_CONFIG error listing every problem, each
 * naming the flag or variable that was wrong.
 */
export function loadConfig<S extends Schema>(schema: S, opts: LoadOptions = {}): LoadResult<S> {
  const prefix = opts.envPrefix ?? 'SPILLWAY_';
  const env = opts.env ?? {};
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = {
    help: { type: 'boolean' },
  };
  for (const [name, spec] of Object.entries(schema)) {
    options[flagName(name, spec)] = spec.type === 'bool' ? { type: 'boolean' } : { type: 'string' };
    if (spec.type === 'bool') options[`no-${flagName(name, spec)}`] = { type: 'boolean' };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: [...(opts.argv ?? [])],
      options,
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new SpillwayError(ErrorCode.INVALID_CONFIG, (err as Error).message, { cause: err });
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  let firstField: string | undefined;
  for (const [name, spec] of Object.entries(schema)) {
    const flag = flagName(name, spec);
    const envKey = envName(name, spec, prefix);
    let raw: string | boolean | undefined;
    let source = '';
    if (values[flag] !== undefined) {
      raw = values[flag];
      source = `--${flag}`;
    } else if (spec.type === 'bool' && values[`no-${flag}`] === true) {
      raw = false;
      source = `--no-${flag}`;
    } else if (envKey && env[envKey] !== undefined) {
      raw = env[envKey];
      source = envKey;
    }
    try {
      if (raw !== undefined) {
        out[name] = convert(name, spec, raw, source);
      } else if (spec.default !== undefined) {
        out[name] =
          spec.type === 'duration'
            ? parseDuration(spec.default, name)
            : spec.type === 'list'
              ? [...spec.default]
              : spec.default;
      } else if (spec.type === 'bool') {
        out[name] = false;
      } else if (spec.type === 'list') {
        out[name] = [];
      } else if (spec.required && values.help !== true) {
        throw new Error(
          `--${flag}${envKey ? ` (or ${envKey})` : ''} is required: ${spec.description}`,
        );
      }
    } catch (err) {
      firstField ??= `--${flag}`;
      problems.push((err as Error).message);
    }
  }
  if (problems.length > 0) {
    throw new SpillwayError(
      ErrorCode.INVALID_CONFIG,
      `invalid configuration: ${problems.join('; ')}`,
      {
        ...(firstField === undefined ? {} : { field: firstField }),
      },
    );
  }
  return {
    config: out as ConfigOf<S>,
    positionals: parsed.positionals,
    help: values.help === true,
  };
}

/** `--help` text: every flag with its variable, default and description. */
export function configHelp(schema: Schema, envPrefix = 'SPILLWAY_'): string {
  const rows = Object.entries(schema).map(([name, spec]) => {
    const envKey = envName(name, spec, envPrefix);
    const def =
      spec.secret || spec.default === undefined
        ? ''
        : ` (default ${Array.isArray(spec.default) ? spec.default.join(',') : String(spec.default)})`;
    const left = `  --${flagName(name, spec)}${spec.type === 'bool' ? '' : ` <${spec.type}>`}`;
    return `${left.padEnd(36)} ${spec.description}${def}${envKey ? ` [${envKey}]` : ''}`;
  });
  return rows.join('\n');
}

/** For logging a config: secrets are replaced. */
export function redactConfig(
  schema: Schema,
  config: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(config))
    out[k] = schema[k]?.secret && v !== undefined ? '[redacted]' : v;
  return out;
}
