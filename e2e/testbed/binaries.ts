import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestbedError } from './errors.js';

/** The binaries the test bed runs, all built by build-binaries.sh. */
export const BINARIES = [
  'etcd',
  'kube-apiserver',
  'kube-controller-manager',
  'kube-scheduler',
  'kubectl',
  'kwok',
  'kwokctl',
] as const;
export type BinaryName = (typeof BINARIES)[number];

/** Absolute paths of the test bed binaries. */
export type Binaries = Record<BinaryName, string> & { dir: string };

/** Environment variable that points the harness at an already-built bin directory. */
export const BIN_DIR_ENV = 'SPILLWAY_TESTBED_BIN';

// Works from the .ts sources (vitest) and from dist/ (compiled), which both sit under e2e/.
const here = dirname(fileURLToPath(import.meta.url));
export const BUILD_SCRIPT = join(
  basename(dirname(here)) === 'dist' ? join(here, '..', '..', 'testbed') : here,
  'build-binaries.sh',
);

function runScript(args: string[], stdio: 'pipe' | 'inherit-stderr'): string {
  const result = spawnSync('bash', [BUILD_SCRIPT, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', stdio === 'pipe' ? 'pipe' : 'inherit'],
  });
  if (result.error) {
    throw new TestbedError(
      'TESTBED_BUILD_FAILED',
      `cannot run ${BUILD_SCRIPT}: ${result.error.message}`,
    );
  }
  if (result.status !== 0) {
    const lines = `${result.stderr ?? ''}`.trim().split('\n');
    const reason = lines.reverse().find((l) => l.startsWith('testbed: ')) ?? lines[0] ?? '';
    const missingGo = reason.includes('Go 1.22+ is required');
    throw new TestbedError(
      missingGo ? 'TESTBED_GO_MISSING' : 'TESTBED_BUILD_FAILED',
      missingGo || reason
        ? reason.replace(/^testbed: /, 'test bed: ')
        : `test bed: ${BUILD_SCRIPT} failed with exit code ${result.status}`,
    );
  }
  const dir = result.stdout.trim().split('\n').pop() ?? '';
  if (!dir)
    throw new TestbedError('TESTBED_BUILD_FAILED', `${BUILD_SCRIPT} printed no bin directory`);
  return dir;
}

/**
 * Builds the binaries if the cache lacks them (seconds when cached, many
 * minutes cold), with the build's progress on stderr; returns the bin directory.
 */
export function buildBinaries(): string {
  return runScript([], 'inherit-stderr');
}

/**
 * Finds the binaries without building them: from `dir`, $SPILLWAY_TESTBED_BIN,
 * or the cache directory build-binaries.sh uses. Throws one clear line if any is missing.
 */
export function findBinaries(dir?: string): Binaries {
  const binDir = dir ?? process.env[BIN_DIR_ENV] ?? runScript(['--print-dir'], 'pipe');
  const paths = { dir: binDir } as Binaries;
  const missing: string[] = [];
  for (const name of BINARIES) {
    const path = join(binDir, name);
    try {
      accessSync(path, constants.X_OK);
    } catch {
      missing.push(name);
    }
    paths[name] = path;
  }
  if (missing.length > 0) {
    throw new TestbedError(
      'TESTBED_BINARIES_MISSING',
      `test bed binaries missing in ${binDir} (${missing.join(', ')}): run \`bash e2e/testbed/build-binaries.sh\` (needs Go 1.22+)`,
    );
  }
  return paths;
}
