import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The built daemon, run the way an operator runs it.
const PKG = fileURLToPath(new URL('..', import.meta.url));
const MAIN = join(PKG, 'dist', 'main.js');
const TSC = fileURLToPath(new URL('../../../node_modules/typescript/bin/tsc', import.meta.url));

let dir: string;
beforeAll(() => {
  execFileSync(process.execPath, [TSC, '-b', PKG], { stdio: 'inherit' });
  dir = mkdtempSync(join(tmpdir(), 'spillway-main-'));
}, 120_000);
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], {
    encoding: 'utf8',
    env: {},
    timeout: 20_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('spillway-broker main', () => {
  it('prints every flag with --help', () => {
    const r = run(['--help']);
    expect(r.status).toBe(0);
    for (const flag of [
      '--grpc-port',
      '--http-port',
      '--data-dir',
      '--store',
      '--admin-token',
      '--pki-dir',
    ]) {
      expect(r.stdout).toContain(flag);
    }
    expect(r.stdout).toContain('[SPILLWAY_GRPC_PORT]');
  });

  it.each([
    [['--bogus'], 'bogus'],
    [['--grpc-port', '99999'], '--grpc-port'],
    [['--store', 'etcd'], '--store'],
    [['stray'], 'stray'],
  ])('exits 2 with one line for %j', (args, needle) => {
    const r = run(args);
    expect(r.status).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^spillway-broker: /);
    expect(lines[0]).toContain(needle);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('serves, then shuts down cleanly on SIGTERM with exit code 0', async () => {
    const child = spawn(
      process.execPath,
      [
        MAIN,
        '--data-dir',
        join(dir, 'data'),
        '--grpc-host',
        '127.0.0.1',
        '--grpc-port',
        '0',
        '--http-host',
        '127.0.0.1',
        '--http-port',
        '0',
      ],
      {
        env: { SPILLWAY_ADMIN_TOKEN: 'main-test-admin-token-0123456789' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) =>
      child.on('exit', (code) => resolve(code)),
    );
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no REST port logged; stderr: ${err}`)),
        30_000,
      );
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        for (const line of out.split('\n')) {
          if (!line.includes('REST API listening')) continue;
          clearTimeout(timer);
          resolve((JSON.parse(line) as { port: number }).port);
        }
      });
      child.on('exit', () => reject(new Error(`exited early: ${err}${out}`)));
    });
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(ready.status).toBe(200);
    const listed = await fetch(`http://127.0.0.1:${port}/api/v1/clusters`, {
      headers: { authorization: 'Bearer main-test-admin-token-0123456789' },
    });
    expect(listed.status).toBe(200);
    expect(out).not.toContain('main-test-admin-token');

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(out).toContain('"msg":"stopped"');
  });
});
