import type { Sql } from 'postgres';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { claimFire, type FireOutcome } from '../../../src/occurrence/claim.js';
import { currentOwner } from '../../../src/store/owner.js';
import { PostgresStore } from '../../../src/store/postgres/postgres-store.js';
import type { JobTxnView } from '../../../src/store/store.js';
import { freshDatabase } from '../../helpers/pg-test.js';
import { adminQuery } from '../../helpers/postgres.js';
import { deadOwner, makeJob, makeRun, T0 } from '../fixtures.js';

// A warm process remembers the jobs it read and wrote (with their row version): a delivery's claim is then
// decided without a read and written by one compare-and-set, and a read of an unchanged job carries its
// version instead of its document. What is remembered must never be served once another replica (or a
// hand edit) changed the row: these tests change it behind the remembering store's back.
let url: string;
beforeAll(async () => {
  url = await freshDatabase('remembered');
  await (await PostgresStore.open({ url })).close();
});

const opened: PostgresStore[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

interface Counted {
  store: PostgresStore;
  /** Statements sent outside a transaction, and reserved connections (row-lock transactions), so far. */
  counts: () => { statements: number; reserved: number };
}

async function open(): Promise<Counted> {
  const store = await PostgresStore.open({ url });
  opened.push(store);
  const inner = store as unknown as {
    sql: Sql;
    query: (what: string, run: (sql: Sql) => Promise<unknown>) => Promise<unknown>;
  };
  let statements = 0;
  let reserved = 0;
  const query = inner.query.bind(store);
  inner.query = (what, run) => {
    statements += 1;
    return query(what, run);
  };
  const reserve = inner.sql.reserve.bind(inner.sql);
  inner.sql.reserve = () => {
    reserved += 1;
    return reserve();
  };
  return { store, counts: () => ({ statements, reserved }) };
}

/** Two replicas on one database, with job `a` created through `ours` (so it remembers it). */
async function replicas(): Promise<{ ours: Counted; theirs: PostgresStore }> {
  await adminQuery(url, 'TRUNCATE chronos_jobs, chronos_ledger, chronos_runs CASCADE');
  const ours = await open();
  const theirs = (await open()).store;
  await ours.store.createJob(makeJob('a'));
  return { ours, theirs };
}

const AT = T0 + 60_000;

function deliver(store: PostgresStore, fireAt = AT, now = AT, owner = currentOwner()): Promise<FireOutcome> {
  return claimFire(store, { job_id: 'a', fire_at: fireAt, trigger: 'nas', now, owner });
}

/** The statements one call sends, counted. */
async function counting<T>(
  c: Counted,
  call: () => Promise<T>,
): Promise<{ value: T; statements: number; reserved: number }> {
  const before = c.counts();
  const value = await call();
  const after = c.counts();
  return {
    value,
    statements: after.statements - before.statements,
    reserved: after.reserved - before.reserved,
  };
}

describe('PostgreSQL: jobs remembered by a warm process', () => {
  it('claims a remembered job with one statement, and answers its duplicate from one read', async () => {
    const { ours } = await replicas();
    const claim = await counting(ours, () => deliver(ours.store));
    expect(claim.value.kind).toBe('accepted');
    expect(claim).toMatchObject({ statements: 1, reserved: 0 });
    const runId = claim.value.kind === 'accepted' ? claim.value.accepted.run_id : '';
    expect((await ours.store.getLedgerEntry('a', AT))?.run_id).toBe(runId);
    expect((await ours.store.getJob('a'))?.next_run_at).toBe(AT + 60_000);

    const duplicate = await counting(ours, () => deliver(ours.store, AT, AT + 1_000));
    expect(duplicate.value).toMatchObject({ kind: 'duplicate', entry: { run_id: runId } });
    expect(duplicate).toMatchObject({ statements: 1, reserved: 0 });
  });

  it('answers duplicate, in one statement, for an occurrence another replica claimed since it was remembered', async () => {
    const { ours, theirs } = await replicas();
    const their = await deliver(theirs);
    if (their.kind !== 'accepted') throw new Error(`expected their claim, got ${their.kind}`);
    const row = await theirs.getLedgerEntry('a', AT);

    const mine = await counting(ours, () => deliver(ours.store));
    expect(mine.value).toMatchObject({ kind: 'duplicate', entry: { run_id: their.accepted.run_id } });
    expect(mine).toMatchObject({ statements: 1, reserved: 0 });
    expect(await theirs.getLedgerEntry('a', AT)).toEqual(row);
    expect((await theirs.getJob('a'))?.repeat.completed).toBe(1);
  });

  it('claims on the job as it is now when another replica changed it since (two statements)', async () => {
    const { ours, theirs } = await replicas();
    await theirs.updateJob('a', (job) => ({ ...job, name: 'renamed elsewhere' }));
    const mine = await counting(ours, () => deliver(ours.store));
    expect(mine.value.kind).toBe('accepted');
    expect(mine).toMatchObject({ statements: 2, reserved: 0 });
    // The claim advanced the job as the other replica left it, not as remembered.
    expect(await theirs.getJob('a')).toMatchObject({ name: 'renamed elsewhere', next_run_at: AT + 60_000 });
  });

  it('answers from the job as it is now when it was paused, moved on or removed elsewhere', async () => {
    const paused = await replicas();
    await paused.theirs.updateJob('a', (job) => ({ ...job, state: 'paused', enabled: false }));
    expect((await deliver(paused.ours.store)).kind).toBe('inactive');
    expect(await paused.theirs.getLedgerEntry('a', AT)).toBeUndefined();

    const moved = await replicas();
    await moved.theirs.updateJob('a', (job) => ({ ...job, next_run_at: AT + 120_000 }));
    expect((await deliver(moved.ours.store)).kind).toBe('stale');
    expect(await moved.theirs.getLedgerEntry('a', AT)).toBeUndefined();

    const removed = await replicas();
    await removed.theirs.removeJob('a');
    expect((await deliver(removed.ours.store)).kind).toBe('gone');
    expect(await removed.theirs.getJob('a')).toBeUndefined();
  });

  it('never runs again an occurrence another replica claimed and started before it died; takes over one it never started', async () => {
    for (const started of [true, false]) {
      const { ours, theirs } = await replicas();
      const their = await deliver(theirs, AT, AT, await deadOwner());
      if (their.kind !== 'accepted') throw new Error(`expected their claim, got ${their.kind}`);
      if (started) await theirs.appendRun(makeRun('a', their.accepted.run_id, { fire_at: AT }));
      // NAS delivers the occurrence again, to us: we remember the job from before their claim.
      const mine = await deliver(ours.store, AT, AT + 1_000);
      if (started) {
        expect(mine).toMatchObject({ kind: 'duplicate', entry: { run_id: their.accepted.run_id } });
        expect((await theirs.getLedgerEntry('a', AT))?.run_id).toBe(their.accepted.run_id);
      } else {
        expect(mine).toMatchObject({ kind: 'accepted', accepted: { recovered: true } });
        const runId = mine.kind === 'accepted' ? mine.accepted.run_id : '';
        expect((await theirs.getLedgerEntry('a', AT))?.run_id).toBe(runId);
        // Taken over, not counted twice.
        expect((await theirs.getJob('a'))?.repeat.completed).toBe(1);
      }
    }
  });

  it('never serves a remembered document once the row changed by hand, damaged or not', async () => {
    const { ours } = await replicas();
    expect((await ours.store.peek('a', AT)).job?.name).toBe('a');
    await adminQuery(
      url,
      `UPDATE chronos_jobs SET doc = jsonb_set(doc, '{name}', '"edited"') WHERE id = 'a'`,
    );
    expect((await ours.store.peek('a', AT)).job?.name).toBe('edited');
    expect((await ours.store.listJobs()).map((job) => job.name)).toEqual(['edited']);

    await adminQuery(
      url,
      `UPDATE chronos_jobs SET doc = jsonb_set(doc, '{next_run_at}', '"soon"') WHERE id = 'a'`,
    );
    await expect(deliver(ours.store)).rejects.toMatchObject({ code: 'store_corrupt' });
    await expect(ours.store.peek('a', AT)).rejects.toMatchObject({ code: 'store_corrupt' });
    expect(await ours.store.getLedgerEntry('a', AT)).toBeUndefined();
  });
});

describe('PostgreSQL: reads of one instant asked for at once', () => {
  it('go out together while one is on the wire, each answered from its own rows, a damaged job failing only its own read', async () => {
    await adminQuery(url, 'TRUNCATE chronos_jobs, chronos_ledger, chronos_runs CASCADE');
    const c = await open();
    const { store } = c;
    for (const id of ['a', 'b', 'c', 'd']) await store.createJob(makeJob(id));
    const claimed = await deliver(store);
    if (claimed.kind !== 'accepted') throw new Error(`expected a claim, got ${claimed.kind}`);
    // 'c' changed by hand behind the store's back, 'd' damaged: neither may be answered as remembered.
    await adminQuery(
      url,
      `UPDATE chronos_jobs SET doc = jsonb_set(doc, '{name}', '"edited"') WHERE id = 'c'`,
    );
    await adminQuery(
      url,
      `UPDATE chronos_jobs SET doc = jsonb_set(doc, '{next_run_at}', '"soon"') WHERE id = 'd'`,
    );

    const reads = await counting(c, () =>
      Promise.allSettled([
        store.peek('a', AT),
        store.peek('b', AT),
        store.peek('c', AT),
        store.peek('d', AT),
        store.peek('gone', AT),
        store.peek('a', AT + 60_000),
      ]),
    );
    // The first read goes out at once, alone; the five asked for while it was on the wire, as one.
    expect(reads.statements).toBe(2);
    const [a, b, cc, d, gone, aLater] = reads.value;
    const view = (r: PromiseSettledResult<JobTxnView> | undefined) => {
      if (r?.status !== 'fulfilled') throw new Error(`expected a view, got ${String(r?.status)}`);
      return r.value;
    };
    expect(view(a).entry(AT)?.run_id).toBe(claimed.accepted.run_id);
    expect(view(a).job?.next_run_at).toBe(AT + 60_000);
    expect(view(b).entry(AT)).toBeUndefined();
    expect(view(b).job?.name).toBe('b');
    expect(view(cc).job?.name).toBe('edited');
    expect(d).toMatchObject({ status: 'rejected', reason: { code: 'store_corrupt' } });
    expect(view(gone).job).toBeUndefined();
    expect(view(aLater).entry(AT + 60_000)).toBeUndefined();
  });
});
