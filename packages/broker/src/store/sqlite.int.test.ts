import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  T0,
  contendedRequests,
  describeStoreContract,
  expectNoOvercommit,
  seedContendedDonor,
} from '../../test-support/store/contract.js';
import { DEFAULT_DONOR_POLICY, type ReserveRequest, type ReserveResult } from '../model.js';
import { MIGRATIONS } from './sqlite-schema.js';
import type { ContenderJob, ContenderReport } from '../../test-support/store/sqlite-contender.js';
import { SQLITE_SCHEMA_VERSION, openSqliteStore, type SqliteStore } from './sqlite.js';
import type { Store } from './store.js';

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'spillway-sqlite-'));
}

describeStoreContract('sqlite', async () => {
  const dir = tempDir();
  const path = join(dir, 'data', 'broker.db');
  let current: Store = await openSqliteStore({ path });
  return {
    store: current,
    async reopen() {
      await current.close();
      current = await openSqliteStore({ path });
      return current;
    },
    async cleanup() {
      await current.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe('SqliteStore file', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('opens in WAL mode with a schema_version row', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const path = join(dir, 'broker.db');
    const store = await openSqliteStore({ path });
    await store.close();
    const db = new DatabaseSync(path);
    expect(db.prepare('PRAGMA journal_mode').get()).toEqual({ journal_mode: 'wal' });
    expect(db.prepare('SELECT version FROM schema_version').all()).toEqual([
      { version: SQLITE_SCHEMA_VERSION },
    ]);
    db.close();
  });

  it('migrates a version 1 database, keeping its clusters', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const path = join(dir, 'broker.db');
    // What a broker of schema version 1 left: its tables, its version row, one cluster.
    const db = new DatabaseSync(path);
    db.exec(MIGRATIONS[0]!);
    db.exec('CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT');
    db.prepare('INSERT INTO schema_version (version) VALUES (1)').run();
    db.prepare(
      `INSERT INTO clusters (id, role, created_at, cert_serial, policy) VALUES (?, ?, ?, ?, ?)`,
    ).run('east', 'donor', '2026-01-01T00:00:00.000Z', '0a', JSON.stringify(DEFAULT_DONOR_POLICY));
    db.close();
    const store = await openSqliteStore({ path });
    try {
      expect(await store.getCluster('east')).toStrictEqual({
        id: 'east',
        role: 'donor',
        createdAt: '2026-01-01T00:00:00.000Z',
        certSerial: '0a',
        policy: DEFAULT_DONOR_POLICY,
      });
      await store.putCluster({
        ...(await store.getCluster('east'))!,
        supersededSerials: ['09'],
      });
      expect((await store.getCluster('east'))?.supersededSerials).toEqual(['09']);
    } finally {
      await store.close();
    }
  });

  it('refuses a database written by a newer schema', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const path = join(dir, 'broker.db');
    await (await openSqliteStore({ path })).close();
    const db = new DatabaseSync(path);
    db.prepare('UPDATE schema_version SET version = ?').run(SQLITE_SCHEMA_VERSION + 1);
    db.close();
    await expect(openSqliteStore({ path })).rejects.toMatchObject({
      code: 'INVALID_CONFIG',
      field: 'store.path',
    });
  });

  it('maps an unopenable path to STORE_UNAVAILABLE', async () => {
    const dir = tempDir();
    dirs.push(dir);
    // The "directory" is a file, so the database cannot be created under it.
    const blocker = join(dir, 'file');
    await (await openSqliteStore({ path: blocker })).close();
    await expect(openSqliteStore({ path: join(blocker, 'broker.db') })).rejects.toMatchObject({
      code: 'STORE_UNAVAILABLE',
    });
  });

  it('lets several connections on one file share state', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const path = join(dir, 'broker.db');
    const stores: SqliteStore[] = await Promise.all([1, 2, 3].map(() => openSqliteStore({ path })));
    const [a, b] = stores;
    await a!.putApiToken({
      id: 't',
      secretHash: 'h',
      role: 'admin',
      description: '',
      createdAt: '2026-01-01T00:00:00.000Z',
    });
    expect(await b!.getApiToken('t')).toMatchObject({ id: 't' });
    await Promise.all(stores.map((s) => s.close()));
  });
});

/**
 * Forks one contender process per share of `requests` on `path`, releases them together once
 * all have opened the file, and returns what each one's reserve() calls answered.
 */
async function contend(path: string, shares: ReserveRequest[][]): Promise<ContenderReport[]> {
  const script = fileURLToPath(
    new URL('../../test-support/store/sqlite-contender.ts', import.meta.url),
  );
  const armed: Promise<void>[] = [];
  const done: Promise<ContenderReport>[] = [];
  const children = shares.map((requests) => {
    const child = fork(script, [], {
      execArgv: [
        '--conditions=@spillway/source',
        '--experimental-transform-types',
        '--no-warnings',
      ],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let report: ContenderReport | undefined;
    armed.push(
      new Promise((resolve, reject) => {
        child.on('message', (msg: unknown) => {
          if (msg === 'ready')
            child.send({ path, now: T0.toISOString(), requests } satisfies ContenderJob);
          else if (msg === 'armed') resolve();
          else report = msg as ContenderReport;
        });
        child.on('exit', () => reject(new Error('contender exited before it was armed')));
      }),
    );
    done.push(
      new Promise((resolve, reject) => {
        child.on('error', reject);
        child.on('exit', (code) => {
          if (code === 0 && report) resolve(report);
          else reject(new Error(`contender exited with code ${String(code)} without a report`));
        });
      }),
    );
    return child;
  });
  try {
    await Promise.all(armed);
  } catch (err) {
    for (const c of children) c.kill();
    throw err;
  }
  for (const c of children) c.send('go');
  return Promise.all(done);
}

describe('SqliteStore under contention', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('1,000 concurrent reserves over several connections to one file: exactly 100 win', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const path = join(dir, 'broker.db');
    const stores = await Promise.all([0, 1, 2, 3].map(() => openSqliteStore({ path })));
    try {
      await seedContendedDonor(stores[0]!);
      const requests = contendedRequests(1000);
      const started = performance.now();
      const results = await Promise.all(requests.map((r, i) => stores[i % 4]!.reserve(r, T0)));
      const ms = performance.now() - started;
      console.info(
        `sqlite: 1,000 reserves over 4 connections in one process in ${ms.toFixed(0)} ms`,
      );
      await expectNoOvercommit(stores[3]!, results, 100);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it('1,000 reserves from 4 processes writing one file at once: exactly 100 win', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const path = join(dir, 'broker.db');
    const store = await openSqliteStore({ path });
    try {
      await seedContendedDonor(store);
      const requests = contendedRequests(1000);
      const shares = [0, 1, 2, 3].map((k) => requests.filter((_, i) => i % 4 === k));
      const reports = await contend(path, shares);
      const results: ReserveResult[] = reports.flatMap((r) => r.results);
      console.info(
        `sqlite: 1,000 reserves from 4 processes in ${Math.max(...reports.map((r) => r.ms)).toFixed(0)} ms (slowest process)`,
      );
      // Every process won some: they really contended rather than running one after another.
      expect(reports.filter((r) => r.results.some((x) => x.ok)).length).toBeGreaterThan(1);
      await expectNoOvercommit(store, results, 100);
    } finally {
      await store.close();
    }
  });
});
