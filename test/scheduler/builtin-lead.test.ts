// The builtin timer claims an occurrence CLAIM_LEAD_MS before its instant and starts the run at the
// instant (docs/architecture.md, "Claimed ahead of the instant"). Each rule of that window, on a manual clock.
import { afterEach, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/clock.js';
import { pauseJob } from '../../src/jobs/lifecycle.js';
import { claimFire } from '../../src/occurrence/claim.js';
import { INTERRUPTED_ERROR, JobRunner } from '../../src/run/runner.js';
import {
  BuiltinProvider,
  CLAIM_LEAD_HISTORY,
  CLAIM_LEAD_MAX_MS,
  CLAIM_LEAD_MS,
} from '../../src/scheduler/builtin.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { currentOwner } from '../../src/store/owner.js';
import {
  createHarness,
  MINUTE,
  recordSpec,
  type SchedulerHarness,
  silentLogger,
  T0,
  waitUntil,
} from '../helpers/scheduler-fixtures.js';

const AT = T0 + 5 * MINUTE;
const CLAIM_AT = AT - CLAIM_LEAD_MS;
const started: Array<{ provider?: { stop(): Promise<void> } }> = [];

afterEach(async () => {
  for (const h of started.splice(0)) await h.provider?.stop();
});

async function harnessWith(ids: string[], store = new MemoryStore()): Promise<SchedulerHarness> {
  const h = createHarness(T0, store);
  for (const id of ids) await h.addJob(recordSpec(id, 'every 5m'));
  const provider = h.builtin();
  started.push({ provider });
  await provider.start();
  return h;
}

describe('builtin timer: the claim is made ahead of the instant, the run starts at it', () => {
  it('claims every job due at an instant the lead before it, and starts their runs at the instant', async () => {
    const ids = ['a', 'b', 'c'];
    const h = await harnessWith(ids);

    await h.clock.advanceTo(CLAIM_AT);
    for (const id of ids) {
      expect(await h.store.getLedgerEntry(id, AT)).toMatchObject({
        status: 'claimed',
        trigger: 'builtin',
        claimed_at: CLAIM_AT,
      });
      expect((await h.store.getJob(id))?.next_run_at).toBe(AT + 5 * MINUTE);
    }
    // Claimed, armed for the next instant, running nothing yet.
    expect(h.handled.calls).toHaveLength(0);
    expect(h.current.provider?.status().nextWakeAt).toBe(AT + 5 * MINUTE);
    expect(h.activity.busy).toBe(true);

    await h.clock.advanceTo(AT - 1);
    expect(h.handled.calls).toHaveLength(0);

    await h.clock.advanceTo(AT);
    await h.runsSettled();
    expect(h.handled.calls.map((c) => c.job.id).sort()).toEqual(ids);
    for (const id of ids) {
      const runs = await h.store.listRuns(id);
      expect(runs).toHaveLength(1);
      expect(runs[0]).toMatchObject({ status: 'succeeded', trigger: 'builtin', fire_at: AT, started_at: AT });
      expect(await h.store.getLedgerEntry(id, AT)).toMatchObject({ status: 'finished' });
    }
  });

  it('runs an occurrence whose claim lands after its instant at once', async () => {
    const h = await harnessWith(['slow']);
    // The store takes longer than the lead to write the claim: the claim waits, the run follows it.
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const transact = h.store.transact.bind(h.store);
    h.store.transact = (async (...args: Parameters<typeof transact>) => {
      await held;
      return transact(...args);
    }) as typeof h.store.transact;

    await h.clock.advanceTo(AT + 10);
    expect(h.handled.calls).toHaveLength(0);
    release();
    await waitUntil(() => h.handled.calls.length > 0);
    await h.runsSettled();
    expect(h.handled.calls.map((c) => [c.job.id, c.fire_at])).toEqual([['slow', AT]]);
    expect((await h.store.listRuns('slow'))[0]?.started_at).toBe(AT + 10);
  });

  it('a pause that arrives between the claim and the instant does not stop that run, only the next ones', async () => {
    const h = await harnessWith(['paused']);
    await h.clock.advanceTo(CLAIM_AT);
    expect(await h.store.getLedgerEntry('paused', AT)).toMatchObject({ status: 'claimed' });

    await h.store.updateJob('paused', (job) => pauseJob(job, h.clock.now()));
    h.current.provider?.onJobsChanged();
    await h.clock.advanceTo(AT);
    await h.runsSettled();

    // As after any claim: the occurrence was admitted before the pause, and it runs once.
    expect(h.handled.calls.map((c) => [c.job.id, c.fire_at])).toEqual([['paused', AT]]);
    expect(await h.store.getLedgerEntry('paused', AT)).toMatchObject({ status: 'finished' });
    await h.clock.advance(50);
    expect(h.current.provider?.isArmed('paused')).toBe(false);
    await h.clock.advanceTo(AT + 30 * MINUTE);
    await h.runsSettled();
    expect(h.handled.calls).toHaveLength(1);
  });

  it('a removal between the claim and the instant: the claimed run still starts once, nothing is armed after it', async () => {
    const h = await harnessWith(['removed', 'kept']);
    await h.clock.advanceTo(CLAIM_AT);
    await h.store.removeJob('removed');
    h.current.provider?.onJobsChanged();

    await h.clock.advanceTo(AT);
    await h.runsSettled();
    expect(h.handled.calls.map((c) => c.job.id).sort()).toEqual(['kept', 'removed']);
    await h.clock.advance(50);
    expect(h.current.provider?.isArmed('removed')).toBe(false);
    expect(h.current.provider?.isArmed('kept')).toBe(true);
    await h.clock.advanceTo(AT + 5 * MINUTE);
    await h.runsSettled();
    expect(h.handled.of('removed')).toHaveLength(1);
    expect(h.handled.of('kept')).toHaveLength(2);
  });

  it('stopping the provider in the window neither drops the claimed run nor starts it early', async () => {
    const h = await harnessWith(['stopping']);
    await h.clock.advanceTo(CLAIM_AT);
    await h.current.provider?.stop();

    // Shutdown waits for runs in progress; this one counts from its claim.
    expect(h.activity.busy).toBe(true);
    await h.clock.advanceTo(AT - 1);
    expect(h.handled.calls).toHaveLength(0);
    await h.clock.advanceTo(AT);
    await h.runsSettled();
    expect(h.handled.calls.map((c) => [c.job.id, c.fire_at])).toEqual([['stopping', AT]]);
    expect(h.activity.busy).toBe(false);
  });

  it('waits for the instant on the timer, so a wall clock set back in the window delays the run by at most the lead', async () => {
    const h = createHarness(T0);
    await h.addJob(recordSpec('jump', 'every 5m'));
    // Wall time = the manual clock + offset; timers run on the manual clock, as setTimeout does on a monotonic one.
    let offset = 0;
    const wall: Clock = {
      now: () => h.clock.now() + offset,
      setTimeout: (fn, ms) => h.clock.setTimeout(fn, ms),
      clearTimeout: (handle) => h.clock.clearTimeout(handle),
    };
    const provider = new BuiltinProvider({
      store: h.store,
      clock: wall,
      logger: silentLogger,
      engine: h.engine,
    });
    h.current.provider = provider;
    started.push({ provider });
    await provider.start();

    await h.clock.advanceTo(CLAIM_AT);
    expect(await h.store.getLedgerEntry('jump', AT)).toMatchObject({ status: 'claimed' });
    offset = -60 * MINUTE;
    await h.clock.advance(CLAIM_LEAD_MS);
    await h.runsSettled();
    expect(h.handled.calls.map((c) => [c.job.id, c.fire_at])).toEqual([['jump', AT]]);
  });

  it('a process that dies between the claim and the instant: the occurrence is booked interrupted, never run', async () => {
    const store = new MemoryStore();
    const first = await harnessWith(['crash'], store);
    await first.clock.advanceTo(CLAIM_AT);
    expect(await store.getLedgerEntry('crash', AT)).toMatchObject({ status: 'claimed', trigger: 'builtin' });
    // The first process's clock never reaches the instant: it died in the window.

    // A redelivery of the occurrence finds a claim that counts as its run's start: never taken over.
    const redelivered = await claimFire(store, {
      job_id: 'crash',
      fire_at: AT,
      trigger: 'nas',
      now: AT + 1_000,
      owner: currentOwner(),
      isAlive: () => false,
    });
    expect(redelivered.kind).toBe('duplicate');

    // The next process's boot recovery books it, as any orphaned builtin claim.
    const next = createHarness(AT + 1_000, store);
    const runner = new JobRunner({
      store,
      clock: next.clock,
      logger: silentLogger,
      handlers: next.handlers,
      allowCommands: false,
    });
    const recovered = await runner.recoverInterrupted(() => false);
    expect(recovered).toMatchObject([
      { job_id: 'crash', fire_at: AT, status: 'interrupted', started_at: CLAIM_AT, error: INTERRUPTED_ERROR },
    ]);
    expect(await store.getLedgerEntry('crash', AT)).toMatchObject({ status: 'interrupted' });

    const provider = next.builtin();
    started.push({ provider });
    await provider.start();
    await next.clock.advanceTo(AT + 5 * MINUTE);
    await next.runsSettled();
    expect(first.handled.calls).toHaveLength(0);
    expect(next.handled.calls.map((c) => c.fire_at)).toEqual([AT + 5 * MINUTE]);
  });

  it('lengthens the lead to twice the slowest recent claim, up to its ceiling, and shortens it again', async () => {
    const h = await harnessWith(['slow']);
    const provider = h.current.provider as BuiltinProvider;
    // Every claim write takes `writeMs` of clock time, as on a slow disk.
    let writeMs = 120;
    const transact = h.store.transact.bind(h.store);
    h.store.transact = (async (...args: Parameters<typeof transact>) => {
      if (writeMs > 0) await new Promise<void>((resolve) => h.clock.setTimeout(resolve, writeMs));
      return transact(...args);
    }) as typeof h.store.transact;
    const every = 5 * MINUTE;

    // Claimed at the lead before the instant, landed 70 ms after it: the run starts when it lands.
    await h.clock.advanceTo(AT + 200);
    await h.runsSettled();
    expect((await h.store.listRuns('slow'))[0]).toMatchObject({ fire_at: AT, started_at: AT + 70 });
    expect(provider.claimLead()).toBe(240);
    await h.clock.advance(50);
    expect(h.clock.nextTimerAt()).toBe(AT + every - 240);

    // With that lead the next claim lands before its instant, and its run starts on time.
    await h.clock.advanceTo(AT + every + 200);
    await h.runsSettled();
    const second = (await h.store.listRuns('slow')).find((run) => run.fire_at === AT + every);
    expect(second?.started_at).toBe(AT + every);

    // A claim slower than the ceiling allows still only moves the lead to the ceiling.
    writeMs = 2_000;
    await h.clock.advanceTo(AT + 2 * every + 20_000);
    await h.runsSettled();
    expect(provider.claimLead()).toBe(CLAIM_LEAD_MAX_MS);

    // Fast claims again: once the slow ones are out of the last CLAIM_LEAD_HISTORY instants, the lead is back.
    writeMs = 0;
    for (let i = 3; i < 3 + CLAIM_LEAD_HISTORY; i++) {
      await h.clock.advanceTo(AT + i * every + 1_000);
      await h.runsSettled();
    }
    expect(provider.claimLead()).toBe(CLAIM_LEAD_MS);
    expect(h.handled.calls).toHaveLength(3 + CLAIM_LEAD_HISTORY);
  });
});
