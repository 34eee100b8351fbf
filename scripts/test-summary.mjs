// Adds up the JSON reports vitest wrote for each part of `npm test` and prints one closing
// line: "tests: N passed, N failed, N skipped". Exits non-zero if a report is missing.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const dir = new URL('../.spillway/test-results/', import.meta.url).pathname;
const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')) : [];
let passed = 0;
let failed = 0;
let skipped = 0;
for (const f of files.sort()) {
  const r = JSON.parse(readFileSync(join(dir, f), 'utf8'));
  const p = r.numPassedTests ?? 0;
  // A file that failed before running its tests counts once; otherwise count the tests.
  const x = (r.numFailedTests ?? 0) || (r.numFailedTestSuites ?? 0);
  const s = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  console.log(`  ${f.replace(/\.json$/, '')}: ${p} passed, ${x} failed, ${s} skipped`);
  passed += p;
  failed += x;
  skipped += s;
}
if (files.length === 0) {
  console.log('tests: 0 passed, 1 failed (no test reports were written)');
  process.exit(1);
}
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
