import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { parse, stringify } from 'yaml';
import { ErrorCode, SpillwayError } from '@spillway/common';

/**
 * spillctl's settings file, ~/.spillway/config (or --config / SPILLWAY_CONFIG), YAML,
 * mode 0600 because it holds a token. `spillctl broker init` writes it:
 *
 *   server: http://127.0.0.1:8080      # the broker's REST API
 *   token: at-…                        # bearer token (admin or viewer)
 *   broker: 127.0.0.1:7443             # the broker's gRPC address, for `join`
 *   caFile: /…/pki/ca.crt              # the broker CA: put into clusters by `join`,
 *                                      # trusted for an https:// server
 *   clientCertificate: /…/admin.crt    # optional admin client certificate (https only)
 *   clientKey: /…/admin.key
 *
 * Flags win over environment variables (SPILLWAY_SERVER, SPILLWAY_TOKEN), which win over
 * the file, which wins over the defaults.
 */
export interface SettingsFile {
  server?: string;
  token?: string;
  broker?: string;
  caFile?: string;
  clientCertificate?: string;
  clientKey?: string;
}

const KEYS: readonly (keyof SettingsFile)[] = [
  'server',
  'token',
  'broker',
  'caFile',
  'clientCertificate',
  'clientKey',
];

export const DEFAULT_SERVER = 'http://127.0.0.1:8080';

export function defaultConfigPath(env: Readonly<Record<string, string | undefined>>): string {
  return env.SPILLWAY_CONFIG ?? join(env.HOME ?? homedir(), '.spillway', 'config');
}

/** Reads the settings file; a missing file is an empty one, a broken one an error. */
export function readSettings(path: string): SettingsFile {
  if (!existsSync(path)) return {};
  let doc: unknown;
  try {
    doc = parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new SpillwayError(
      ErrorCode.INVALID_CONFIG,
      `${path} is not valid YAML: ${(err as Error).message.split('\n')[0]}`,
      { field: '--config', cause: err },
    );
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new SpillwayError(ErrorCode.INVALID_CONFIG, `${path}: expected a mapping of settings`, {
      field: '--config',
    });
  }
  const out: SettingsFile = {};
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
    if (!(KEYS as readonly string[]).includes(k)) {
      throw new SpillwayError(
        ErrorCode.INVALID_CONFIG,
        `${path}: unknown setting "${k}" (known: ${KEYS.join(', ')})`,
        { field: '--config' },
      );
    }
    if (typeof v !== 'string') {
      throw new SpillwayError(ErrorCode.INVALID_CONFIG, `${path}: "${k}" must be a string`, {
        field: '--config',
      });
    }
    out[k as keyof SettingsFile] = v;
  }
  return out;
}

/** Merges `update` into the file (keeping other keys) and leaves it 0600. */
export function writeSettings(path: string, update: SettingsFile): SettingsFile {
  const merged: SettingsFile = { ...readSettings(path), ...update };
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const body =
    '# spillctl settings (see `spillctl --help`); holds a token: keep it private\n' +
    stringify(merged);
  writeFileSync(path, body, { mode: 0o600 });
  chmodSync(path, 0o600);
  return merged;
}
