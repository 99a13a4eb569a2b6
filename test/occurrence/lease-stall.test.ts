import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { type AcceptedFire, claimFire } from '../../src/occurrence/claim.js';
import { CLAIM_CHECK_AFTER_MS, CLAIM_TAKEN_ERROR, JobRunner } from '../../src/run/runner.js';
import { createHandlerRegistry } from '../../src/run/targets/handler.js';
import { CLAIM_LEASE_MS } from '../../src/store/lease.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import type { Owner } from '../../src/store/store.js';
import { flushMicrotasks, ManualClock } from '../helpers/manual-clock.js';
import { makeJob, T0 } from '../run/fixtures.js';

/*
 * A process stalled between the claim of an occurrence and the start of its run, for longer than the
 * claim's lease (docs/architecture.md, "The claim lease"): two replicas (owners on two hosts, so neither
 * can tell whether the other is alive) on one store and one controlled clock. No lease is renewed here:
 * the stalled process renews nothing.
 */

const FIRE = T0 + 15 * 60_000;
const A: Owner = { boot_id: 'boot-a', pid: 101, host: 'host-a' };
const B: Owner = { boot_id: 'boot-b', pid: 202, host: 'host-b' };
const logger = pino({ level: 'silent' });

function twoReplicas() {
  const store = new MemoryStore();
  const clock = new ManualClock(FIRE);
  const hits: string[] = [];
  let during: (() => Promise<void>) | undefined;
  const handlers = createHandlerRegistry();
  handlers.register('hit', async ({ run_id }) => {
    hits.push(run_id);
    await during?.();
    return 'ran';
  });
  const runner = () => new JobRunner({ store, clock, logger, handlers, allowCommands: false });
  const claim = async (owner: Owner) =>
    claimFire(store, {
      job_id: 'job-1',
      fire_at: FIRE,
      trigger: 'nas',
      now: clock.now(),
      owner,
      // Another host: a pid says nothing there, only the lease does.
      isAlive: () => true,
    });
  const accepted = async (owner: Owner): Promise<AcceptedFire> => {
    const outcome = await claim(owner);
    if (outcome.kind !== 'accepted') throw new Error(`expected accepted, got ${outcome.kind}`);
    return outcome.accepted;
  };
  return {
    store,
    clock,
    hits,
    runnerA: runner(),
    runnerB: runner(),
    claim,
    accepted,
    /** What each run's target does once called (before it returns). */
    whileRunning(fn: () => Promise<void>) {
      during = fn;
    },
    createJob: () => store.createJob(makeJob({ target: { type: 'handler', name: 'hit', payload: null } })),
  };
}

const occurrence = (fire: AcceptedFire, claimedAt: number) => ({
  job: fire.job,
  fire_at: fire.fire_at,
  run_id: fire.run_id,
  trigger: fire.trigger,
  attempt: fire.attempt,
  claimed_at: claimedAt,
});

describe('a lease stall between claim and run start', () => {
  it('a claim whose lease expired before its run started is taken over, and the stalled process does not run it', async () => {
    const r = twoReplicas();
    await r.createJob();
    const byA = await r.accepted(A);
    const claimedByA = r.clock.now();
    await r.clock.advance(CLAIM_LEASE_MS + 1_000);

    // NAS delivers again (A's 202 never reached it) to B: the expired claim, whose run never started, is taken.
    const byB = await r.accepted(B);
    expect(byB.recovered).toBe(true);
    expect((await r.runnerB.run(occurrence(byB, r.clock.now()))).run.status).toBe('succeeded');

    // A wakes up and reaches its run start: the claim is no longer its own.
    const late = await r.runnerA.run(occurrence(byA, claimedByA));
    expect(late.run).toMatchObject({ status: 'skipped', error: CLAIM_TAKEN_ERROR });
    expect(r.hits).toEqual([byB.run_id]);
    expect((await r.store.listRuns('job-1')).map((run) => [run.run_id, run.status])).toEqual([
      [byB.run_id, 'succeeded'],
    ]);
    expect(await r.store.getLedgerEntry('job-1', FIRE)).toMatchObject({
      run_id: byB.run_id,
      owner: B,
      status: 'finished',
    });
  });

  it('a stalled process whose claim was not taken keeps it at its run start: a later delivery is a duplicate', async () => {
    const r = twoReplicas();
    await r.createJob();
    const byA = await r.accepted(A);
    const claimedByA = r.clock.now();
    await r.clock.advance(CLAIM_LEASE_MS + 1_000);

    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    r.whileRunning(() => released);
    const running = r.runnerA.run(occurrence(byA, claimedByA));
    while (r.hits.length === 0) await flushMicrotasks();
    // The start renewed the lease, under the job's lock: B cannot take the claim now.
    expect((await r.store.getLedgerEntry('job-1', FIRE))?.expires_at).toBeGreaterThanOrEqual(
      r.clock.now() + CLAIM_LEASE_MS,
    );
    expect((await r.claim(B)).kind).toBe('duplicate');
    release();
    expect((await running).run.status).toBe('succeeded');
    expect(r.hits).toEqual([byA.run_id]);
  });

  it('a run that started is never run again, even once its lease expired', async () => {
    const r = twoReplicas();
    await r.createJob();
    const byA = await r.accepted(A);
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    r.whileRunning(() => released);
    // Started at once (no check: well within the lease), then A stalls mid-run without renewing.
    const running = r.runnerA.run(occurrence(byA, r.clock.now()));
    while (r.hits.length === 0) await flushMicrotasks();
    await r.clock.advance(CLAIM_LEASE_MS + 1_000);

    const again = await r.claim(B);
    expect(again.kind).toBe('duplicate');
    release();
    expect((await running).run.status).toBe('succeeded');
    expect(r.hits).toEqual([byA.run_id]);
  });

  it('a run that starts within CLAIM_CHECK_AFTER_MS of its claim writes nothing more before it starts', async () => {
    const r = twoReplicas();
    await r.createJob();
    const byA = await r.accepted(A);
    const claimedByA = r.clock.now();
    const row = await r.store.getLedgerEntry('job-1', FIRE);
    await r.clock.advance(CLAIM_CHECK_AFTER_MS - 1);
    let seenAtStart: number | undefined;
    r.whileRunning(async () => {
      seenAtStart = (await r.store.getLedgerEntry('job-1', FIRE))?.expires_at;
    });
    expect((await r.runnerA.run(occurrence(byA, claimedByA))).run.status).toBe('succeeded');
    expect(seenAtStart).toBe(row?.expires_at);
  });
});
