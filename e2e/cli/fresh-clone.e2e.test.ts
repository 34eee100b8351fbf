// A new user's first minutes: clone the repository, `npm ci`, build, and type the
// `npx spillctl ...` commands that docs/getting-started.md lists and the demo prints. npm
// links a workspace's bin only if its file exists at install time, so a bin inside dist/
// (absent on a fresh clone) left `npx spillctl` asking the registry for a package of that
// name. This runs on a clone of the committed HEAD, with the npm cache only (--offline).
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts } from '../testbed/ports.js';
import { ROOT, startBrokerProcess, type BrokerProcess, type RunResult } from './harness.js';

const INSTALL_TIMEOUT_MS = 300_000;

let dir: string;
let clone: string;
let env: Record<string, string | undefined>;
let broker: BrokerProcess | undefined;

/** The user's shell: no npm script variables, no .bin of the repository under test. */
function userEnv(): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('SPILLWAY_') || k === 'KUBECONFIG' || /^npm_/i.test(k)) continue;
    out[k] = v;
  }
  out.PATH = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((p) => !p.includes('node_modules'))
    .join(delimiter);
  out.SPILLWAY_CONFIG = join(dir, 'spillway-config');
  out.SPILLWAY_STATE_DIR = join(dir, 'state');
  return out;
}

/** Runs a command in the clone the way a shell would; never throws on a non-zero exit. */
function sh(cmd: string, args: readonly string[], timeoutMs = 60_000): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd: clone, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}

async function ok(cmd: string, args: readonly string[], timeoutMs?: number): Promise<RunResult> {
  const r = await sh(cmd, args, timeoutMs);
  expect(r.code, `${cmd} ${args.join(' ')}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0);
  return r;
}

/** Every `npx spillctl ...` the docs list and the demo prints, as argument lists. */
function printedCommands(): { where: string; args: string[] }[] {
  const found: { where: string; args: string[] }[] = [];
  const add = (where: string, line: string): void => {
    for (const part of line.split('&&')) {
      const m = /npx spillctl\s+([^#`\\]*)/.exec(part);
      if (m?.[1]?.trim()) found.push({ where, args: m[1].trim().split(/\s+/) });
    }
  };
  for (const line of readFileSync(join(ROOT, 'docs/getting-started.md'), 'utf8').split('\n')) {
    if (line.startsWith('npx spillctl ')) add('docs/getting-started.md', line);
  }
  for (const m of readFileSync(join(ROOT, 'e2e/demo/demo.ts'), 'utf8').matchAll(
    /npx spillctl [^`\\\n]+/g,
  )) {
    add('the demo', m[0]);
  }
  return found;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'spillway-fresh-clone-'));
  clone = join(dir, 'spillway');
  env = userEnv();
  const cloned = spawnSync('git', ['clone', '--quiet', ROOT, clone], { encoding: 'utf8' });
  expect(cloned.status, `git clone ${ROOT}: ${cloned.stderr}`).toBe(0);
  // npm ci from the cache alone: the lockfile is the one the repository was installed with.
  await ok('npm', ['ci', '--offline', '--no-audit', '--no-fund'], INSTALL_TIMEOUT_MS);
}, INSTALL_TIMEOUT_MS + 30_000);

afterAll(async () => {
  await broker?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('a fresh clone after npm ci', () => {
  it('is the committed HEAD of this repository', () => {
    const head = (cwd: string): string =>
      spawnSync('git', ['rev-parse', 'HEAD'], { cwd, encoding: 'utf8' }).stdout.trim();
    expect(head(clone)).toBe(head(ROOT));
  });

  it('has a local spillctl before anything is built, which says to build first', async () => {
    const r = await sh('npx', ['spillctl', '--help']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).not.toMatch(/E404|registry/i);
    expect(r.stderr.trim()).toMatch(
      /^spillctl: .*packages\/cli\/dist\/main\.js is missing: .*run `npm run build`/,
    );
  });

  it(
    'runs the npx spillctl commands of the docs and the demo after npm run build',
    async () => {
      await ok('npm', ['run', 'build'], INSTALL_TIMEOUT_MS);

      const help = await ok('npx', ['spillctl', '--help']);
      expect(help.stdout).toMatch(/^Usage: spillctl /);

      // The demo's broker, set up as the docs say: `spillctl broker init` writes the
      // settings file that SPILLWAY_CONFIG points the printed commands at.
      const [grpc, http] = await freePorts(2);
      const restUrl = `http://127.0.0.1:${http}`;
      await ok('npx', [
        'spillctl',
        'broker',
        'init',
        '--dir',
        join(dir, 'pki'),
        '--server',
        restUrl,
        '--broker',
        `127.0.0.1:${grpc}`,
      ]);
      broker = await startBrokerProcess({
        pkiDir: join(dir, 'pki'),
        dataDir: join(dir, 'broker'),
        logFile: join(dir, 'broker.log'),
        ports: { grpc: grpc!, http: http! },
      });
      const offloads = await ok('npx', ['spillctl', 'get', 'offloads', '-o', 'wide']);
      expect(offloads.stdout).toBe('No offloads.\n');
      const clusters = await ok('npx', ['spillctl', 'get', 'clusters', '-o', 'wide']);
      expect(clusters.stdout).toBe('No clusters have joined.\n');

      // The rest need the demo's clusters (e2e/cli runs each of them against joined
      // clusters); here each must name a real command with flags it takes.
      const printed = printedCommands();
      expect(printed.length).toBeGreaterThanOrEqual(8);
      const runs = await Promise.all(
        printed.map(({ args }) => sh('npx', ['spillctl', ...args, '--help'])),
      );
      printed.forEach(({ where, args }, i) => {
        const r = runs[i]!;
        const what = `${where}: npx spillctl ${args.join(' ')}\n${r.stderr}`;
        expect(r.code, what).toBe(0);
        expect(r.stdout, what).toMatch(new RegExp(`^Usage: spillctl ${args[0]} `));
      });
    },
    INSTALL_TIMEOUT_MS + 180_000,
  );
});
