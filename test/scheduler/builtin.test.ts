import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { claimFire } from '../../src/occurrence/claim.js';
import { CLAIM_LEAD_MS } from '../../src/scheduler/builtin.js';
import { IdleExit } from '../../src/scheduler/idle-exit.js';
import { currentOwner } from '../../src/store/owner.js';
import {
  createHarness,
  MINUTE,
  recordSpec,
  type SchedulerHarness,
  silentLogger,
  T0,
} from '../helpers/scheduler-fixtures.js';

const HOUR_MS = 60 * MINUTE;
let h: SchedulerHarness;

beforeEach(() => {
  h = createHarness();
});

afterEach(async () => {
  await h.current.provider?.stop();
});

describe('BuiltinProvider (in-process timer)', () => {
  it('holds one timer, set the claim lead before the earliest armed instant', async () => {
    await h.addJob(recordSpec('ten', 'every 10m'));
    await h.addJob(recordSpec('five', 'every 5m'));
    await h.addJob(recordSpec('hour', '@hourly'));
    const provider = h.builtin();
    await provider.start();

    expect(h.clock.pending()).toBe(1);
    expect(h.clock.nextTimerAt()).toBe(T0 + 5 * MINUTE - CLAIM_LEAD_MS);
    expect(provider.status()).toMatchObject({
      provider: 'builtin',
      nextWakeAt: T0 + 5 * MINUTE,
      armedCount: 3,
    });
    expect(provider.settled()).toBe(true);
    expect(h.handled.calls).toHaveLength(0);
  });

  it('fires a due job through the claim, records the run, and re-arms for the next instant', async () => {
    await h.addJob(recordSpec('five', 'every 5m'));
    await h.addJob(recordSpec('seven', 'every 7m'));
    const provider = h.builtin();
    await provider.start();

    await h.clock.advanceTo(T0 + 5 * MINUTE);
    await h.runsSettled();

    expect(h.handled.calls.map((c) => [c.job.id, c.fire_at])).toEqual([['five', T0 + 5 * MINUTE]]);
    expect(await h.store.getLedgerEntry('five', T0 + 5 * MINUTE)).toMatchObject({
      trigger: 'builtin',
      status: 'finished',
    });
    const runs = await h.store.listRuns('five');
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ trigger: 'builtin', status: 'succeeded', output: 'ok' });
    expect((await h.store.getJob('five'))?.next_run_at).toBe(T0 + 10 * MINUTE);
    expect(provider.status().nextWakeAt).toBe(T0 + 7 * MINUTE);

    // The debounced post-fire reconcile settles, leaving exactly the one timer.
    await h.clock.advance(50);
    expect(h.clock.pending()).toBe(1);
    expect(h.clock.nextTimerAt()).toBe(T0 + 7 * MINUTE - CLAIM_LEAD_MS);

    await h.clock.advanceTo(T0 + 10 * MINUTE);
    await h.runsSettled();
    expect(h.handled.calls.map((c) => [c.job.id, c.fire_at - T0])).toEqual([
      ['five', 5 * MINUTE],
      ['seven', 7 * MINUTE],
      ['five', 10 * MINUTE],
    ]);
  });

  it('fires every job due at the same instant', async () => {
    const ids = ['a1', 'a2', 'a3', 'a4', 'a5'];
    for (const id of ids) await h.addJob(recordSpec(id, '*/5 * * * *'));
    const provider = h.builtin();
    await provider.start();
    expect(h.clock.pending()).toBe(1);

    await h.clock.advanceTo(T0 + 5 * MINUTE);
    await h.runsSettled();

    expect(h.handled.calls.map((c) => c.job.id).sort()).toEqual(ids);
    for (const id of ids) {
      expect(await h.store.getLedgerEntry(id, T0 + 5 * MINUTE)).toMatchObject({ trigger: 'builtin' });
      expect((await h.store.getJob(id))?.next_run_at).toBe(T0 + 10 * MINUTE);
    }
    await h.clock.advance(50);
    expect(provider.status().nextWakeAt).toBe(T0 + 10 * MINUTE);
  });

  it('re-arms its timer when a job changes or is removed', async () => {
    await h.addJob(recordSpec('early', 'every 5m'));
    await h.addJob(recordSpec('late', 'every 30m'));
    const provider = h.builtin();
    await provider.start();
    expect(h.clock.nextTimerAt()).toBe(T0 + 5 * MINUTE - CLAIM_LEAD_MS);

    await h.store.removeJob('early');
    provider.onJobsChanged();
    await h.clock.advance(50);
    expect(provider.status().nextWakeAt).toBe(T0 + 30 * MINUTE);
    expect(h.clock.pending()).toBe(1);
    expect(h.clock.nextTimerAt()).toBe(T0 + 30 * MINUTE - CLAIM_LEAD_MS);

    await h.store.updateJob('late', (job) => ({ ...job, next_run_at: T0 + 2 * MINUTE }));
    provider.onJobsChanged();
    await h.clock.advance(50);
    expect(h.clock.nextTimerAt()).toBe(T0 + 2 * MINUTE - CLAIM_LEAD_MS);

    await h.store.updateJob('late', (job) => ({ ...job, state: 'paused' }));
    provider.onJobsChanged();
    await h.clock.advance(50);
    expect(provider.status().nextWakeAt).toBeNull();
    expect(h.clock.pending()).toBe(0);
    await h.clock.advanceTo(T0 + HOUR_MS);
    expect(h.handled.calls).toHaveLength(0);
  });

  it('does not run an occurrence NAS already claimed (duplicate) and re-arms the current instant', async () => {
    await h.addJob(recordSpec('shared', 'every 5m'));
    const provider = h.builtin();
    await provider.start();

    await h.clock.advanceTo(T0 + 5 * MINUTE - 10_000);
    const claimed = await claimFire(h.store, {
      job_id: 'shared',
      fire_at: T0 + 5 * MINUTE,
      trigger: 'nas',
      now: h.clock.now(),
      owner: currentOwner(),
    });
    expect(claimed.kind).toBe('accepted');

    await h.clock.advanceTo(T0 + 5 * MINUTE);
    await h.runsSettled();

    expect(h.handled.calls).toHaveLength(0);
    expect(await h.store.listRuns('shared')).toHaveLength(0);
    expect(await h.store.getLedgerEntry('shared', T0 + 5 * MINUTE)).toMatchObject({ trigger: 'nas' });
    expect(provider.status().nextWakeAt).toBe(T0 + 10 * MINUTE);
  });

  it('never lets the process exit when idle', async () => {
    await h.addJob(recordSpec('hourly', '@hourly'));
    const provider = h.builtin();
    await provider.start();
    let idle = 0;
    const watcher = new IdleExit({
      clock: h.clock,
      activity: h.activity,
      logger: silentLogger,
      provider: () => provider,
      idleMs: 1_000,
      onIdle: () => {
        idle += 1;
      },
    });
    watcher.start();
    await h.clock.advance(30 * MINUTE);
    watcher.stop();

    expect(idle).toBe(0);
    expect(watcher.blocker()).toBe('builtin provider in use');
  });
});
