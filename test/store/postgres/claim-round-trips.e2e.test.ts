import type { Sql } from 'postgres';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { claimOccurrence } from '../../../src/occurrence/claim.js';
import { PostgresStore } from '../../../src/store/postgres/postgres-store.js';
import { freshDatabase } from '../../helpers/pg-test.js';
import { adminQuery } from '../../helpers/postgres.js';
import { claimReq, makeJob, T0 } from '../fixtures.js';

// A claim decided on the fire path's own lock-free read is written by one compare-and-set statement; only
// when the job was written since that read does it take the row-lock transaction (a reserved connection,
// BEGIN ... COMMIT). Counting reserved connections tells the two apart from outside the store.
let url: string;
beforeAll(async () => {
  url = await freshDatabase('round_trips');
  await (await PostgresStore.open({ url })).close();
});

let store: PostgresStore | undefined;
afterEach(async () => {
  await store?.close();
  store = undefined;
});

async function openCounting(): Promise<{ store: PostgresStore; reserved: () => number }> {
  await adminQuery(url, 'TRUNCATE chronos_jobs, chronos_ledger, chronos_runs CASCADE');
  store = await PostgresStore.open({ url });
  const sql = (store as unknown as { sql: Sql }).sql;
  const reserve = sql.reserve.bind(sql);
  let count = 0;
  sql.reserve = () => {
    count += 1;
    return reserve();
  };
  return { store, reserved: () => count };
}

describe('PostgreSQL claim round trips', () => {
  it('claims without the row-lock transaction when nothing changed since the lock-free read', async () => {
    const { store, reserved } = await openCounting();
    await store.createJob(makeJob('a'));
    const result = await claimOccurrence(store, claimReq('a', T0 + 60_000, { run_id: 'run-1' }));
    expect(result.outcome).toBe('claimed');
    expect(reserved()).toBe(0);
    expect((await store.getLedgerEntry('a', T0 + 60_000))?.run_id).toBe('run-1');
    expect((await store.getJob('a'))?.repeat.completed).toBe(1);
    // A duplicate is answered from the lock-free read alone.
    expect((await claimOccurrence(store, claimReq('a', T0 + 60_000))).outcome).toBe('duplicate');
    expect(reserved()).toBe(0);
  });

  it('takes the row-lock transaction when the job was written after the read, and decides on fresh state', async () => {
    const { store, reserved } = await openCounting();
    await store.createJob(makeJob('a'));
    const basis = await store.peek('a');
    // Another replica claims the occurrence meanwhile.
    const theirs = await claimOccurrence(store, claimReq('a', T0 + 60_000, { run_id: 'theirs' }));
    if (theirs.outcome !== 'claimed') throw new Error(`expected a claim, got ${theirs.outcome}`);
    const claimed = theirs.entry;
    const before = reserved();
    const outcome = await store.transact(
      'a',
      (view) =>
        view.entry(T0 + 60_000)
          ? { result: `duplicate of ${view.entry(T0 + 60_000)?.run_id}` }
          : { job: view.job!, ledger: [{ ...claimed, run_id: 'ours' }], result: 'claimed' },
      { basis },
    );
    expect(outcome).toBe('duplicate of theirs');
    expect(reserved()).toBe(before + 1);
    expect((await store.getLedgerEntry('a', T0 + 60_000))?.run_id).toBe('theirs');
  });
});
