import { defineConfig } from 'vitest/config';

// Packages resolve each other to src/ through the "@spillway/source" export condition,
// so unit and integration tests run without a prior build.
export default defineConfig({
  resolve: { conditions: ['@spillway/source'] },
  ssr: { resolve: { conditions: ['@spillway/source'] } },
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          // The bench's own logic (flags, goals) is unit-tested too; e2e scenarios are not here.
          include: ['packages/*/src/**/*.test.ts', 'e2e/bench/**/*.test.ts'],
          exclude: ['**/*.int.test.ts', '**/*.e2e.test.ts', '**/node_modules/**', '**/dist/**'],
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          // The test bed's image builds (buildah, no registry) are checked here too.
          include: ['packages/*/src/**/*.int.test.ts', 'e2e/images/**/*.int.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
