import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe } from 'vitest';
import {
  SpillwayError,
  createCertificateAuthority,
  createCsr,
  generateKeyPair,
  silentLogger,
  type CertificateAuthority,
} from '@spillway/common';
import type { ClusterRole, NodeInventory } from '../../src/model.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { RedisStore } from '../../src/store/redis.js';
import type { Store } from '../../src/store/store.js';
import type { PlacementRequest } from '../../src/core/api.js';
import { Core, type CoreOptions } from '../../src/core/broker-core.js';

/** The setup the Core integration suites (src/core/broker-core.*.int.test.ts) share. */

export const REDIS_URL = 'redis://127.0.0.1:6379';
export const GPU = 'nvidia.com/gpu';
export const A100 = 'NVIDIA-A100-SXM4-80GB';

/** A store backend under test, with as many connections to the same data as asked. */
export interface Backend {
  name: string;
  open(): Promise<Store>;
  cleanup(): Promise<void>;
  /** How many keys the backend holds, where that means something (Redis). */
  keys?(): Promise<number>;
}

export function sqliteBackend(): Backend {
  const dir = mkdtempSync(join(tmpdir(), 'spillway-core-'));
  const path = join(dir, 'broker.db');
  return {
    name: 'sqlite',
    open: async () => openSqliteStore({ path }),
    cleanup: () => {
      rmSync(dir, { recursive: true, force: true });
      return Promise.resolve();
    },
  };
}

/** Visits every key under `prefix` on the test Redis, a batch at a time. */
export async function scanRedisKeys(
  prefix: string,
  visit: (admin: Redis, keys: string[]) => Promise<unknown>,
): Promise<void> {
  const admin = new Redis(REDIS_URL);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length > 0) await visit(admin, keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    await admin.quit();
  }
}

export function redisBackend(): Backend {
  const prefix = `spillway-test:core:${process.pid}:${randomUUID()}:`;
  return {
    name: 'redis',
    open: () => Promise.resolve(new RedisStore(REDIS_URL, { prefix })),
    async keys() {
      let n = 0;
      await scanRedisKeys(prefix, (_admin, keys) => Promise.resolve((n += keys.length)));
      return n;
    },
    cleanup: () => scanRedisKeys(prefix, (admin, keys) => admin.del(...keys)),
  };
}

export function gpuNode(
  name: string,
  free: number,
  over: Partial<NodeInventory> = {},
): NodeInventory {
  return {
    name,
    gpus: { [GPU]: { allocatable: Math.max(8, free), free } },
    gpuProduct: A100,
    gpuMemoryMiB: 81920,
    labels: {},
    taints: [],
    ready: true,
    cordoned: false,
    cpuAllocatableMillis: 64_000,
    cpuFreeMillis: 60_000,
    memoryAllocatableBytes: 512 * 2 ** 30,
    memoryFreeBytes: 500 * 2 ** 30,
    offloadedPodUids: [],
    ...over,
  };
}

export function placement(
  uid: string,
  gpus = 1,
  over: Partial<PlacementRequest> = {},
): PlacementRequest {
  return {
    pod: { originCluster: 'lab', namespace: 'ml', name: `pod-${uid}`, uid },
    resource: GPU,
    gpus,
    nodeRequirements: [],
    tolerations: [],
    cpuMillis: 1000,
    memoryBytes: 2 ** 30,
    donors: [],
    ...over,
  };
}

export async function caught(p: Promise<unknown>): Promise<SpillwayError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof SpillwayError) return err;
    throw err;
  }
  throw new Error('expected a SpillwayError');
}

export interface FakeClock {
  clock: () => Date;
  advance(ms: number): void;
}

/** A controllable clock starting now, so issued certificates verify against real time too. */
export function fakeClock(): FakeClock {
  let t = Date.now();
  return { clock: () => new Date(t), advance: (ms) => void (t += ms) };
}

/** What a suite body of describeCore works with; getters read the current test's values. */
export interface CoreSuite {
  /** This test's backend (a fresh one after each test). */
  readonly backend: Backend;
  /** The stores this test opened, in order. */
  readonly stores: Store[];
  /** The clock every core of the suite runs on; it only moves forward. */
  readonly time: FakeClock;
  readonly ca: CertificateAuthority;
  /** A CSR that claims another identity; the broker must ignore it. */
  readonly csr: string;
  newCore(opts?: Partial<CoreOptions>): Promise<Core>;
  /** lab borrows from donor-a (2 nodes: 8 and 4 free A100s), agent connected and reporting. */
  peeredLab(core: Core, peeringMaxGpus?: number): Promise<void>;
  joinAs(core: Core, clusterId: string, role: ClusterRole): Promise<string>;
}

/**
 * Runs `body` once per store backend (SQLite, Redis) inside `Core on <backend>`: every test
 * gets fresh data, and the cores and stores it made are stopped after it.
 */
export function describeCore(body: (s: CoreSuite) => void): void {
  for (const makeBackend of [sqliteBackend, redisBackend]) {
    describe(`Core on ${makeBackend().name}`, () => {
      let backend: Backend;
      let ca: CertificateAuthority | undefined;
      let csr: string | undefined;
      const stores: Store[] = [];
      const cores: Core[] = [];
      const time = fakeClock();

      const joinAs = async (core: Core, clusterId: string, role: ClusterRole): Promise<string> => {
        const { token } = await core.createJoinToken({ clusterId, role });
        return (await core.join(token, suite.csr)).certificatePem;
      };

      const suite: CoreSuite = {
        get backend() {
          return backend;
        },
        stores,
        time,
        get ca() {
          if (!ca) throw new Error('the CA is made in beforeAll');
          return ca;
        },
        get csr() {
          if (csr === undefined) throw new Error('the CSR is made in beforeAll');
          return csr;
        },
        async newCore(opts = {}) {
          const store = await backend.open();
          stores.push(store);
          const core = new Core({
            store,
            ca: suite.ca,
            brokerId: `broker-${cores.length}`,
            logger: silentLogger(),
            clock: time.clock,
            lendingDebounceMs: 10,
            ...opts,
          });
          cores.push(core);
          return core;
        },
        async peeredLab(core, peeringMaxGpus = 0) {
          await joinAs(core, 'lab', 'origin');
          await joinAs(core, 'donor-a', 'donor');
          await core.connected('donor-a', 'agent');
          await core.applyCapacity('donor-a', {
            full: true,
            nodes: [gpuNode('n1', 8), gpuNode('n2', 4)],
            removedNodes: [],
            sequence: 1,
          });
          await core.createPeering({ origin: 'lab', donor: 'donor-a', maxGpus: peeringMaxGpus });
        },
        joinAs,
      };

      beforeAll(() => {
        ca = createCertificateAuthority({ commonName: 'Spillway test CA' });
        csr = createCsr(generateKeyPair().privateKeyPem, 'cluster:impostor');
        backend = makeBackend();
      });
      afterEach(async () => {
        await Promise.all(cores.splice(0).map((c) => c.stop()));
        await Promise.all(stores.splice(0).map((s) => s.close()));
        await backend.cleanup();
        backend = makeBackend();
      });
      afterAll(async () => {
        await backend.cleanup();
      });

      body(suite);
    });
  }
}
