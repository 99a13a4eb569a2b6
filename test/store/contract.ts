import { describe, expect, it } from 'vitest';
import type { Job } from '../../src/jobs/model.js';
import { claimOccurrence, recordOccurrence } from '../../src/occurrence/claim.js';
import { settleOccurrence } from '../../src/occurrence/settle.js';
import { currentOwner } from '../../src/store/owner.js';
import type { LedgerEntry, Store } from '../../src/store/store.js';
import { nested } from '../helpers/nested.js';
import { claimReq, deadOwner, makeJob, makeRun, T0 } from './fixtures.js';

export interface StoreHarness {
  store: Store;
  /** Closes `store` and opens the same backing storage again (durable stores only). */
  reopen?: () => Promise<Store>;
  /**
   * Stores that read back what they wrote: make the stored job `id` (or its run history) unreadable the way
   * this backing storage can be damaged, then return a freshly opened store over it.
   */
  damageJob?: (id: string) => Promise<Store>;
  damageHistory?: (id: string) => Promise<Store>;
  cleanup: () => Promise<void>;
}

/** Retentions the harness must configure so the retention tests stay small. */
export const CONTRACT_RUN_RETENTION = 5;
export const CONTRACT_LEDGER_RETENTION = 4;

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  await expect(promise).rejects.toMatchObject({ name: 'ChronosError', code });
}

function settledRow(jobId: string, fireAt: number, status: LedgerEntry['status']): LedgerEntry {
  return {
    job_id: jobId,
    fire_at: fireAt,
    status,
    trigger: 'builtin',
    run_id: `r-${fireAt}`,
    owner: currentOwner(),
    claimed_at: T0,
    expires_at: T0 + 1000,
  };
}

/**
 * Behaviour every Store must share (docs/architecture.md, Invariants). `makeStore` must use CONTRACT_RUN_RETENTION and
 * CONTRACT_LEDGER_RETENTION.
 */
