import { defineConfig } from 'vitest/config';

// Two projects. `e2e`: test/e2e/** and any *.e2e.test.ts, i.e. tests that start a child process running
// Chronos (the production bundle dist/, the CLI, a second store process) or a container; only they need
// dist/, so only they run the global setup that builds it. `unit`: everything else, in-process.
const E2E = ['test/e2e/**/*.test.ts', 'test/**/*.e2e.test.ts'];

export default defineConfig({
  test: {
    pool: 'forks',
    // Vitest's default on a 2-core machine is one file at a time; the end-to-end files spend most of their
    // time waiting on timers and child processes, so three run side by side (VITEST_MAX_FORKS overrides).
    poolOptions: { forks: { maxForks: 3, minForks: 1 } },
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ['default'],
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['test/**/*.test.ts'], exclude: E2E },
      },
      {
        extends: true,
        test: { name: 'e2e', include: E2E, globalSetup: ['test/global-setup.ts'] },
      },
    ],
  },
});
