/**
 * A separate process that opens the same SQLite file and fires reserve() calls, so the
 * concurrency test has real parallel writers (sqlite.int.test.ts forks several of these).
 * Plain Node runs it from source: a resolve hook maps the `.js` import suffix to `.ts`.
 */
import { registerHooks } from 'node:module';
import type { ReserveRequest, ReserveResult } from '../../src/model.js';

export interface ContenderJob {
  path: string;
  now: string;
  requests: ReserveRequest[];
}

export interface ContenderReport {
  results: ReserveResult[];
  ms: number;
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

// Protocol: parent sends the job; we open the store and answer 'armed'; the parent sends
// 'go' to every contender at once, so their reserve() calls overlap in time.
process.once('message', (msg: unknown) => {
  void (async () => {
    const job = msg as ContenderJob;
    const store = await openSqliteStore({ path: job.path });
    const now = new Date(job.now);
    await new Promise<void>((resolve) => {
      process.once('message', () => resolve());
      process.send?.('armed');
    });
    const started = performance.now();
    const results = await Promise.all(job.requests.map((r) => store.reserve(r, now)));
    const report: ContenderReport = { results, ms: performance.now() - started };
    await store.close();
    process.send?.(report, () => process.exit(0));
  })().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
});
process.send?.('ready');
