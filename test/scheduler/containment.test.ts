import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Emulator } from '../../src/emulator/index.js';
import type { Job } from '../../src/jobs/model.js';
import { formatFireAt, type NasClient } from '../../src/nas/nas.js';
import { CLAIM_LEAD_MS } from '../../src/scheduler/builtin.js';
import { FileStore } from '../../src/store/file-store.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import type { LedgerEntry, Owner } from '../../src/store/store.js';
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
} from '../helpers/scheduler-fixtures.js';

/*
 * One job that throws (any error: the RangeError of a value nested too deep, a TypeError of a field of the
 * wrong type) must not stop a loop over jobs: reconcile (both providers), the misfire rule, boot recovery.
 */

/** A MemoryStore that also hands out one job (and one claimed row) whose every read throws, as a poisoned record did. */
class PoisonedStore extends MemoryStore {
  constructor(private readonly poisonedId: string) {
    super();
  }

  override async listJobs(): Promise<Job[]> {
    const jobs = await super.listJobs();
    const poisoned = { ...jobs[0]!, id: this.poisonedId };
    Object.defineProperty(poisoned, 'next_run_at', {
      get() {
        throw new RangeError('Maximum call stack size exceeded');
      },
    });
    return [poisoned, ...jobs];
  }

  override async listClaimed(): Promise<LedgerEntry[]> {
    const rows = await super.listClaimed();
    // A row with an instant nobody can print: toISOString() throws a RangeError.
    const junk = { ...rows[0]!, job_id: this.poisonedId, run_id: 'junk', fire_at: Number.NaN };
    return [junk, ...rows];
  }
}

let h: SchedulerHarness;
let emulator: Emulator | undefined;
const clients: NasClient[] = [];
const dirs: string[] = [];

afterEach(async () => {
  await h?.current.provider?.stop();
  for (const c of clients.splice(0)) await c.close();
  await emulator?.close();
  emulator = undefined;
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function nas(): Promise<() => Promise<NasClient>> {
  emulator = await startFrozenEmulator();
  const client = nasClientFor(emulator.url, emulator.agentToken, h.clock);
  clients.push(client);
  return async () => client;
}

describe('per-job containment in the loops over jobs', () => {
  it('chronos reconcile arms every other job and leaves the throwing one’s NAS arm alone', async () => {
    h = createHarness(T0, new PoisonedStore('poison'));
    await h.addJob(recordSpec('alpha', 'every 15m'));
    await h.addJob(recordSpec('beta', 'every 1h'));
    const client = await nas();
    await armDirectly(emulator!, 'poison', formatFireAt(T0 + 5 * MINUTE));
    const provider = h.chronos(client);
    await provider.start();

    expect(
      emulator!
        .armed()
        .map((a) => a.job_id)
        .sort(),
    ).toEqual(['alpha', 'beta', 'poison']);
    expect(callsOf(emulator!, 'cancel')).toBe(0);
    expect(provider.isArmed('alpha') && provider.isArmed('beta')).toBe(true);
    expect(provider.status().lastReconcile).toMatchObject({ armed: 2, failed: 0 });
    expect(provider.settled()).toBe(true);
  });

  it('builtin reconcile sets its timer for the other jobs and counts the throwing one as failed', async () => {
    h = createHarness(T0, new PoisonedStore('poison'));
    await h.addJob(recordSpec('alpha', 'every 15m'));
    await h.addJob(recordSpec('beta', 'every 5m'));
    const provider = h.builtin();
    await provider.start();
    expect(h.clock.nextTimerAt()).toBe(T0 + 5 * MINUTE - CLAIM_LEAD_MS);
    expect(provider.status()).toMatchObject({ armedCount: 2, lastReconcile: { armed: 2, failed: 1 } });
  });

  it('the misfire rule handles every other overdue job', async () => {
    h = createHarness(T0, new PoisonedStore('poison'));
    await h.addJob(recordSpec('alpha', 'every 15m'));
    await h.addJob(recordSpec('beta', 'every 15m'));
    h.builtin();
    await h.clock.advance(25 * MINUTE); // both 10 min overdue, past their 300 s grace
    const handled = await h.engine.applyMisfires(await h.store.listJobs());
    expect(handled).toBe(2);
    await h.runsSettled();
    expect(h.handled.calls.map((c) => c.job.id).sort()).toEqual(['alpha', 'beta']);
  });

  it('boot recovery recovers every other interrupted run', async () => {
    h = createHarness(T0, new PoisonedStore('poison'));
    const dead: Owner = { boot_id: 'dead', pid: 999_999, host: 'gone' };
    const job = await h.addJob(recordSpec('alpha', 'every 15m'));
    await h.store.transact(job.id, () => ({
      ledger: [
        {
          job_id: job.id,
          fire_at: T0,
          status: 'claimed',
          trigger: 'nas',
          run_id: 'run-alpha',
          owner: dead,
          claimed_at: T0,
          expires_at: T0 + 1,
        },
      ],
      result: null,
    }));
    await h.clock.advance(MINUTE);
    const recovered = await h.runner.recoverInterrupted((o) => o.boot_id !== 'dead');
    expect(recovered.map((r) => r.run_id)).toEqual(['run-alpha']);
    expect((await h.store.getLedgerEntry('alpha', T0))?.status).toBe('interrupted');
  });

  it('chronos reconcile over a damaged job file arms the others and never cancels the damaged job’s arm', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'chronos-containment-'));
    dirs.push(dir);
    const store = await FileStore.open({ dir });
    h = createHarness(T0, store);
    await h.addJob(recordSpec('alpha', 'every 15m'));
    await h.addJob(recordSpec('broken', 'every 15m'));
    await h.addJob(recordSpec('gamma', 'every 1h'));
    await writeFile(join(dir, 'jobs', 'broken.json'), '{"version":1,"job":{"id":"bro');
    const client = await nas();
    await armDirectly(emulator!, 'broken', formatFireAt(T0 + 15 * MINUTE));
    const provider = h.chronos(client);
    await provider.start();

    expect(
      emulator!
        .armed()
        .map((a) => a.job_id)
        .sort(),
    ).toEqual(['alpha', 'broken', 'gamma']);
    expect(callsOf(emulator!, 'cancel')).toBe(0);
    expect(provider.settled()).toBe(true);
    // A later reconcile leaves it alone too.
    await provider.reconcile();
    expect(callsOf(emulator!, 'cancel')).toBe(0);
    await store.close();
  });
});
