import { defineConfig } from 'vitest/config';
import { LongestFirstSequencer } from './test/sequencer.js';

// Two projects. `e2e`: test/e2e/** and any *.e2e.test.ts, i.e. tests that start a child process running
// Chronos (the production bundle dist/, the CLI, a second store process) or a container; only they need
// dist/, so only they run the global setup that builds it. `unit`: everything else, in-process.
const E2E = ['test/e2e/**/*.test.ts', 'test/**/*.e2e.test.ts'];

// Vitest's default on a 2-core machine is one file at a time; the end-to-end files spend most of their
// time waiting on timers and child processes, so three run side by side (VITEST_MAX_FORKS overrides). Four
// were faster on a quiet machine (168 s against 192 s), but with four, two of six clean full runs failed
// timing-bound e2e tests: docs/performance.md, "Test suite".
const FORKS = Number(process.env.VITEST_MAX_FORKS ?? 3);

export default defineConfig({
  test: {
    pool: 'forks',
    poolOptions: {
      forks: {
        // Worker processes are reused from file to file: a new process per file, with its own import of
        // Fastify, pino, zod and the source, cost the unit project about half of its CPU time. Each file
        // still gets fresh modules unless its project says otherwise (below).
        isolate: false,
        // As many workers at least as at most: tinypool stops a worker that falls idle while it has more
        // than minForks, and with reused workers that stop can overlap the previous one's and end the run
        // with an unhandled "Terminating worker thread" rejection (docs/performance.md, "Test suite").
        maxForks: FORKS,
        minForks: FORKS,
      },
    },
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ['default'],
    // The longest end-to-end files start first, also on a clean clone (test/sequencer.ts).
    sequence: { sequencer: LongestFirstSequencer },
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: E2E,
          // The unit files share modules within a worker (no per-file re-import): none of them mocks a
          // module or changes global state for good, and ten runs in a row showed no failure from sharing.
          poolOptions: { forks: { isolate: false } },
          // Before e2e (otherwise the longest e2e files sort first): `npm run check` runs tsc beside the
          // tests, and its CPU is better spent beside this CPU-bound project than beside the e2e files,
          // which wait on real timers and fail when starved.
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: E2E,
          // Fresh modules per file: these files hold per-file state in their helpers (the bundle snapshot,
          // the PostgreSQL handle) and import little, so re-importing costs them almost nothing.
          poolOptions: { forks: { isolate: true } },
          sequence: { groupOrder: 1 },
          // test/postgres-setup.ts: one PostgreSQL server for the run, shared by the PostgreSQL store tests.
          globalSetup: ['test/global-setup.ts', 'test/postgres-setup.ts'],
        },
      },
    ],
  },
});
