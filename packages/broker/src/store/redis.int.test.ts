import { randomUUID } from 'node:crypto';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import {
  CONTENDED_DONOR,
  T0,
  cluster,
  contendedRequests,
  describeStoreContract,
  expectNoOvercommit,
  seedContendedDonor,
} from '../../test-support/store/contract.js';
import { RedisStore } from './redis.js';
import type { Store } from './store.js';

const REDIS_URL = 'redis://127.0.0.1:6379';

function testPrefix(): string {
  return `spillway-test:${process.pid}:${randomUUID()}:`;
}

/** Deletes every key under the prefix, so parallel test files never see each other. */
async function dropPrefix(prefix: string): Promise<void> {
  const admin = new Redis(REDIS_URL);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length > 0) await admin.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    await admin.quit();
  }
}

async function countKeys(prefix: string): Promise<number> {
  const admin = new Redis(REDIS_URL);
  try {
    return (await admin.keys(`${prefix}*`)).length;
  } finally {
    await admin.quit();
  }
}

describeStoreContract('redis', () => {
  const prefix = testPrefix();
  let current: Store = new RedisStore(REDIS_URL, { prefix });
  return Promise.resolve({
    store: current,
    async reopen() {
      await current.close();
      current = new RedisStore(REDIS_URL, { prefix });
      return current;
    },
    async cleanup() {
      await current.close();
      await dropPrefix(prefix);
    },
  });
});

describe('RedisStore connection', () => {
  it('uses its prefix for every key, and shares data with a store on the same prefix', async () => {
    const prefix = testPrefix();
    const a = new RedisStore(REDIS_URL, { prefix });
    const b = new RedisStore(REDIS_URL, { prefix });
    const other = new RedisStore(REDIS_URL, { prefix: testPrefix() });
    try {
      await a.putApiToken({
        id: 't',
        secretHash: 'h',
        role: 'admin',
        description: '',
        createdAt: '2026-01-01T00:00:00.000Z',
      });
      expect(await b.getApiToken('t')).toMatchObject({ id: 't' });
      expect(await other.getApiToken('t')).toBeUndefined();
      expect(await countKeys(prefix)).toBeGreaterThan(0);
    } finally {
      await Promise.all([a.close(), b.close(), other.close()]);
      await dropPrefix(prefix);
    }
  });

  it('accepts a caller-owned client and leaves it open on close', async () => {
    const client = new Redis(REDIS_URL);
    const prefix = testPrefix();
    const store = new RedisStore(client, { prefix });
    await store.ping();
    await store.close();
    expect(await client.ping()).toBe('PONG');
    await client.quit();
  });

  it('fails fast with STORE_UNAVAILABLE when Redis cannot be reached', async () => {
    // Port 1 on loopback refuses connections.
    const store = new RedisStore('redis://127.0.0.1:1', {
      prefix: testPrefix(),
      readyTimeoutMs: 500,
    });
    const started = Date.now();
    await expect(store.ping()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    await expect(store.listClusters()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    expect(Date.now() - started).toBeLessThan(3000);
    await store.close();
  });
});

/** A TCP pass-through to the real Redis that the test can cut and restore. */
class RedisLink {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;

  async up(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(6379, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('error', () => s.destroy());
        s.on('close', () => {
          this.sockets.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

describe('RedisStore across a Redis outage', () => {
  it('fails fast with STORE_UNAVAILABLE while Redis is away and reconnects by itself', async () => {
    const prefix = testPrefix();
    const link = new RedisLink();
    await link.up();
    const store = new RedisStore(`redis://127.0.0.1:${link.port}`, { prefix, readyTimeoutMs: 500 });
    try {
      await store.putCluster(cluster('gpu-east'));
      await link.down();
      const started = Date.now();
      await expect(store.ping()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      await expect(store.getCluster('gpu-east')).rejects.toMatchObject({
        code: 'STORE_UNAVAILABLE',
      });
      expect(Date.now() - started).toBeLessThan(3000);

      await link.up();
      await vi.waitFor(() => store.ping(), { timeout: 10_000, interval: 200 });
      expect(await store.getCluster('gpu-east')).toMatchObject({ id: 'gpu-east' });
    } finally {
      await store.close();
      await link.down();
      await dropPrefix(prefix);
    }
  });
});

describe('RedisStore under contention across replicas', () => {
  const REPLICAS = 5;

  async function replicas(prefix: string): Promise<RedisStore[]> {
    const stores = Array.from({ length: REPLICAS }, () => new RedisStore(REDIS_URL, { prefix }));
    await Promise.all(stores.map((s) => s.ping()));
    return stores;
  }

  it('1,000 concurrent 1-GPU reserves on 100 free GPUs: exactly 100 win', async () => {
    const prefix = testPrefix();
    const stores = await replicas(prefix);
    try {
      await seedContendedDonor(stores[0]!);
      const requests = contendedRequests(1000);
      const started = performance.now();
      const results = await Promise.all(
        requests.map((r, i) => stores[i % REPLICAS]!.reserve(r, T0)),
      );
      const ms = performance.now() - started;
      console.info(`redis: 1,000 reserves over ${REPLICAS} connections in ${ms.toFixed(0)} ms`);
      await expectNoOvercommit(stores[1]!, results, 100);
      expect(results.filter((r) => !r.ok && r.code !== 'NO_FIT')).toEqual([]);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
      await dropPrefix(prefix);
    }
  });

  it('enforces donor and per-origin limits atomically under the same load', async () => {
    const prefix = testPrefix();
    const stores = await replicas(prefix);
    try {
      await seedContendedDonor(stores[0]!);
      const requests = contendedRequests(1000, (i) => ({
        origin: i % 2 === 0 ? 'origin-a' : 'origin-b',
        donorMaxGpus: 50,
        donorMaxGpusPerOrigin: 30,
      }));
      const results = await Promise.all(
        requests.map((r, i) => stores[i % REPLICAS]!.reserve(r, T0)),
      );
      await expectNoOvercommit(stores[2]!, results, 50);
      const usage = await stores[3]!.usage(CONTENDED_DONOR);
      expect(usage.byOrigin['origin-a']).toBeLessThanOrEqual(30);
      expect(usage.byOrigin['origin-b']).toBeLessThanOrEqual(30);
      expect((usage.byOrigin['origin-a'] ?? 0) + (usage.byOrigin['origin-b'] ?? 0)).toBe(50);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
      await dropPrefix(prefix);
    }
  });
});
