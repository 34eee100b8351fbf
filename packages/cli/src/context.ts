import { readFileSync } from 'node:fs';
import { ErrorCode, SpillwayError } from '@spillway/common';
import { UsageError } from './errors.js';
import { createProgress, type Progress, type ProgressStream } from './progress.js';
import { BrokerRest } from './rest.js';
import { DEFAULT_SERVER, defaultConfigPath, readSettings, type SettingsFile } from './settings.js';
import { defaultStateDir } from './local.js';

/** Where spillctl writes and what it reads from its environment; tests pass their own. */
export interface CliIO {
  stdout: ProgressStream;
  stderr: ProgressStream;
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  /** Resolves when the user asks to stop (Ctrl-C); long waits race against it. */
  interrupted?: AbortSignal;
}

/** Flags every command accepts (declared on the root command). */
export interface GlobalOptions {
  server?: string;
  token?: string;
  config?: string;
  kubeconfig?: string;
  context?: string;
  requestTimeout: number;
  stateDir?: string;
  quiet?: boolean;
}

/** What a command runs with: resolved settings, a REST client, output helpers. */
export class Context {
  readonly settings: SettingsFile;
  readonly configPath: string;
  private restClient: BrokerRest | undefined;

  constructor(
    readonly io: CliIO,
    readonly globals: GlobalOptions,
  ) {
    this.configPath = globals.config ?? defaultConfigPath(io.env);
    this.settings = readSettings(this.configPath);
  }

  get server(): string {
    return (
      this.globals.server ??
      this.io.env.SPILLWAY_SERVER ??
      this.settings.server ??
      DEFAULT_SERVER
    ).replace(/\/+$/, '');
  }

  get token(): string | undefined {
    return this.globals.token ?? this.io.env.SPILLWAY_TOKEN ?? this.settings.token;
  }

  get stateDir(): string {
    return this.globals.stateDir ?? defaultStateDir(this.io.env);
  }

  get rest(): BrokerRest {
    if (!this.restClient) {
      const read = (path: string | undefined, what: string): string | undefined => {
        if (!path) return undefined;
        try {
          return readFileSync(path, 'utf8');
        } catch (err) {
          throw new SpillwayError(
            ErrorCode.INVALID_CONFIG,
            `cannot read ${what} ${path} (from ${this.configPath}): ${(err as Error).message}`,
            { cause: err },
          );
        }
      };
      const https = this.server.startsWith('https:');
      this.restClient = new BrokerRest({
        server: this.server,
        token: this.token,
        timeoutMs: this.globals.requestTimeout,
        ...(https
          ? {
              caPem: read(this.settings.caFile, 'CA file'),
              certPem: read(this.settings.clientCertificate, 'client certificate'),
              keyPem: read(this.settings.clientKey, 'client key'),
            }
          : {}),
      });
    }
    return this.restClient;
  }

  /** The broker CA (PEM) for `join`: --ca-file, else the settings file. */
  caPem(flag: string | undefined): { pem: string; path: string } {
    const path = flag ?? this.settings.caFile;
    if (!path) {
      throw new UsageError(
        `the broker CA is needed: pass --ca-file (spillctl broker init records it in ${this.configPath})`,
        '--ca-file',
      );
    }
    try {
      return { pem: readFileSync(path, 'utf8'), path };
    } catch (err) {
      throw new UsageError(
        `--ca-file: cannot read ${path}: ${(err as Error).message}`,
        '--ca-file',
      );
    }
  }

  out(text: string): void {
    this.io.stdout.write(text);
  }

  warn(text: string): void {
    this.io.stderr.write(`warning: ${text}\n`);
  }

  progress(): Progress {
    return createProgress(this.io.stderr, this.globals.quiet === true);
  }
}
