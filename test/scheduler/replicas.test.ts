import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Emulator } from '../../src/emulator/index.js';
import type { Job } from '../../src/jobs/model.js';
import { formatFireAt, type NasClient } from '../../src/nas/nas.js';
import type { ChronosProvider } from '../../src/scheduler/chronos.js';
import type { ArmLock } from '../../src/store/arm-lock.js';
import { LeaseArmLock, MemoryLeaseBackend } from '../../src/store/lease-arm-lock.js';
import { flushMicrotasks } from '../helpers/manual-clock.js';
import {
  armDirectly,
  callsOf,
  createHarness,
  MINUTE,
  nasClientFor,
  recordSpec,
  type SchedulerHarness,
  silentLogger,
  startFrozenEmulator,
  T0,
} from '../helpers/scheduler-fixtures.js';

/*
 * Two replicas in one process: two ChronosProviders over one store, one NAS (the emulator), and one
 * lease backend, each with its own LeaseArmLock (its own holder name), as two processes on one
 * database would have.
 */

let emulator: Emulator;
let h: SchedulerHarness;
let backend: MemoryLeaseBackend;
const clients: NasClient[] = [];
const providers: ChronosProvider[] = [];

function nas(): () => Promise<NasClient> {
  const client = nasClientFor(emulator.url, emulator.agentToken, h.clock);
  clients.push(client);
  return async () => client;
}

function replica(name: string, armLock: ArmLock = leaseLock(name)): ChronosProvider {
  const provider = h.chronos(nas(), { armLock });
  providers.push(provider);
  return provider;
}

function leaseLock(name: string): LeaseArmLock {
  return new LeaseArmLock({ backend, holder: name, clock: h.clock, logger: silentLogger, ttlMs: 30_000 });
}

/** The instant NAS holds for the job, or undefined. */
function nasHolds(jobId: string): string | undefined {
  return emulator.armed().find((arm) => arm.job_id === jobId)?.fire_at;
}

beforeEach(async () => {
  emulator = await startFrozenEmulator();
  h = createHarness();
  backend = new MemoryLeaseBackend(h.clock);
});

afterEach(async () => {
  for (const p of providers.splice(0)) await p.stop();
  for (const c of clients.splice(0)) await c.close();
  await emulator.close();
});

describe('replicas arming one ledger under the arm lease', () => {
  it('arms the stored job, not the stale copy a replica was handed', async () => {
    const job = await h.addJob(recordSpec('tick', 'every 15m'));
    const a = replica('a');
    // B was woken by a fire and has not reconciled yet: it knows nothing of what NAS holds.
    const b = replica('b');
    await a.start();
    expect(nasHolds('tick')).toBe(formatFireAt(T0 + 15 * MINUTE));

    // Replica A claimed 00:15 and moved the job to 00:30 (and armed it); B still holds the copy it read
    // before, and arms from it after A.
    const advanced = await h.store.updateJob('tick', (j): Job => ({ ...j, next_run_at: T0 + 30 * MINUTE }));
    await a.arm(advanced);
    expect(nasHolds('tick')).toBe(formatFireAt(T0 + 30 * MINUTE));
    await b.arm(job);

    expect(nasHolds('tick')).toBe(formatFireAt(T0 + 30 * MINUTE));
  });

  it('a replica that disarmed a job does not leave it unarmed when another resumes it', async () => {
    await h.addJob(recordSpec('tick', 'every 15m'));
    const a = replica('a');
    const b = replica('b');
    await a.start();
    await b.start();
    expect(b.isArmed('tick')).toBe(true);

    // Paused through A (A cancels the arm at NAS), then resumed through B: B's belief that NAS holds the
    // arm is out of date, and the lease tells it so.
    await h.store.updateJob('tick', (j): Job => ({ ...j, state: 'paused' }));
    await a.disarm('tick');
    expect(nasHolds('tick')).toBeUndefined();
    const resumed = await h.store.updateJob('tick', (j): Job => ({ ...j, state: 'scheduled' }));
    await b.arm(resumed);

    expect(nasHolds('tick')).toBe(formatFireAt(T0 + 15 * MINUTE));
  });

  it('a disarm for a job the store holds active (another replica re-created or resumed it) keeps its arm', async () => {
    await h.addJob(recordSpec('tick', 'every 15m'));
    const a = replica('a');
    await a.start();
    expect(nasHolds('tick')).toBe(formatFireAt(T0 + 15 * MINUTE));

    // A fire reached A while the job was gone; B re-created it before A's disarm ran.
    await a.disarm('tick');

    expect(nasHolds('tick')).toBe(formatFireAt(T0 + 15 * MINUTE));
  });
});

