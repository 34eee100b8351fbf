import { spawn, spawnSync } from 'node:child_process';
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

function lastReason(stderr: string): string | undefined {
  const lines = stderr.trim().split('\n');
  const last = lines[lines.length - 1];
  // build-binaries.sh reports what stopped it on its last line, "testbed: ...".
  return last?.startsWith('testbed: ') ? last.replace(/^testbed: /, 'test bed: ') : undefined;
}

function scriptError(status: number | null, stderr: string, shown: boolean): TestbedError {
  const reason = lastReason(stderr);
  const code = reason?.includes('Go 1.22+ is required')
    ? 'TESTBED_GO_MISSING'
    : 'TESTBED_BUILD_FAILED';
  const where = shown ? '; its output is above' : '';
  return new TestbedError(
    code,
    reason ?? `test bed: ${BUILD_SCRIPT} failed with exit code ${status ?? 'none'}${where}`,
    { reported: shown && reason !== undefined },
  );
}

function binDirFrom(stdout: string): string {
  const dir = stdout.trim().split('\n').pop() ?? '';
  if (!dir)
    throw new TestbedError('TESTBED_BUILD_FAILED', `${BUILD_SCRIPT} printed no bin directory`);
  return dir;
}

/**
 * Builds the binaries if the cache lacks them (milliseconds when cached, many
 * minutes cold), showing the build's progress on stderr; resolves with the bin
 * directory. A failure is a TestbedError whose message is the build's last word.
 */
export function buildBinaries(): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [BUILD_SCRIPT], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      process.stderr.write(d);
    });
    child.once('error', (err) =>
      reject(
        new TestbedError('TESTBED_BUILD_FAILED', `cannot run ${BUILD_SCRIPT}: ${err.message}`),
      ),
    );
    child.once('close', (status) => {
      if (status !== 0) reject(scriptError(status, stderr, true));
      else {
        try {
          resolve(binDirFrom(stdout));
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      }
    });
  });
}

function printDir(): string {
  const result = spawnSync('bash', [BUILD_SCRIPT, '--print-dir'], { encoding: 'utf8' });
  if (result.error) {
    throw new TestbedError(
      'TESTBED_BUILD_FAILED',
      `cannot run ${BUILD_SCRIPT}: ${result.error.message}`,
    );
  }
  if (result.status !== 0) throw scriptError(result.status, result.stderr, false);
  return binDirFrom(result.stdout);
}

/**
 * Finds the binaries without building them: from `dir`, $SPILLWAY_TESTBED_BIN,
 * or the cache directory build-binaries.sh uses. Throws one clear line if any is missing.
 */
export function findBinaries(dir?: string): Binaries {
  const binDir = dir ?? process.env[BIN_DIR_ENV] ?? printDir();
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
