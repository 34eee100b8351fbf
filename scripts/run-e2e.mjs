// Runs the end-to-end suite (real control planes from the test bed) with its own config.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const config = new URL('../e2e/vitest.config.ts', import.meta.url).pathname;
if (!existsSync(config)) {
  console.error('spillway: the e2e suite (e2e/vitest.config.ts) is missing from this checkout.');
  process.exit(1);
}
const r = spawnSync('vitest', ['run', '--config', config, ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(r.status ?? 1);
