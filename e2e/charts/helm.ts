// Helm for the chart tests: the binary e2e/testbed/build-helm.sh builds from its Go module
// (seconds when cached), and small helpers to render the charts and apply what they render.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
// From the sources (vitest) and from dist/ alike: both sit under e2e/.
const e2eDir = here.includes(`${join('e2e', 'dist')}`) ? join(here, '..', '..') : join(here, '..');
export const REPO_ROOT = join(e2eDir, '..');
export const CHARTS_DIR = join(REPO_ROOT, 'charts');
export const BUILD_HELM_SCRIPT = join(e2eDir, 'testbed', 'build-helm.sh');
/** Points the tests at an already-built helm binary. */
export const HELM_BIN_ENV = 'SPILLWAY_HELM_BIN';

export class HelmMissingError extends Error {}

/**
 * The helm binary: $SPILLWAY_HELM_BIN, or built (once, cached) by build-helm.sh. Throws one
 * line saying what to do when it cannot be had; the chart tests never skip.
 */
export function findHelm(): string {
  const fromEnv = process.env[HELM_BIN_ENV];
  let path: string;
  if (fromEnv) {
    path = fromEnv;
  } else {
    const r = spawnSync('bash', [BUILD_HELM_SCRIPT], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const dir = r.stdout?.trim().split('\n').pop() ?? '';
    if (r.status !== 0 || !dir) {
      throw new HelmMissingError(
        `helm is missing and \`bash e2e/testbed/build-helm.sh\` failed (exit ${r.status ?? r.error?.message}); it needs Go 1.24+ and the Go module proxy`,
      );
    }
    path = join(dir, 'helm');
  }
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new HelmMissingError(
      `helm not found at ${path}: run \`bash e2e/testbed/build-helm.sh\` or set ${HELM_BIN_ENV}`,
    );
  }
  return path;
}

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

export function run(bin: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): RunResult {
  const r = spawnSync(bin, args, {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, ...env },
  });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const scratch = mkdtempSync(join(tmpdir(), 'spillway-charts-'));
let files = 0;

/** Writes `content` to a new scratch file and returns its path. */
export function scratchFile(name: string, content: string): string {
  const path = join(scratch, `${files++}-${name}`);
  writeFileSync(path, content);
  return path;
}

export class Helm {
  constructor(readonly bin: string) {}

  run(args: readonly string[]): RunResult {
    // No user config, cache or plugins leak into the tests.
    return run(this.bin, args, {
      HELM_CONFIG_HOME: join(scratch, 'helm-config'),
      HELM_CACHE_HOME: join(scratch, 'helm-cache'),
      HELM_DATA_HOME: join(scratch, 'helm-data'),
    });
  }

  /** `helm template` with `values` (JSON is YAML); the result, failed or not. */
  template(chart: string, values: object, namespace = 'spillway-system'): RunResult {
    const file = scratchFile(`${chart}-values.json`, JSON.stringify(values));
    return this.run([
      'template',
      chart,
      join(CHARTS_DIR, chart),
      '--namespace',
      namespace,
      '--values',
      file,
    ]);
  }

  /** Renders or throws with helm's own message. */
  render(chart: string, values: object, namespace?: string): string {
    const r = this.template(chart, values, namespace);
    if (r.status !== 0) throw new Error(`helm template ${chart} failed: ${r.stderr.trim()}`);
    return r.stdout;
  }

  lint(chart: string, values: object): RunResult {
    const file = scratchFile(`${chart}-lint.json`, JSON.stringify(values));
    return this.run(['lint', '--strict', join(CHARTS_DIR, chart), '--values', file]);
  }
}

/** A Kubernetes object as kubectl prints it. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}
