import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// End-to-end suite: real control planes, so files run one after another (each
// starts its own test bed on a 2-core machine) in child processes, which kill
// their clusters when they exit.
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  resolve: { conditions: ['@spillway/source'] },
  ssr: { resolve: { conditions: ['@spillway/source'] } },
  test: {
    name: 'e2e',
    include: ['**/*.e2e.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    globalSetup: ['./testbed/global-setup.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 180_000,
    teardownTimeout: 30_000,
  },
});