/** The instants provisioned at NAS for the job, in call order. */
function provisioned(jobId: string): string[] {
  return emulator
    .provisions()
    .filter((p) => p.kind === 'provision' && p.status === 200)
    .map((p) => p.body as { job_id: string; fire_at: string })
    .filter((body) => body.job_id === jobId)
    .map((body) => body.fire_at);
}

describe('replicas share what NAS holds through the arm lease', () => {
  it('an instant one replica had acknowledged is not provisioned again by the other, nor by itself after the other', async () => {
    const job = await h.addJob(recordSpec('tick', 'every 15m'));
    const a = replica('a');
    const b = replica('b');
    await a.arm(job);
    expect(provisioned('tick')).toEqual([formatFireAt(T0 + 15 * MINUTE)]);

    // B arms the same stored job (its own fire's after-run arm, say): A's record says NAS holds it.
    await b.arm(job);
    expect(b.isArmed('tick')).toBe(true);
    // A's next section comes after B's: A takes over B's view instead of forgetting its own.
    await a.arm(job);
    expect(provisioned('tick')).toEqual([formatFireAt(T0 + 15 * MINUTE)]);

    // A claim through B moves the job on: B provisions the new instant once, A sees it armed.
    const advanced = await h.store.updateJob('tick', (j): Job => ({ ...j, next_run_at: T0 + 30 * MINUTE }));
    await b.arm(advanced);
    await a.arm(advanced);
    expect(a.isArmed('tick')).toBe(true);
    expect(provisioned('tick')).toEqual([formatFireAt(T0 + 15 * MINUTE), formatFireAt(T0 + 30 * MINUTE)]);
  });

  it('a cancel by one replica is known to the other: it neither trusts the old arm nor cancels again', async () => {
    const job = await h.addJob(recordSpec('tick', 'every 15m'));
    const a = replica('a');
    const b = replica('b');
    await b.arm(job);
    await h.store.updateJob('tick', (j): Job => ({ ...j, state: 'paused' }));
    await a.disarm('tick');
    expect(nasHolds('tick')).toBeUndefined();
    expect(callsOf(emulator, 'cancel')).toBe(1);

    await b.disarm('tick');
    expect(callsOf(emulator, 'cancel')).toBe(1);
    const resumed = await h.store.updateJob('tick', (j): Job => ({ ...j, state: 'scheduled' }));
    await b.arm(resumed);
    expect(nasHolds('tick')).toBe(formatFireAt(T0 + 15 * MINUTE));
  });

  it('a delivery answered by one replica consumes the arm the other recorded', async () => {
    const job = await h.addJob(recordSpec('tick', 'every 15m'));
    const a = replica('a');
    const b = replica('b');
    await a.arm(job);
    // NAS delivered 00:15 to B (a duplicate, say: nothing moved the job) and consumed the arm.
    b.onDelivered('tick', T0 + 15 * MINUTE);
    await b.arm(job);
    expect(provisioned('tick')).toEqual([formatFireAt(T0 + 15 * MINUTE), formatFireAt(T0 + 15 * MINUTE)]);
  });

  it('after a holder died mid-section (its lease expired unreleased) the next holder trusts no recorded view', async () => {
    const job = await h.addJob(recordSpec('tick', 'every 15m'));
    const a = replica('a');
    await a.arm(job);
    // A replica took the lease, called NAS (cancelled the arm, say) and died before recording anything.
    expect(await backend.tryAcquire('dead', 30_000)).toMatchObject({ previousReleased: true });
    await armDirectly(emulator, 'tick', formatFireAt(T0 + 60 * MINUTE));
    const b = replica('b');
    const arming = b.arm(job);
    await flushMicrotasks();
    await h.clock.advance(31_000);
    await arming;
    // B provisioned although A's record said NAS held 00:15: that record may predate the dead holder's calls.
    expect(provisioned('tick')).toEqual([15, 60, 15].map((minutes) => formatFireAt(T0 + minutes * MINUTE)));
    expect(nasHolds('tick')).toBe(formatFireAt(T0 + 15 * MINUTE));
  });
});

