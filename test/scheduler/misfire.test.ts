import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Emulator } from '../../src/emulator/index.js';
import { formatFireAt, type NasClient } from '../../src/nas/nas.js';
import {
  armDirectly,
  callsOf,
  createHarness,
  MINUTE,
  nasClientFor,
  recordSpec,
  type SchedulerHarness,
  startFrozenEmulator,
  T0,
  waitUntil,
} from '../helpers/scheduler-fixtures.js';

const HOUR = 60 * MINUTE;
let h: SchedulerHarness;

beforeEach(() => {
  h = createHarness();
});

afterEach(async () => {
  await h.current.provider?.stop();
});

describe('missed occurrences (docs/jobs.md, Misfire) on a warm reconcile', () => {
  it('run_once: claims the overdue occurrence once with trigger misfire, then moves to the next future slot', async () => {
    await h.addJob(recordSpec('report', 'every 15m'));
    // The process slept through eight slots (00:15 … 02:00); it wakes at 02:01.
    h.clock.set(T0 + 2 * HOUR + MINUTE);
    const provider = h.builtin();
    await provider.start();
    await h.runsSettled();

    expect(provider.status().lastReconcile?.misfires).toBe(1);
    expect(h.handled.of('report').map((c) => c.fire_at)).toEqual([T0 + 15 * MINUTE]);
    const runs = await h.store.listRuns('report');
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ trigger: 'misfire', status: 'succeeded', fire_at: T0 + 15 * MINUTE });
    const entry = await h.store.getLedgerEntry('report', T0 + 15 * MINUTE);
    expect(entry).toMatchObject({ trigger: 'misfire', status: 'finished' });
    const job = (await h.store.getJob('report'))!;
    expect(job.next_run_at).toBe(T0 + 2 * HOUR + 15 * MINUTE);
    expect(job.next_run_at!).toBeGreaterThan(h.clock.now());

    // Later warm reconciles find nothing overdue: never a burst.
    await provider.reconcile();
    await h.clock.advance(50);
    await h.runsSettled();
    expect(h.handled.calls).toHaveLength(1);
    expect(await h.store.listRuns('report')).toHaveLength(1);
  });

  it('skip: records a missed run and ledger row without running, next_run_at in the future', async () => {
    await h.addJob(recordSpec('skipper', 'every 15m', { misfire: { policy: 'skip', grace_seconds: 60 } }));
    h.clock.set(T0 + HOUR);
    const provider = h.builtin();
    await provider.start();
    await h.runsSettled();

    expect(h.handled.calls).toHaveLength(0);
    const runs = await h.store.listRuns('skipper');
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ status: 'missed', trigger: 'misfire', fire_at: T0 + 15 * MINUTE });
    expect(await h.store.getLedgerEntry('skipper', T0 + 15 * MINUTE)).toMatchObject({ status: 'missed' });
    const job = (await h.store.getJob('skipper'))!;
    expect(job.next_run_at!).toBeGreaterThan(h.clock.now());
    expect(job).toMatchObject({ state: 'scheduled', last_status: 'missed' });
    expect(provider.status().nextWakeAt).toBe(job.next_run_at);
  });

  it('a one-shot overdue past grace is marked missed and completed, never run (even with run_once)', async () => {
    await h.addJob(recordSpec('once', 'at 2026-01-01T00:10:00Z'));
    h.clock.set(T0 + HOUR);
    const provider = h.builtin();
    await provider.start();
    await h.clock.advance(1_000);
    await h.runsSettled();

    expect(h.handled.calls).toHaveLength(0);
    const runs = await h.store.listRuns('once');
    expect(runs.map((r) => r.status)).toEqual(['missed']);
    const job = (await h.store.getJob('once'))!;
    expect(job).toMatchObject({ state: 'completed', next_run_at: null, last_status: 'missed' });
    expect(provider.status().nextWakeAt).toBeNull();
    expect(h.clock.pending()).toBe(0);
  });

  it('within grace the builtin timer fires it as an ordinary (builtin) occurrence', async () => {
    await h.addJob(recordSpec('late', 'every 15m'));
    h.clock.set(T0 + 16 * MINUTE);
    const provider = h.builtin();
    await provider.start();
    expect(provider.status().lastReconcile?.misfires).toBe(0);
    await h.clock.advance(0);
    await h.runsSettled();

    const runs = await h.store.listRuns('late');
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ trigger: 'builtin', fire_at: T0 + 15 * MINUTE });
  });
});

describe('missed occurrences with the chronos provider', () => {
  let emulator: Emulator;
  let client: NasClient;

  beforeEach(async () => {
    emulator = await startFrozenEmulator();
    client = nasClientFor(emulator.url, emulator.agentToken, h.clock);
  });

  afterEach(async () => {
    await h.current.provider?.stop();
    await client.close();
    await emulator.close();
  });

  it('within grace, an overdue instant NAS does not hold runs here once and is never re-provisioned', async () => {
    await h.addJob(recordSpec('late', 'every 15m'));
    h.clock.set(T0 + 16 * MINUTE);
    const provider = h.chronos(async () => client);
    await provider.start();
    await h.runsSettled();

    // NAS may have consumed the key late:<15:00> (delivered, given up): provisioning it again could arm
    // nothing, so the occurrence is claimed here, through the same ledger as a NAS fire.
    const runs = await h.store.listRuns('late');
    expect(runs.map((r) => [r.fire_at, r.trigger, r.status])).toEqual([
      [T0 + 15 * MINUTE, 'misfire', 'succeeded'],
    ]);
    expect(h.handled.of('late')).toHaveLength(1);
    const provisioned = emulator
      .provisions()
      .filter((p) => p.kind === 'provision')
      .map((p) => (p.body as { fire_at: string }).fire_at);
    expect(provisioned).toEqual([formatFireAt(T0 + 30 * MINUTE)]);
    await h.clock.advance(50);
    await waitUntil(() => provider.settled());
    expect(emulator.armed().map((a) => [a.job_id, a.fire_at])).toEqual([
      ['late', formatFireAt(T0 + 30 * MINUTE)],
    ]);
  });

  it('within grace, an overdue instant NAS still holds is left to NAS (it is delivering it)', async () => {
    await h.addJob(recordSpec('late', 'every 15m'));
    await armDirectly(emulator, 'late', formatFireAt(T0 + 15 * MINUTE));
    h.clock.set(T0 + 16 * MINUTE);
    const provider = h.chronos(async () => client);
    await provider.start();
    await h.runsSettled();

    expect(h.handled.calls).toHaveLength(0);
    expect(callsOf(emulator, 'provision')).toBe(1); // the direct arm only
    expect(provider.settled()).toBe(true);
  });

  it('run_once past grace: runs once, then arms the next future occurrence at NAS', async () => {
    await h.addJob(recordSpec('report', 'every 15m'));
    h.clock.set(T0 + 3 * HOUR + 7 * MINUTE);
    const provider = h.chronos(async () => client);
    await provider.start();
    await h.runsSettled();

    const runs = await h.store.listRuns('report');
    expect(runs.map((r) => [r.trigger, r.status])).toEqual([['misfire', 'succeeded']]);
    expect(emulator.armed().map((a) => a.fire_at)).toEqual([formatFireAt(T0 + 3 * HOUR + 15 * MINUTE)]);
  });
});
