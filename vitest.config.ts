import { defineConfig } from 'vitest/config';

// One vitest run covers every package, every service and the cross-process suites under test/.
// Suites that need Docker live under test/compose and are run by `.ci/run` through `pnpm test:compose`.
export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'services/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['**/node_modules/**', 'test/compose/**'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    coverage: {
      provider: 'v8',
      include: ['packages/*/src/**/*.ts', 'services/*/src/**/*.ts'],
      // server.ts files only parse argv, listen and handle signals; they run in child processes, where
      // in-process v8 coverage cannot see them. Their logic lives in app.ts/config.ts, which is covered.
      exclude: ['**/src/server.ts', 'packages/cli/bin/**'],
      reporter: ['text-summary', 'json-summary'],
      reportsDirectory: 'coverage',
      thresholds: { lines: 95 },
    },
  },
});
