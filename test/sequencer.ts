import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/*
 * The order files start in. Vitest's own order runs the files that took longest in the previous run first,
 * which keeps a long file from starting last and ending alone; but that needs the previous run's results
 * (node_modules/.vite), and a clean clone has none, so it orders by file size, which says little about an
 * end-to-end file's length (they wait on real timers). For files without a previous result, the files
 * below, the longest of a full run (docs/performance.md, "Test suite"), go first, longest first.
 */
const LONGEST_FIRST = [
  'test/e2e/pg-replicas.test.ts',
  'test/e2e/floods.test.ts',
  'test/e2e/strict-nas.test.ts',
  'test/e2e/alerts.test.ts',
  'test/e2e/pg-restart.test.ts',
  'test/e2e/duplicates.test.ts',
  'test/e2e/damaged-store.test.ts',
  'test/e2e/full-loop.test.ts',
  'test/cli/observe.e2e.test.ts',
  'test/e2e/awake.test.ts',
  'test/ui/status-page.e2e.test.ts',
  'test/store/postgres/crash.e2e.test.ts',
  'test/cli/first-hour.e2e.test.ts',
  'test/e2e/stale-lock.test.ts',
];

export class LongestFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const root = this.ctx.config.root;
    const path = (spec: TestSpecification) => relative(root, spec.moduleId).replaceAll('\\', '/');
    const known = (spec: TestSpecification) =>
      this.ctx.cache.getFileTestResults(`${spec.project.name}:${path(spec)}`) !== undefined;
    if (sorted.every(known)) return sorted;
    const rank = (spec: TestSpecification) => {
      const at = LONGEST_FIRST.indexOf(path(spec));
      return at === -1 ? LONGEST_FIRST.length : at;
    };
    // Array.prototype.sort is stable: files outside the list keep vitest's order among themselves.
    return sorted.sort((a, b) => rank(a) - rank(b));
  }
}
