import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, silentLogger } from '@spillway/common';
import { DEFAULT_DONOR_POLICY, type ReservationRecord } from '../model.js';
import { RedisStore } from '../store/redis.js';
import { openSqliteStore } from '../store/sqlite.js';
import type { ViewFeed, ViewNotice } from '../store/store.js';
import { StoreView } from './view.js';

const REDIS_URL = 'redis://127.0.0.1:6379';

/** Two replicas' views over one real Redis, each with its own store connection and feed. */
describe('StoreView across replicas (real Redis)', () => {
  const prefix = `spillway-test:view:${process.pid}:${randomUUID()}:`;
  const opened: { store: RedisStore; view: StoreView }[] = [];

  async function replica(): Promise<{ store: RedisStore; view: StoreView }> {
    const store = new RedisStore(REDIS_URL, { prefix });
    const view = new StoreView({ store, logger: silentLogger(), feed: store.openFeed() });
    await view.start();
    opened.push({ store, view });
    return { store, view };
  }

  afterEach(async () => {
    for (const { store, view } of opened.splice(0)) {
      await view.stop();
      await store.close();
    }
    const admin = new Redis(REDIS_URL);
    try {
      const keys = await admin.keys(`${prefix}*`);
      if (keys.length > 0) await admin.del(...keys);
    } finally {
      await admin.quit();
    }
  });

  const rsv = (id: string, state: ReservationRecord['state'] = 'open'): ReservationRecord => ({
    id,
    origin: 'lab',
    donor: 'gpu-a',
    node: 'n1',
    resource: 'nvidia.com/gpu',
    gpus: 1,
    pod: { originCluster: 'lab', namespace: 'ml', name: id, uid: `uid-${id}` },
    state,
    createdAt: new Date().toISOString(),
    expiresAt: new Date(Date.now() + 60_000).toISOString(),
  });

  async function until(check: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 5000;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  it("sees another replica's reservations, clusters and their ends through the feed", async () => {
    const a = await replica();
    const b = await replica();
    const cluster = {
      id: 'gpu-a',
      role: 'donor' as const,
      createdAt: new Date().toISOString(),
      policy: { ...DEFAULT_DONOR_POLICY },
    };
    await a.store.putCluster(cluster);
    await a.view.ready();
    await b.view.ready();
    a.view.noteCluster(cluster);
    await until(() => b.view.cluster('gpu-a') !== undefined, 'the cluster on replica b');

    a.view.noteReservation(rsv('r1'));
    await until(() => b.view.reservationsOn('gpu-a').length === 1, 'r1 on replica b');
    a.view.noteReservation(rsv('r1', 'released'));
    await until(() => b.view.reservationsOn('gpu-a').length === 0, 'r1 released on replica b');
    // A late "open" of a reservation that already ended does not bring it back.
    a.view.noteReservation(rsv('r1'));
    await new Promise((r) => setTimeout(r, 200));
    expect(b.view.reservationsOn('gpu-a')).toHaveLength(0);
  });

  it('replays notices that arrive during a full re-read exactly once, over its result', async () => {
    const a = await replica();
    const b = await replica();
    await a.view.ready();
    await b.view.ready();
    // Notices keep coming while b re-reads; the re-read must finish and keep every one.
    const reload = b.view.load();
    for (let i = 0; i < 200; i++) a.view.noteReservation(rsv(`r${i}`));
    await reload;
    await until(() => b.view.reservationsOn('gpu-a').length === 200, 'all 200 on replica b');
    await b.view.load();
    // The store holds none of them (they were only noted): a re-read is the truth again.
    expect(b.view.reservationsOn('gpu-a')).toHaveLength(0);
  });
});

/** A donor re-read that fails is queued again and said so, at most every few seconds. */
describe('StoreView re-read failures (real SQLite)', () => {
  it('warns when a donor re-read fails, once for a burst of failures', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spillway-view-'));
    const inner = await openSqliteStore({ path: join(dir, 'broker.db') });
    try {
      let failing = false;
      const store = new Proxy(inner, {
        get(target, prop, receiver) {
          if (prop === 'getInventory' && failing)
            return () => Promise.reject(new Error('store unreachable'));
          const v: unknown = Reflect.get(target, prop, receiver);
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
      let deliver: ((n: ViewNotice) => void) | undefined;
      const feed: ViewFeed = {
        publish: () => undefined,
        subscribe: (on) => {
          deliver = on;
          return Promise.resolve();
        },
        close: () => Promise.resolve(),
      };
      const lines: string[] = [];
      const destination = new Writable({
        write(chunk: Buffer, _enc, done) {
          lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
          done();
        },
      });
      const view = new StoreView({
        store,
        logger: createLogger({ level: 'info', destination }),
        feed,
      });
      await view.start();
      await view.ready();
      failing = true;
      for (let i = 0; i < 5; i++) {
        deliver!({ k: 'donor', id: 'gpu-a' });
        await view.ready();
      }
      await new Promise((r) => setImmediate(r));
      const warned = lines.filter((l) => l.includes('could not re-read a donor'));
      expect(warned).toHaveLength(1);
      expect(JSON.parse(warned[0]!)).toMatchObject({ level: 'warn', donor: 'gpu-a' });
      // Still queued: the next placement tries again and, the store back, succeeds.
      failing = false;
      await view.ready();
    } finally {
      await inner.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
