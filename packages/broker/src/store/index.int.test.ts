import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createStore, type StoreConfig } from './index.js';

describe('createStore', () => {
  it('opens a SQLite file from either config shape, sharing the data', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spillway-create-'));
    try {
      const path = join(dir, 'broker.db');
      const a = await createStore({ kind: 'sqlite', path });
      const b = await createStore({ kind: 'sqlite', sqlitePath: path, redisUrl: 'unused' });
      expect([a.kind, b.kind]).toEqual(['sqlite', 'sqlite']);
      await a.revoke({ serial: 'ab', revokedAt: '2026-01-01T00:00:00.000Z', reason: 'x' });
      expect(await b.isRevoked('ab')).toBe(true);
      await Promise.all([a.close(), b.close()]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('connects a Redis store under the given prefix', async () => {
    const prefix = `spillway-test:${randomUUID()}:`;
    const store = await createStore({ kind: 'redis', url: 'redis://127.0.0.1:6379', prefix });
    expect(store.kind).toBe('redis');
    await store.ping();
    expect(await store.listClusters()).toEqual([]);
    await store.close();
  });

  it('rejects an unknown kind with INVALID_CONFIG naming the field', async () => {
    await expect(
      createStore({ kind: 'etcd', path: 'x' } as unknown as StoreConfig),
    ).rejects.toMatchObject({ code: 'INVALID_CONFIG', field: 'store' });
  });
});
