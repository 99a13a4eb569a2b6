import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { claimOccurrence } from '../../src/occurrence/claim.js';
import { settleOccurrence } from '../../src/occurrence/settle.js';
import { FileStore } from '../../src/store/file-store.js';
import { PostgresStore } from '../../src/store/postgres/postgres-store.js';
import { freshDatabase } from '../helpers/pg-test.js';
import { runCli } from '../helpers/run-cli.js';
import { claimReq, makeJob, makeRun, T0 } from '../store/fixtures.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function seededDataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'chronos-copy-'));
  dirs.push(dir);
  const store = await FileStore.open({ dir });
  try {
    await store.createJob(makeJob('alpha'));
    await store.createJob(makeJob('beta', { name: 'Beta' }));
    for (const fireAt of [T0 + 60_000, T0 + 120_000]) {
      await claimOccurrence(store, claimReq('alpha', fireAt, { run_id: `run-${fireAt}` }));
      await store.appendRun(makeRun('alpha', `run-${fireAt}`, { fire_at: fireAt, status: 'succeeded' }));
      await settleOccurrence(store, 'alpha', fireAt, 'finished');
    }
    // One still claimed: its row must arrive as it is, for boot recovery to find.
    await claimOccurrence(store, claimReq('beta', T0 + 60_000, { run_id: 'beta-open' }));
  } finally {
    await store.close();
  }
  return dir;
}

describe('chronos store copy --from <data dir> --to <database url>', () => {
  it('copies jobs, ledger and run history; a second run changes nothing', async () => {
    const dir = await seededDataDir();
    const url = await freshDatabase('copy');
    const first = await runCli(['store', 'copy', '--from', dir, '--to', url]);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toContain(
      'jobs: 2 copied, 0 updated, 0 already there; 3 ledger rows and 2 runs added',
    );

    const source = await FileStore.open({ dir });
    const target = await PostgresStore.open({ url });
    try {
      expect(await target.listJobs()).toEqual(await source.listJobs());
      for (const fireAt of [T0 + 60_000, T0 + 120_000]) {
        expect(await target.getLedgerEntry('alpha', fireAt)).toEqual(
          await source.getLedgerEntry('alpha', fireAt),
        );
      }
      expect(await target.listClaimed()).toEqual(await source.listClaimed());
      expect(await target.listRuns('alpha')).toEqual(await source.listRuns('alpha'));
    } finally {
      await source.close();
      await target.close();
    }

    const second = await runCli(['store', 'copy', '--from', dir, '--to', url]);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain(
      'jobs: 0 copied, 0 updated, 2 already there; 0 ledger rows and 0 runs added',
    );
  });

  it('refuses to overwrite a job changed in the database since, and copies the others', async () => {
    const dir = await seededDataDir();
    const url = await freshDatabase('copy_newer');
    expect((await runCli(['store', 'copy', '--from', dir, '--to', url])).code).toBe(0);
    const target = await PostgresStore.open({ url });
    try {
      await target.updateJob('alpha', (j) => ({
        ...j,
        name: 'renamed in the database',
        updated_at: T0 + 999_999,
      }));
    } finally {
      await target.close();
    }
    // And a change in the source to a job the database has not changed: that one is taken.
    const source = await FileStore.open({ dir });
    await source.updateJob('beta', (j) => ({ ...j, name: 'Beta 2', updated_at: T0 + 5 }));
    await source.close();

    const again = await runCli(['store', 'copy', '--from', dir, '--to', url]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/not copied: job alpha: newer in the target/);
    expect(again.stdout).toContain('jobs: 0 copied, 1 updated, 0 already there');
    const check = await PostgresStore.open({ url });
    try {
      expect((await check.getJob('alpha'))?.name).toBe('renamed in the database');
      expect((await check.getJob('beta'))?.name).toBe('Beta 2');
    } finally {
      await check.close();
    }
  });

  it('says what is missing', async () => {
    const result = await runCli(['store', 'copy', '--from', '/nonexistent']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--to <database url> is required/);
  });
});
