import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { describeStoreContract } from './contract.js';
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
