// Runs the end-to-end suite (real control planes from the test bed) with its own config.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const config = new URL('../e2e/vitest.config.ts', import.meta.url).pathname;
if (!existsSync(config)) {
  console.error('spillway: the e2e suite (e2e/vitest.config.ts) is missing from this checkout.');
  process.exit(1);
}
// A JSON report next to the unit/integration one, for the closing summary line.
const report = new URL('../.spillway/test-results/e2e.json', import.meta.url).pathname;
const r = spawnSync(
  'vitest',
  [
    'run',
    '--config',
    config,
    '--reporter=default',
    '--reporter=json',
    `--outputFile.json=${report}`,
    ...process.argv.slice(2),
  ],
  { stdio: 'inherit' },
);
process.exit(r.status ?? 1);