export function storeContract(name: string, makeStore: () => Promise<StoreHarness>): void {
  async function withStore(fn: (h: StoreHarness) => Promise<void>): Promise<void> {
    const h = await makeStore();
    try {
      await fn(h);
    } finally {
      await h.cleanup();
    }
  }

  describe(`Store contract: ${name}`, () => {
    describe('jobs', () => {
      it('creates, reads, lists, updates and removes jobs', () =>
        withStore(async ({ store }) => {
          expect(await store.getJob('a')).toBeUndefined();
          await store.createJob(makeJob('a'));
          await store.createJob(makeJob('b', { name: 'Bee' }));
          expect(await store.getJob('a')).toEqual(makeJob('a'));
          expect((await store.listJobs()).map((j) => j.id).sort()).toEqual(['a', 'b']);

          const updated = await store.updateJob('b', (j) => ({ ...j, enabled: false, updated_at: T0 + 5 }));
          expect(updated).toMatchObject({ id: 'b', enabled: false, updated_at: T0 + 5 });
          expect(await store.getJob('b')).toEqual(updated);
          expect((await store.listJobs()).find((j) => j.id === 'b')).toEqual(updated);

          expect(await store.removeJob('a')).toBe(true);
          expect(await store.removeJob('a')).toBe(false);
          expect(await store.getJob('a')).toBeUndefined();
          expect((await store.listJobs()).map((j) => j.id)).toEqual(['b']);
        }));

      it('rejects a taken id with job_exists and a missing job with job_not_found', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          await expectCode(store.createJob(makeJob('a', { name: 'other' })), 'job_exists');
          expect((await store.getJob('a'))?.name).toBe('a');
          await expectCode(
            store.updateJob('nope', (j) => j),
            'job_not_found',
          );
          await expectCode(
            store.updateRun('a', 'no-run', (r) => r),
            'job_not_found',
          );
          await expectCode(store.appendRun(makeRun('nope', 'r1')), 'job_not_found');
        }));

      it('never lets callers mutate stored state through references', () =>
        withStore(async ({ store }) => {
          const job = makeJob('a');
          const created = await store.createJob(job);
          job.name = 'mutated input';
          created.name = 'mutated result';
          const read = await store.getJob('a');
          read!.repeat.completed = 99;
          const listed = await store.listJobs();
          listed[0]!.target = { type: 'handler', name: 'evil' };
          expect(await store.getJob('a')).toEqual(makeJob('a'));

          const result = await claimOccurrence(store, claimReq('a', T0 + 60_000));
          if (result.outcome !== 'claimed') throw new Error(result.outcome);
          result.entry.status = 'finished';
          result.job.next_run_at = 1;
          const claimed = await store.listClaimed();
          claimed[0]!.status = 'missed';
          expect((await store.getLedgerEntry('a', T0 + 60_000))?.status).toBe('claimed');
          expect((await store.getJob('a'))?.next_run_at).toBe(T0 + 120_000);

          const run = makeRun('a', 'r1');
          await store.appendRun(run);
          run.status = 'failed';
          const runs = await store.listRuns('a');
          runs[0]!.status = 'failed';
          expect((await store.getRun('a', 'r1'))?.status).toBe('running');
        }));

      it('peeks at a job and its ledger in one read, as copies', () =>
        withStore(async ({ store }) => {
          expect((await store.peek('a')).job).toBeUndefined();
          await store.createJob(makeJob('a'));
          const result = await claimOccurrence(store, claimReq('a', T0 + 60_000));
          if (result.outcome !== 'claimed') throw new Error(result.outcome);
          const view = await store.peek('a');
          expect(view.job?.next_run_at).toBe(T0 + 120_000);
          expect(view.entry(T0 + 60_000)).toMatchObject({ status: 'claimed', run_id: result.entry.run_id });
          expect(view.entry(T0)).toBeUndefined();
          expect(view.claimed()).toHaveLength(1);
          view.job!.next_run_at = 1;
          view.entry(T0 + 60_000)!.status = 'missed';
          expect((await store.getJob('a'))?.next_run_at).toBe(T0 + 120_000);
          expect((await store.getLedgerEntry('a', T0 + 60_000))?.status).toBe('claimed');
          expect((await store.peek('../x')).job).toBeUndefined();
        }));

      it('peeks for one instant: the job and its row as a whole read has them, and never a guess for the rest', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          // Twice the retention of settled rows (the oldest trimmed), two claims left running, one in between.
          await claimOccurrence(store, claimReq('a', 1));
          for (let fireAt = 10; fireAt < 10 + 2 * CONTRACT_LEDGER_RETENTION; fireAt++) {
            await claimOccurrence(store, claimReq('a', fireAt));
            await settleOccurrence(store, 'a', fireAt, 'finished');
            if (fireAt === 12) await claimOccurrence(store, claimReq('a', 5));
          }
          const whole = await store.peek('a');
          const latest = 9 + 2 * CONTRACT_LEDGER_RETENTION;
          expect(whole.latest()?.fire_at).toBe(latest);
          expect(whole.claimed().map((row) => row.fire_at)).toEqual([5, 1]);
          const instants = [0, 1, 2, 5, 10, 12, latest - 1, latest, latest + 1];
          const orRefused = <T>(ask: () => T): T | 'refused' => {
            try {
              return ask();
            } catch {
              return 'refused';
            }
          };
          for (const asked of instants) {
            const view = await store.peek('a', asked);
            expect(view.job).toEqual(whole.job);
            expect(view.entry(asked)).toEqual(whole.entry(asked));
            // Anything else: what a whole read answers, or a refusal; never "no row" for a row that exists.
            for (const other of instants) {
              const seen = orRefused(() => view.entry(other));
              if (seen !== 'refused') expect(seen).toEqual(whole.entry(other));
            }
            const newest = orRefused(() => view.latest());
            if (newest !== 'refused') expect(newest).toEqual(whole.latest());
            const claimed = orRefused(() => view.claimed());
            if (claimed !== 'refused') expect(claimed).toEqual(whole.claimed());
          }
          expect((await store.peek('ghost', 1)).job).toBeUndefined();
        }));

      it('answers a claim decided on a peek for one instant as on a whole one (duplicate, claim, recovery)', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          for (let fireAt = 10; fireAt < 10 + 2 * CONTRACT_LEDGER_RETENTION; fireAt++) {
            await claimOccurrence(store, claimReq('a', fireAt));
            await settleOccurrence(store, 'a', fireAt, 'finished');
          }
          // A settled row within the retention is a duplicate, whatever else the job holds.
          const settledAt = 9 + 2 * CONTRACT_LEDGER_RETENTION;
          expect((await claimOccurrence(store, claimReq('a', settledAt))).outcome).toBe('duplicate');
          // A claim whose owner died is recovered (not claimed afresh, not a duplicate).
          await claimOccurrence(store, claimReq('a', 100, { owner: await deadOwner() }));
          const recovered = await claimOccurrence(store, claimReq('a', 100));
          expect(recovered.outcome).toBe('recovered');
          const fresh = await claimOccurrence(store, claimReq('a', 101));
          expect(fresh.outcome).toBe('claimed');
          // Claims never count towards the retention: every settled row the retention keeps is still there.
          const whole = await store.peek('a');
          const settled = Array.from({ length: 2 * CONTRACT_LEDGER_RETENTION }, (_, i) => 10 + i).filter(
            (at) => whole.entry(at)?.status === 'finished',
          );
          expect(settled).toHaveLength(CONTRACT_LEDGER_RETENTION);
          expect(
            whole
              .claimed()
              .map((row) => row.fire_at)
              .sort((x, y) => x - y),
          ).toEqual([100, 101]);
        }));

      it('loses no row when claims on lock-free reads race settles of the same job', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          const n = 12;
          for (let i = 0; i < n; i++) await claimOccurrence(store, claimReq('a', 1000 + i));
          // Each settle rewrites the job under its lock while the claims decide on reads that may be older.
          const outcomes = await Promise.all([
            ...Array.from({ length: n }, (_, i) => settleOccurrence(store, 'a', 1000 + i, 'finished')),
            ...Array.from({ length: n }, (_, i) => claimOccurrence(store, claimReq('a', 2000 + i))),
          ]);
          expect(outcomes.slice(n).map((o) => (o as { outcome: string }).outcome)).toEqual(
            Array.from({ length: n }, () => 'claimed'),
          );
          const whole = await store.peek('a');
          expect(
            whole
              .claimed()
              .map((row) => row.fire_at)
              .sort((x, y) => x - y),
          ).toEqual(Array.from({ length: n }, (_, i) => 2000 + i));
          const settled = Array.from({ length: n }, (_, i) => 1000 + i).filter(
            (at) => whole.entry(at)?.status === 'finished',
          );
          // The newest settled rows, as many as the retention keeps.
          expect(settled).toEqual(
            Array.from(
              { length: CONTRACT_LEDGER_RETENTION },
              (_, i) => 1000 + n - CONTRACT_LEDGER_RETENTION + i,
            ),
          );
          expect(whole.job?.repeat.completed).toBe(2 * n);
        }));

      it('returns nothing for ids that cannot be job ids', () =>
        withStore(async ({ store }) => {
          expect(await store.getJob('../etc/passwd')).toBeUndefined();
          expect(await store.getLedgerEntry('../x', 1)).toBeUndefined();
          expect(await store.listRuns('../x')).toEqual([]);
          expect(await store.removeJob('../x')).toBe(false);
        }));
    });

    describe('transact', () => {
      it('loses no update under 40 concurrent read-modify-writes', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          await Promise.all(
            Array.from({ length: 40 }, () =>
              store.transact('a', (view) => {
                const job = view.job!;
                return { job: { ...job, failure_streak: job.failure_streak + 1 }, result: undefined };
              }),
            ),
          );
          expect((await store.getJob('a'))?.failure_streak).toBe(40);
        }));

      it('writes nothing when fn returns only a result, and passes the result through', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          const result = await store.transact('a', (view) => ({ result: view.job?.name }));
          expect(result).toBe('a');
          expect(await store.getJob('a')).toEqual(makeJob('a'));
        }));

      it('writes nothing when fn throws', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          await expect(
            store.transact('a', () => {
              throw new Error('boom');
            }),
          ).rejects.toThrow('boom');
          expect(await store.getJob('a')).toEqual(makeJob('a'));
          // The store is still usable afterwards (no lock left behind).
          await store.updateJob('a', (j) => ({ ...j, name: 'after' }));
          expect((await store.getJob('a'))?.name).toBe('after');
        }));

      it('sees a missing job as undefined and refuses ledger rows without a job', () =>
        withStore(async ({ store }) => {
          expect(await store.transact('ghost', (view) => ({ result: view.job }))).toBeUndefined();
          await expectCode(
            store.transact('ghost', () => ({ ledger: [settledRow('ghost', 1, 'missed')], result: 0 })),
            'job_not_found',
          );
          // ...but a write may create the job.
          await store.transact('born', () => ({ job: makeJob('born'), result: 0 }));
          expect((await store.getJob('born'))?.id).toBe('born');
        }));

      it('writes the job and its ledger rows together', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          await store.transact('a', (view) => ({
            job: { ...view.job!, next_run_at: 42 },
            ledger: [settledRow('a', 10, 'skipped'), settledRow('a', 11, 'missed')],
            result: undefined,
          }));
          expect((await store.getJob('a'))?.next_run_at).toBe(42);
          expect((await store.getLedgerEntry('a', 10))?.status).toBe('skipped');
          const seen = await store.transact('a', (view) => ({
            result: [view.entry(11)?.status, view.entry(12), view.claimed().length],
          }));
          expect(seen).toEqual(['missed', undefined, 0]);
        }));
    });

    describe("transact on a basis (the caller's peek)", () => {
      it('writes on a basis nothing has changed since, job and ledger row together', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          const basis = await store.peek('a');
          await store.transact(
            'a',
            (view) => ({
              job: { ...view.job!, failure_streak: view.job!.failure_streak + 1 },
              ledger: [settledRow('a', 10, 'skipped')],
              result: undefined,
            }),
            { basis },
          );
          expect((await store.getJob('a'))?.failure_streak).toBe(1);
          expect((await store.getLedgerEntry('a', 10))?.status).toBe('skipped');
        }));

      it('decides again on fresh state when the job was written after the basis was read', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          const stale = await store.peek('a');
          await store.transact('a', (view) => ({
            job: { ...view.job!, failure_streak: 5 },
            ledger: [settledRow('a', 10, 'skipped')],
            result: undefined,
          }));
          const seen = await store.transact(
            'a',
            (view) => ({
              job: { ...view.job!, failure_streak: view.job!.failure_streak + 1 },
              result: [view.job!.failure_streak, view.entry(10)?.status],
            }),
            { basis: stale },
          );
          // What fn last decided on (and what was written) is the fresh state, not the basis.
          expect(seen).toEqual([5, 'skipped']);
          expect((await store.getJob('a'))?.failure_streak).toBe(6);
        }));

      it('decides again when only a ledger row was written after the basis was read', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          const stale = await store.peek('a');
          await store.transact('a', () => ({ ledger: [settledRow('a', 10, 'missed')], result: undefined }));
          const outcome = await store.transact(
            'a',
            (view) =>
              view.entry(10)
                ? { result: 'duplicate' }
                : { ledger: [settledRow('a', 10, 'skipped')], result: 'written' },
            { basis: stale },
          );
          expect(outcome).toBe('duplicate');
          expect((await store.getLedgerEntry('a', 10))?.status).toBe('missed');
        }));

      it('loses no update under 40 concurrent read-modify-writes, each on its own basis', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          await Promise.all(
            Array.from({ length: 40 }, async () => {
              const basis = await store.peek('a');
              await store.transact(
                'a',
                (view) => {
                  const job = view.job!;
                  return { job: { ...job, failure_streak: job.failure_streak + 1 }, result: undefined };
                },
                { basis },
              );
            }),
          );
          expect((await store.getJob('a'))?.failure_streak).toBe(40);
        }));
    });

    describe('claims', () => {
      it('claims an occurrence, advancing the job in the same write', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          const fireAt = T0 + 60_000;
          const result = await claimOccurrence(store, claimReq('a', fireAt, { run_id: 'run-1' }));
          expect(result.outcome).toBe('claimed');
          if (result.outcome !== 'claimed') return;
          expect(result.entry).toEqual({
            job_id: 'a',
            fire_at: fireAt,
            status: 'claimed',
            trigger: 'nas',
            run_id: 'run-1',
            owner: currentOwner(),
            claimed_at: T0,
            expires_at: T0 + 600_000,
          });
          expect(result.previous).toBeUndefined();
          const job = await store.getJob('a');
          expect(job?.next_run_at).toBe(fireAt + 60_000);
          expect(job?.repeat.completed).toBe(1);
          expect(await store.getLedgerEntry('a', fireAt)).toEqual(result.entry);
        }));

      it('admits exactly one of 50 concurrent claims of the same occurrence', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          const results = await Promise.all(
            Array.from({ length: 50 }, () => claimOccurrence(store, claimReq('a', T0 + 60_000))),
          );
          const outcomes = results.map((r) => r.outcome);
          expect(outcomes.filter((o) => o === 'claimed')).toHaveLength(1);
          expect(outcomes.filter((o) => o === 'duplicate')).toHaveLength(49);
          expect((await store.getJob('a'))?.repeat.completed).toBe(1);
        }));

      it('recovers a claim whose owner died', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          const fireAt = T0 + 60_000;
          const dead = await deadOwner();
          const first = await claimOccurrence(store, claimReq('a', fireAt, { owner: dead, run_id: 'old' }));
          expect(first.outcome).toBe('claimed');
          const again = await claimOccurrence(store, claimReq('a', fireAt, { run_id: 'new' }));
          expect(again.outcome).toBe('recovered');
          if (again.outcome !== 'recovered') return;
          expect(again.previous).toMatchObject({ run_id: 'old', owner: dead, status: 'claimed' });
          expect(again.entry).toMatchObject({ run_id: 'new', owner: currentOwner(), status: 'claimed' });
          // The advance is idempotent for this occurrence: not counted twice.
          expect(again.job.next_run_at).toBe(fireAt + 60_000);
          expect((await store.getLedgerEntry('a', fireAt))?.run_id).toBe('new');
          // Now owned by a live process: a third attempt is a duplicate.
          expect((await claimOccurrence(store, claimReq('a', fireAt))).outcome).toBe('duplicate');
        }));

      it('recovers a claim whose TTL expired even if its owner is alive', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          const fireAt = T0 + 60_000;
          await claimOccurrence(store, claimReq('a', fireAt, { ttl_ms: 1000 }));
          const before = await claimOccurrence(store, claimReq('a', fireAt, { now: T0 + 999 }));
          expect(before.outcome).toBe('duplicate');
          const after = await claimOccurrence(store, claimReq('a', fireAt, { now: T0 + 1000 }));
          expect(after.outcome).toBe('recovered');
        }));

      it('uses the given liveness check', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          await claimOccurrence(store, claimReq('a', T0));
          expect((await claimOccurrence(store, claimReq('a', T0), () => true)).outcome).toBe('duplicate');
          expect((await claimOccurrence(store, claimReq('a', T0), () => false)).outcome).toBe('recovered');
        }));

      it('answers duplicate after settle, even when the owner is dead or the TTL passed', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          const dead = await deadOwner();
          await claimOccurrence(store, claimReq('a', T0, { owner: dead, ttl_ms: 1 }));
          const settled = await settleOccurrence(store, 'a', T0, 'finished');
          expect(settled?.status).toBe('finished');
          const again = await claimOccurrence(store, claimReq('a', T0, { now: T0 + 10_000 }));
          expect(again).toMatchObject({ outcome: 'duplicate', entry: { status: 'finished' } });
        }));

      it('writes nothing when advance refuses', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          const result = await claimOccurrence(
            store,
            claimReq('a', T0, { advance: () => ({ refuse: 'stale' }) }),
          );
          expect(result).toMatchObject({ outcome: 'refused', reason: 'stale', job: { id: 'a' } });
          expect(await store.getLedgerEntry('a', T0)).toBeUndefined();
          expect(await store.getJob('a')).toEqual(makeJob('a'));
        }));

      it('reports job_missing for an unknown job', () =>
        withStore(async ({ store }) => {
          expect(await claimOccurrence(store, claimReq('ghost', T0))).toEqual({ outcome: 'job_missing' });
        }));

      it('settles and records occurrences', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          expect(await settleOccurrence(store, 'a', T0, 'finished')).toBeUndefined();
          expect(await settleOccurrence(store, 'ghost', T0, 'finished')).toBeUndefined();

          const recorded = await recordOccurrence(store, settledRow('a', T0, 'missed'));
          expect(recorded.outcome).toBe('recorded');
          expect((await store.getLedgerEntry('a', T0))?.status).toBe('missed');
          // Never replaces an existing row.
          const again = await recordOccurrence(store, settledRow('a', T0, 'skipped'));
          expect(again).toMatchObject({ outcome: 'duplicate', entry: { status: 'missed' } });
          expect((await claimOccurrence(store, claimReq('a', T0))).outcome).toBe('duplicate');

          const withAdvance = await recordOccurrence(store, settledRow('a', T0 + 1, 'skipped'), (j) => ({
            ...j,
            next_run_at: 7,
          }));
          expect(withAdvance.outcome).toBe('recorded');
          expect((await store.getJob('a'))?.next_run_at).toBe(7);
          expect(await recordOccurrence(store, settledRow('ghost', T0, 'missed'))).toEqual({
            outcome: 'job_missing',
          });

          await claimOccurrence(store, claimReq('a', T0 + 2, { run_id: 'x' }));
          expect(await settleOccurrence(store, 'a', T0 + 2, 'interrupted')).toMatchObject({
            run_id: 'x',
            status: 'interrupted',
          });
          expect(await store.listClaimed()).toEqual([]);
        }));

      it('keeps every claimed row and the newest settled rows within retention', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          // Two old claims stay claimed: they must survive any amount of newer settled rows.
          await claimOccurrence(store, claimReq('a', 1));
          await claimOccurrence(store, claimReq('a', 2));
          for (let fireAt = 10; fireAt < 20; fireAt++) {
            await claimOccurrence(store, claimReq('a', fireAt));
            await settleOccurrence(store, 'a', fireAt, 'finished');
          }
          const rows = await store.transact('a', (view) => ({
            result: [1, 2, ...Array.from({ length: 10 }, (_, i) => 10 + i)].filter((f) => view.entry(f)),
          }));
          expect(rows).toEqual([1, 2, 16, 17, 18, 19].slice(0, 2 + CONTRACT_LEDGER_RETENTION));
          expect((await store.listClaimed()).map((r) => r.fire_at).sort()).toEqual([1, 2]);
        }));

      it("renews the lease of its owner's claimed rows only, never shortening one", () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          await store.createJob(makeJob('b'));
          const other = { boot_id: 'another-boot', pid: 1, host: 'another-host' };
          await claimOccurrence(store, claimReq('a', 1, { ttl_ms: 1000 }));
          await claimOccurrence(store, claimReq('b', 2, { ttl_ms: 1000 }));
          await claimOccurrence(store, claimReq('b', 3, { ttl_ms: 1000 }));
          await settleOccurrence(store, 'b', 3, 'finished');
          await claimOccurrence(store, claimReq('a', 4, { ttl_ms: 1000, owner: other }));
          await claimOccurrence(store, claimReq('a', 5, { ttl_ms: 900_000 }));

          expect(await store.renewClaims(currentOwner(), T0 + 60_000)).toBe(2);
          const expiry = async (job: string, fireAt: number) =>
            (await store.getLedgerEntry(job, fireAt))?.expires_at;
          expect(await expiry('a', 1)).toBe(T0 + 60_000);
          expect(await expiry('b', 2)).toBe(T0 + 60_000);
          expect(await expiry('b', 3)).toBe(T0 + 1000);
          expect(await expiry('a', 4)).toBe(T0 + 1000);
          expect(await expiry('a', 5)).toBe(T0 + 900_000);
          // A renewed claim is protected until its new expiry, not its first one.
          expect((await claimOccurrence(store, claimReq('a', 1, { now: T0 + 59_999 }))).outcome).toBe(
            'duplicate',
          );
          expect(await store.renewClaims(currentOwner(), T0 + 60_000)).toBe(0);
        }));

      it('lists claimed rows across jobs', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          await store.createJob(makeJob('b'));
          await store.createJob(makeJob('c'));
          await claimOccurrence(store, claimReq('a', 1));
          await claimOccurrence(store, claimReq('b', 2));
          await claimOccurrence(store, claimReq('b', 3));
          await settleOccurrence(store, 'b', 3, 'finished');
          const claimed = await store.listClaimed();
          expect(claimed.map((r) => `${r.job_id}@${r.fire_at}`).sort()).toEqual(['a@1', 'b@2']);
          await store.removeJob('a');
          expect((await store.listClaimed()).map((r) => r.job_id)).toEqual(['b']);
        }));
    });

    describe('runs', () => {
      it('lists runs newest first, bounded by retention and limit', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          for (let i = 1; i <= 8; i++) await store.appendRun(makeRun('a', `r${i}`, { started_at: T0 + i }));
          const runs = await store.listRuns('a');
          expect(runs.map((r) => r.run_id)).toEqual(
            ['r8', 'r7', 'r6', 'r5', 'r4'].slice(0, CONTRACT_RUN_RETENTION),
          );
          expect((await store.listRuns('a', 2)).map((r) => r.run_id)).toEqual(['r8', 'r7']);
          expect(await store.getRun('a', 'r1')).toBeUndefined();
          expect(await store.getRun('a', 'r8')).toMatchObject({ started_at: T0 + 8 });
          expect(await store.listRuns('b')).toEqual([]);
        }));

      it('updates a run in place', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          await store.appendRun(makeRun('a', 'r1'));
          await store.appendRun(makeRun('a', 'r2'));
          const done = await store.updateRun('a', 'r1', (r) => ({
            ...r,
            status: 'succeeded',
            finished_at: T0 + 9,
          }));
          expect(done).toMatchObject({ run_id: 'r1', status: 'succeeded', finished_at: T0 + 9 });
          expect((await store.listRuns('a')).map((r) => [r.run_id, r.status])).toEqual([
            ['r2', 'running'],
            ['r1', 'succeeded'],
          ]);
        }));

      it('drops run history and ledger with the job', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          await store.appendRun(makeRun('a', 'r1'));
          await claimOccurrence(store, claimReq('a', T0));
          await store.removeJob('a');
          await store.createJob(makeJob('a'));
          expect(await store.listRuns('a')).toEqual([]);
          expect(await store.getLedgerEntry('a', T0)).toBeUndefined();
        }));
    });

    describe('bounds and damage', () => {
      it('reports no damage and removes no healthy job as damaged', () =>
        withStore(async ({ store }) => {
          await store.createJob(makeJob('a'));
          expect(await store.damaged()).toEqual([]);
          expect(await store.removeDamagedJob('a')).toBeUndefined();
          expect(await store.removeDamagedJob('nope')).toBeUndefined();
          expect((await store.getJob('a'))?.id).toBe('a');
        }));

      it('never stores a job over the bounds, through any write', () =>
        withStore(async ({ store }) => {
          const poisoned = (id: string) =>
            makeJob(id, {
              target: {
                type: 'http',
                url: 'http://127.0.0.1:9/',
                method: 'POST',
                headers: {},
                body: nested(2_000),
              },
            });
          await expectCode(store.createJob(poisoned('p')), 'validation_failed');
          expect(await store.getJob('p')).toBeUndefined();
          await store.createJob(makeJob('a'));
          await expectCode(
            store.updateJob('a', () => poisoned('a')),
            'validation_failed',
          );
          await expectCode(
            store.transact('a', () => ({ job: poisoned('a'), result: 0 })),
            'validation_failed',
          );
          expect(await store.getJob('a')).toEqual(makeJob('a'));
          expect((await store.listJobs()).map((j) => j.id)).toEqual(['a']);
        }));

      it('contains a damaged job: the others list, claim and run; it is reported and never overwritten', async () => {
        const h = await makeStore();
        try {
          if (!h.damageJob) return;
          await h.store.createJob(makeJob('a'));
          await h.store.createJob(makeJob('bad'));
          await h.store.createJob(makeJob('c'));
          await claimOccurrence(h.store, claimReq('a', T0, { run_id: 'run-a' }));
          const store = await h.damageJob('bad');

          expect((await store.listJobs()).map((j) => j.id)).toEqual(['a', 'c']);
          expect((await store.listClaimed()).map((r) => r.run_id)).toEqual(['run-a']);
          const [report, ...more] = await store.damaged();
          expect(more).toEqual([]);
          expect(report).toMatchObject({ job_id: 'bad', kind: 'job' });
          expect(report?.error.length).toBeGreaterThan(0);
          expect(await store.damaged('job')).toEqual([report]);
          expect(await store.damaged('history')).toEqual([]);
          await expectCode(store.getJob('bad'), 'store_corrupt');
          await expectCode(store.createJob(makeJob('bad')), 'job_damaged');
          expect((await claimOccurrence(store, claimReq('c', T0))).outcome).toBe('claimed');
          await store.appendRun(makeRun('c', 'run-c'));

          // Deleting it sets its record aside; the id is free again.
          const movedTo = await store.removeDamagedJob('bad');
          expect(movedTo).toEqual(expect.any(String));
          expect(movedTo).not.toBe(report?.file);
          expect(await store.damaged()).toEqual([]);
          expect(await store.getJob('bad')).toBeUndefined();
          await store.createJob(makeJob('bad'));
          expect((await store.listJobs()).map((j) => j.id)).toEqual(['a', 'bad', 'c']);
        } finally {
          await h.cleanup();
        }
      });

      it('contains a damaged run history: the job runs on with a new one and the damage is reported', async () => {
        const h = await makeStore();
        try {
          if (!h.damageHistory) return;
          await h.store.createJob(makeJob('a'));
          await h.store.createJob(makeJob('b'));
          await h.store.appendRun(makeRun('a', 'old'));
          await h.store.appendRun(makeRun('b', 'other'));
          const store = await h.damageHistory('a');

          expect(await store.getRun('a', 'old')).toBeUndefined();
          await store.appendRun(makeRun('a', 'new'));
          await store.updateRun('a', 'new', (r) => ({ ...r, status: 'succeeded' }));
          expect((await store.listRuns('a')).map((r) => [r.run_id, r.status])).toEqual([
            ['new', 'succeeded'],
          ]);
          expect((await store.listRuns('b')).map((r) => r.run_id)).toEqual(['other']);
          const reports = await store.damaged();
          expect(reports).toEqual([expect.objectContaining({ job_id: 'a', kind: 'history' })]);
          expect(await store.damaged('history')).toEqual(reports);
          expect(await store.damaged('job')).toEqual([]);
          expect((await store.listJobs()).map((j) => j.id)).toEqual(['a', 'b']);
        } finally {
          await h.cleanup();
        }
      });
    });

    it('keeps everything across a reopen (durable stores)', async () => {
      const h = await makeStore();
      try {
        if (!h.reopen) return;
        await h.store.createJob(makeJob('a'));
        await h.store.createJob(makeJob('b'));
        await claimOccurrence(h.store, claimReq('a', T0, { run_id: 'run-a' }));
        await h.store.appendRun(makeRun('a', 'run-a'));
        const reopened = await h.reopen();
        expect((await reopened.listJobs()).map((j: Job) => j.id)).toEqual(['a', 'b']);
        expect((await reopened.getJob('a'))?.repeat.completed).toBe(1);
        expect(await reopened.getLedgerEntry('a', T0)).toMatchObject({ run_id: 'run-a', status: 'claimed' });
        expect((await reopened.listClaimed()).map((r) => r.run_id)).toEqual(['run-a']);
        expect((await reopened.listRuns('a')).map((r) => r.run_id)).toEqual(['run-a']);
        expect((await claimOccurrence(reopened, claimReq('a', T0))).outcome).toBe('duplicate');
      } finally {
        await h.cleanup();
      }
    });
  });
}
