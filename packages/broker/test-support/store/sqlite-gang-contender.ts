/**
 * A separate process that opens the same SQLite file and fires reserveGang() calls, so the
 * gang race has real parallel writers (gang.int.test.ts forks several of these). Same
 * protocol as sqlite-contender.ts: 'ready', the job, 'armed', 'go', the report.
 */
import { registerHooks } from 'node:module';
import type { GangReserveRequest, GangReserveResult } from '../../src/model.js';

export interface GangContenderJob {
  path: string;
  now: string;
  gangs: GangReserveRequest[];
}

export interface GangContenderReport {
  results: GangReserveResult[];
}

registerHooks({
  resolve(specifier, context, nextResolve) {
    try {
      return nextResolve(specifier, context);
    } catch (err) {
      if (specifier.startsWith('.') && specifier.endsWith('.js')) {
        return nextResolve(`${specifier.slice(0, -3)}.ts`, context);
      }
      throw err;
    }
  },
});

const { openSqliteStore } = await import('../../src/store/sqlite.js');

process.once('message', (msg: unknown) => {
  void (async () => {
    const job = msg as GangContenderJob;
    const store = await openSqliteStore({ path: job.path, busyTimeoutMs: 60_000 });
    const now = new Date(job.now);
    await new Promise<void>((resolve) => {
      process.once('message', () => resolve());
      process.send?.('armed');
    });
    const results = await Promise.all(job.gangs.map((g) => store.reserveGang(g, now)));
    await store.close();
    process.send?.({ results } satisfies GangContenderReport, () => process.exit(0));
  })().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
});
process.send?.('ready');
