import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Trigger } from '../../src/jobs/model.js';
import type { SchedulerProvider } from '../../src/occurrence/provider.js';
import { MINUTE, recordSpec, type SchedulerHarness, T0 } from '../helpers/scheduler-fixtures.js';

/**
 * One provider under test, over a scheduler harness (ManualClock, MemoryStore, real runner and engine).
 * `fireDue` is the provider's trigger source doing its work up to `at`: the builtin timer firing as the
 * clock reaches it, or NAS delivering every arm it holds that is due (through the fire path's claim).
 */
export interface ProviderSubject {
  h: SchedulerHarness;
  provider: SchedulerProvider;
  /** The trigger its ledger entries carry. */
  trigger: Trigger;
  fireDue(at: number): Promise<void>;
  cleanup(): Promise<void>;
}

/**
 * Behaviour both scheduler providers share (src/scheduler/provider.ts), as test/store/contract.ts is for
 * stores: what is armed after start and reconcile, that a due occurrence runs once and the next one is
 * armed, that paused, removed and disarmed jobs stop firing, and that stop leaves no timer behind.
 */
export function providerContract(name: string, makeSubject: () => Promise<ProviderSubject>): void {
  describe(`Scheduler provider contract: ${name}`, () => {
    let s: ProviderSubject;
    beforeEach(async () => {
      s = await makeSubject();
    });
    afterEach(async () => {
      await s.provider.stop();
      await s.cleanup();
    });

    const fired = (jobId: string) => s.h.handled.of(jobId).map((c) => c.fire_at - T0);

    it('start arms every active job (not a paused one) and is settled', async () => {
      await s.h.addJob(recordSpec('five', 'every 5m'));
      await s.h.addJob(recordSpec('hourly', '@hourly'));
      const paused = await s.h.addJob(recordSpec('paused', 'every 5m'));
      await s.h.store.updateJob(paused.id, (j) => ({ ...j, state: 'paused' }));
      await s.provider.start();

      expect(s.provider.isArmed('five')).toBe(true);
      expect(s.provider.isArmed('hourly')).toBe(true);
      expect(s.provider.isArmed('paused')).toBe(false);
      expect(s.provider.status()).toMatchObject({ provider: s.provider.name, armedCount: 2 });
      expect(s.provider.status().lastReconcile).toMatchObject({ armed: 2, cancelled: 0, failed: 0 });
      expect(s.provider.settled()).toBe(true);
      expect(s.h.handled.calls).toHaveLength(0);
    });

    it('a second reconcile with nothing changed arms nothing again', async () => {
      await s.h.addJob(recordSpec('five', 'every 5m'));
      await s.h.addJob(recordSpec('seven', 'every 7m'));
      await s.provider.start();
      expect(await s.provider.reconcile()).toMatchObject({ armed: 0, cancelled: 0, unchanged: 2, failed: 0 });
    });

    it('runs a due occurrence once, through the claim, and arms the next one', async () => {
      await s.h.addJob(recordSpec('five', 'every 5m'));
      await s.h.addJob(recordSpec('seven', 'every 7m'));
      await s.provider.start();

      await s.fireDue(T0 + 5 * MINUTE);
      expect(fired('five')).toEqual([5 * MINUTE]);
      expect(fired('seven')).toEqual([]);
      expect(await s.h.store.getLedgerEntry('five', T0 + 5 * MINUTE)).toMatchObject({
        trigger: s.trigger,
        status: 'finished',
      });
      expect((await s.h.store.getJob('five'))?.next_run_at).toBe(T0 + 10 * MINUTE);
      expect(s.provider.isArmed('five')).toBe(true);

      await s.fireDue(T0 + 10 * MINUTE);
      expect(fired('five')).toEqual([5 * MINUTE, 10 * MINUTE]);
      expect(fired('seven')).toEqual([7 * MINUTE]);
    });

    it('stops firing a job once it is paused or removed and the provider reconciles', async () => {
      await s.h.addJob(recordSpec('kept', 'every 5m'));
      await s.h.addJob(recordSpec('paused', 'every 5m'));
      await s.h.addJob(recordSpec('removed', 'every 5m'));
      await s.provider.start();

      await s.h.store.updateJob('paused', (j) => ({ ...j, state: 'paused' }));
      await s.h.store.removeJob('removed');
      expect(await s.provider.reconcile()).toMatchObject({ cancelled: 2 });
      expect(s.provider.isArmed('paused')).toBe(false);
      expect(s.provider.isArmed('removed')).toBe(false);

      await s.fireDue(T0 + 5 * MINUTE);
      expect(fired('kept')).toEqual([5 * MINUTE]);
      expect(fired('paused')).toEqual([]);
      expect(fired('removed')).toEqual([]);
    });

    it('disarm() removes one job’s arm and leaves the others', async () => {
      await s.h.addJob(recordSpec('a', 'every 5m'));
      await s.h.addJob(recordSpec('b', 'every 5m'));
      await s.provider.start();
      await s.provider.disarm('a');
      expect(s.provider.isArmed('a')).toBe(false);
      expect(s.provider.isArmed('b')).toBe(true);
      await s.fireDue(T0 + 5 * MINUTE);
      expect(fired('a')).toEqual([]);
      expect(fired('b')).toEqual([5 * MINUTE]);
    });

    it('stop leaves no timer behind', async () => {
      await s.h.addJob(recordSpec('five', 'every 5m'));
      await s.provider.start();
      await s.provider.stop();
      expect(s.h.clock.pending()).toBe(0);
    });
  });
}
