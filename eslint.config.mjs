import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { importX } from 'eslint-plugin-import-x';
import globals from 'globals';

/** Packages talk to each other only through their entry points. */
const PACKAGE_BOUNDARIES = [
  {
    // @spillway/api/rest is an entry point of its own: the REST wire types, apart from the
    // proto types whose names they share.
    group: ['@spillway/*/*', '!@spillway/api/rest'],
    message: 'Import other Spillway packages through their entry point.',
  },
  {
    group: ['../../*/src/*', '../../../packages/*'],
    message: 'No deep imports across packages.',
  },
];

export default tseslint.config(
  {
    ignores: [
      '**/node_modules/**',
      '**/dist/**',
      'packages/api/src/gen/**',
      'e2e/bench/results/**',
      'charts/**',
      'coverage/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      globals: { ...globals.node },
      parserOptions: {
        projectService: { allowDefaultProject: ['vitest.config.ts', 'e2e/vitest.config.ts'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    plugins: { 'import-x': importX },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      'import-x/no-cycle': 'error',
      // Packages talk to each other only through their entry points.
      'no-restricted-imports': [
        'error',
        {
          patterns: PACKAGE_BOUNDARIES,
        },
      ],
    },
  },
  {
    // spillctl ships without the broker's server stack; its REST types are @spillway/api/rest.
    files: ['packages/cli/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            {
              name: '@spillway/broker',
              message:
                'spillctl must not depend on the broker: use @spillway/api/rest and @spillway/common.',
            },
          ],
          patterns: PACKAGE_BOUNDARIES,
        },
      ],
    },
  },
  {
    // The dashboard's page runs in the browser.
    files: ['packages/broker/page/**/*.ts'],
    languageOptions: { globals: { ...globals.browser } },
  },
  {
    files: ['**/*.mjs', '**/*.js'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['**/*.test.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/unbound-method': 'off',
    },
  },
);
