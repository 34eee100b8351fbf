import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterEach, describe, it } from 'vitest';
import {
  describeGangContract,
  expectWholeGangs,
  raceGangs,
  seedRaceDonor,
} from '../../test-support/store/contract-gang.js';
import { T0 } from '../../test-support/store/contract.js';
import type {
  GangContenderJob,
  GangContenderReport,
} from '../../test-support/store/sqlite-gang-contender.js';
import type { GangReserveRequest } from '../model.js';
import { RedisStore } from './redis.js';
import { openSqliteStore } from './sqlite.js';
import type { Store } from './store.js';

const REDIS_URL = 'redis://127.0.0.1:6379';

async function dropPrefix(prefix: string): Promise<void> {
  const admin = new Redis(REDIS_URL);
  try {
    const keys = await admin.keys(`${prefix}*`);
    if (keys.length > 0) await admin.del(...keys);
  } finally {
    await admin.quit();
  }
}

describeGangContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spillway-gang-'));
  const path = join(dir, 'broker.db');
  let current: Store = await openSqliteStore({ path });
  const others: Store[] = [];
  return {
    store: current,
    async reopen() {
      await current.close();
      current = await openSqliteStore({ path });
      return current;
    },
    // More connections to the same file.
    async another() {
      const s = await openSqliteStore({ path });
      others.push(s);
      return s;
    },
    async cleanup() {
      await Promise.all([current, ...others].map((s) => s.close()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

describeGangContract('redis', () => {
  const prefix = `spillway-test:${process.pid}:${randomUUID()}:`;
  let current: Store = new RedisStore(REDIS_URL, { prefix });
  const others: Store[] = [];
  return Promise.resolve({
    store: current,
    async reopen() {
      await current.close();
      current = new RedisStore(REDIS_URL, { prefix });
      return current;
    },
    // Another replica: its own connection to the same keys.
    another() {
      const s = new RedisStore(REDIS_URL, { prefix });
      others.push(s);
      return Promise.resolve(s);
    },
    async cleanup() {
      await Promise.all([current, ...others].map((s) => s.close()));
      await dropPrefix(prefix);
    },
  });
});

/** One process per share of gangs on the same file, released together. */
async function contend(
  path: string,
  shares: GangReserveRequest[][],
): Promise<GangContenderReport[]> {
  const script = fileURLToPath(
    new URL('../../test-support/store/sqlite-gang-contender.ts', import.meta.url),
  );
  const armed: Promise<void>[] = [];
  const done: Promise<GangContenderReport>[] = [];
  const children = shares.map((gangs) => {
    const child = fork(script, [], {
      execArgv: [
        '--conditions=@spillway/source',
        '--experimental-transform-types',
        '--no-warnings',
      ],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let report: GangContenderReport | undefined;
    armed.push(
      new Promise((resolve, reject) => {
        child.on('message', (msg: unknown) => {
          if (msg === 'ready') {
            child.send({ path, now: T0.toISOString(), gangs } satisfies GangContenderJob);
          } else if (msg === 'armed') resolve();
          else report = msg as GangContenderReport;
        });
        child.on('exit', () => reject(new Error('gang contender exited before it was armed')));
      }),
    );
    done.push(
      new Promise((resolve, reject) => {
        child.on('error', reject);
        child.on('exit', (code) => {
          if (code === 0 && report) resolve(report);
          else
            reject(new Error(`gang contender exited with code ${String(code)} without a report`));
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

describe('SQLite gangs from several processes', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('4 processes race 32 gangs on one file: exactly 3 win, each whole', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spillway-gang-procs-'));
    dirs.push(dir);
    const path = join(dir, 'broker.db');
    const store = await openSqliteStore({ path });
    try {
      await seedRaceDonor(store);
      const gangs = raceGangs(32);
      const shares = [0, 1, 2, 3].map((p) => gangs.filter((_, i) => i % 4 === p));
      const reports = await contend(path, shares);
      // Back in the order of `gangs`.
      const results = gangs.map((_, i) => reports[i % 4]!.results[Math.floor(i / 4)]!);
      await expectWholeGangs(store, gangs, results);
    } finally {
      await store.close();
    }
  }, 120_000);
});