describe('LeaseArmLock', () => {
  it('runs one section at a time across holders and tells a holder when another held it since', async () => {
    const a = leaseLock('a');
    const b = leaseLock('b');
    const seen: string[] = [];
    let releaseA!: () => void;
    const aHeld = new Promise<void>((resolve) => {
      releaseA = resolve;
    });
    const first = a.hold(async ({ othersSince }) => {
      seen.push(`a:${othersSince}`);
      await aHeld;
    });
    await flushMicrotasks();
    const second = b.hold(async ({ othersSince }) => {
      seen.push(`b:${othersSince}`);
    });
    // B polls on the clock while A holds: however long it waits, it does not get in.
    for (let i = 0; i < 5; i++) await h.clock.advance(500);
    expect(seen).toEqual(['a:true']);
    expect(backend.current()).toBe('a');

    releaseA();
    await first;
    await h.clock.advance(500);
    await second;
    expect(seen).toEqual(['a:true', 'b:true']);

    await b.hold(async ({ othersSince }) => void seen.push(`b:${othersSince}`));
    await a.hold(async ({ othersSince }) => void seen.push(`a:${othersSince}`));
    expect(seen.slice(2)).toEqual(['b:false', 'a:true']);
    expect(backend.current()).toBeNull();
  });

  it('takes over a lease whose holder died once it expired, not before', async () => {
    // A holder that never releases: its process died mid-section.
    expect(await backend.tryAcquire('dead', 30_000)).not.toBeNull();
    const b = leaseLock('b');
    let ran = false;
    const waiting = b.hold(async () => {
      ran = true;
    });
    await flushMicrotasks();
    await h.clock.advance(29_000);
    expect(ran).toBe(false);
    await h.clock.advance(2_000);
    await waiting;
    expect(ran).toBe(true);
  });

  it('renews the lease while a section runs longer than its ttl', async () => {
    const a = leaseLock('a');
    const b = leaseLock('b');
    let releaseA!: () => void;
    const first = a.hold(
      () =>
        new Promise<void>((resolve) => {
          releaseA = resolve;
        }),
    );
    await flushMicrotasks();
    let bRan = false;
    const second = b.hold(async () => {
      bRan = true;
    });
    await h.clock.advance(45_000);
    expect(bRan).toBe(false);
    expect(backend.current()).toBe('a');
    releaseA();
    await first;
    await h.clock.advance(1_000);
    await second;
    expect(bRan).toBe(true);
  });

  it('a hold whose view could not be read adopts the whole view at its next hold', async () => {
    const a = leaseLock('a');
    const b = leaseLock('b');
    await b.hold(async () => {});
    await a.hold(async (held) => held.record(new Map([['tick', T0 + 15 * MINUTE]])));
    const readView = backend.readView.bind(backend);
    backend.readView = () => Promise.reject(new Error('connection lost'));
    await expect(b.hold(async () => 'armed')).rejects.toThrow('connection lost');
    backend.readView = readView;
    expect(await b.hold(async ({ view }) => view)).toEqual({
      reset: true,
      beliefs: new Map([['tick', T0 + 15 * MINUTE]]),
    });
  });

  it('gives up waiting with store_unavailable after its wait limit', async () => {
    const a = new LeaseArmLock({
      backend,
      holder: 'a',
      clock: h.clock,
      logger: silentLogger,
      ttlMs: 30_000,
      maxWaitMs: 5_000,
    });
    expect(await backend.tryAcquire('stuck', 600_000)).not.toBeNull();
    const waiting = a.hold(async () => 'never');
    const outcome = expect(waiting).rejects.toMatchObject({ code: 'store_unavailable' });
    await flushMicrotasks();
    await h.clock.advance(6_000);
    await outcome;
  });
});
