import { describe, expect, it } from 'vitest';
import { claimOccurrence } from '../../src/occurrence/claim.js';
import { OrphanSweep } from '../../src/run/orphan-sweep.js';
import type { Owner } from '../../src/store/store.js';
import { flushMicrotasks } from '../helpers/manual-clock.js';
import { createHarness, MINUTE, recordSpec, silentLogger, T0 } from '../helpers/scheduler-fixtures.js';

/*
 * A replica that died mid-run on another host: its claim stays `claimed` until its lease expires, and the
 * replicas still running settle it (the dead one's boot recovery never comes).
 */

const otherReplica: Owner = { boot_id: 'other-replica', pid: 1, host: 'another-host' };
const LEASE_MS = 60_000;

async function runLeftByOtherReplica(h: ReturnType<typeof createHarness>) {
  const job = await h.addJob(recordSpec('tick', 'every 15m'));
  const fireAt = job.next_run_at!;
  const claimed = await claimOccurrence(h.store, {
    job_id: job.id,
    fire_at: fireAt,
    run_id: 'run-left-behind',
    trigger: 'nas',
    owner: otherReplica,
    now: h.clock.now(),
    ttl_ms: LEASE_MS,
    advance: (fresh) => ({ ...fresh, next_run_at: fireAt + 15 * MINUTE }),
  });
  expect(claimed.outcome).toBe('claimed');
  await h.store.appendRun({
    run_id: 'run-left-behind',
    job_id: job.id,
    fire_at: fireAt,
    trigger: 'nas',
    status: 'running',
    attempt: 1,
    started_at: h.clock.now(),
    finished_at: null,
    output: null,
    error: null,
  });
  return { job, fireAt };
}

describe('OrphanSweep: runs another replica left behind', () => {
  it('records the run interrupted once its claim lease expired, not before, and never runs it', async () => {
    const h = createHarness(T0);
    const { job, fireAt } = await runLeftByOtherReplica(h);
    const sweep = new OrphanSweep({
      clock: h.clock,
      logger: silentLogger,
      recover: () => h.runner.recoverInterrupted(),
      everyMs: 20_000,
    });
    sweep.start();
    try {
      // Sweeps at +20 s and +40 s: the lease (60 s) still protects a run that may be going on over there.
      await h.clock.advance(40_000);
      await flushMicrotasks();
      expect((await h.store.getRun(job.id, 'run-left-behind'))?.status).toBe('running');
      expect((await h.store.getLedgerEntry(job.id, fireAt))?.status).toBe('claimed');

      // +60 s: expired at the sweep of that instant.
      await h.clock.advance(20_000);
      await sweep.soon();
      expect((await h.store.getRun(job.id, 'run-left-behind'))?.status).toBe('interrupted');
      expect((await h.store.getLedgerEntry(job.id, fireAt))?.status).toBe('interrupted');
      expect(h.handled.of('tick')).toEqual([]);

      // Later sweeps find nothing more to do.
      await h.clock.advance(40_000);
      await sweep.soon();
      expect(await h.store.listRuns(job.id)).toHaveLength(1);
    } finally {
      sweep.stop();
    }
  });

  it('keeps no timer once stopped, and a sweep that fails is retried at the next one', async () => {
    const h = createHarness(T0);
    let calls = 0;
    const sweep = new OrphanSweep({
      clock: h.clock,
      logger: silentLogger,
      recover: async () => {
        calls += 1;
        if (calls === 1) throw new Error('database restarting');
        return [];
      },
      everyMs: 10_000,
    });
    sweep.start();
    await h.clock.advance(20_000);
    await flushMicrotasks();
    expect(calls).toBe(2);
    sweep.stop();
    expect(h.clock.pending()).toBe(0);
    await h.clock.advance(60_000);
    expect(calls).toBe(2);
  });
});
