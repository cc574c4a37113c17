import { defineConfig } from 'vitest/config';

// One vitest run covers every package, every service and the cross-process suites under test/.
// `pnpm test` (the README's command) runs every suite that needs only Node. Suites that need packages from
// apt (SoftHSM2 for PKCS#11, the AWS CLI) are named *.apt.test.ts and run when COSIGNER_APT_SUITES=1, which
// `pnpm coverage` sets and `.ci/run` uses after installing them. Suites that need a Docker engine are named
// *.docker.test.ts and run with COSIGNER_DOCKER_SUITES=1 (`pnpm test:docker`, after `.ci/docker.sh`). Suites
// that drive a real browser (Debian's chromium at /usr/bin/chromium, through playwright-core) are named
// *.browser.test.ts and run with COSIGNER_BROWSER_SUITES=1 (`pnpm test:browser`).
const withApt = process.env.COSIGNER_APT_SUITES === '1';
const withBrowser = process.env.COSIGNER_BROWSER_SUITES === '1';
const withDocker = process.env.COSIGNER_DOCKER_SUITES === '1';

export default defineConfig({
  test: {
    include: [
      'apps/*/test/**/*.test.ts',
      'packages/*/test/**/*.test.ts',
      'services/*/test/**/*.test.ts',
      'test/**/*.test.ts',
    ],
    exclude: [
      '**/node_modules/**',
      ...(withApt ? [] : ['**/*.apt.test.ts']),
      ...(withDocker ? [] : ['**/*.docker.test.ts']),
      ...(withBrowser ? [] : ['**/*.browser.test.ts']),
    ],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    coverage: {
      provider: 'v8',
      include: ['apps/*/src/**/*.ts', 'packages/*/src/**/*.ts', 'services/*/src/**/*.ts'],
      // server.ts files only parse argv, listen and handle signals; they run in child processes, where
      // in-process v8 coverage cannot see them. Their logic lives in app.ts/config.ts, which is covered.
      exclude: ['**/src/server.ts', 'apps/cli/bin/**'],
      reporter: ['text-summary', 'json-summary'],
      reportsDirectory: 'coverage',
      thresholds: { lines: 95 },
    },
  },
});
