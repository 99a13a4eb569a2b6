import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Emulator } from '../../src/emulator/index.js';
import { dedupKey, formatFireAt, type NasClient } from '../../src/nas/nas.js';
import { DEFAULT_DUE_SLACK_MS } from '../../src/scheduler/chronos.js';
import {
  armDirectly,
  callsOf,
  createHarness,
  MINUTE,
  type NasProxy,
  nasClientFor,
  recordSpec,
  type SchedulerHarness,
  startFrozenEmulator,
  startNasProxy,
  T0,
  waitUntil,
} from '../helpers/scheduler-fixtures.js';

let emulator: Emulator;
let h: SchedulerHarness;
const clients: NasClient[] = [];
let proxy: NasProxy | undefined;

function nasAt(url: string): () => Promise<NasClient> {
  const client = nasClientFor(url, emulator.agentToken, h.clock);
  clients.push(client);
  return async () => client;
}

/** When the provider's due watch fires for an instant (the default slack after it). */
function dueWatch(instant: number): number {
  return instant + DEFAULT_DUE_SLACK_MS;
}

/** Instants of the pending timers, earliest first. */
function timerInstants(): number[] {
  return h.clock.instants();
}

beforeEach(async () => {
  emulator = await startFrozenEmulator();
  h = createHarness();
});

afterEach(async () => {
  await h.current.provider?.stop();
  for (const c of clients.splice(0)) await c.close();
  await proxy?.close();
  proxy = undefined;
  await emulator.close();
});

describe('ChronosProvider reconcile against the NAS emulator', () => {
  it('arms every desired job with its fire_at and dedup key', async () => {
    const a = await h.addJob(recordSpec('alpha', 'every 15m'));
    const b = await h.addJob(recordSpec('beta', '0 9 * * *', { timezone: 'Europe/Paris' }));
    const c = await h.addJob(recordSpec('gamma', 'in 45m'));
    const provider = h.chronos(nasAt(emulator.url));
    await provider.start();

    const armed = new Map(emulator.armed().map((arm) => [arm.job_id, arm]));
    expect(armed.size).toBe(3);
    for (const job of [a, b, c]) {
      const arm = armed.get(job.id);
      expect(arm?.fire_at).toBe(formatFireAt(job.next_run_at!));
      expect(arm?.dedup_key).toBe(dedupKey(job.id, job.next_run_at!));
      expect(provider.isArmed(job.id)).toBe(true);
    }
    expect(armed.get('beta')?.fire_at).toBe('2026-01-01T08:00:00Z');
    const summary = provider.status().lastReconcile!;
    expect(summary).toMatchObject({ armed: 3, cancelled: 0, unchanged: 0, failed: 0, trusted: true });
    expect(provider.settled()).toBe(true);
  });

  it('makes zero NAS calls when nothing changed', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    await h.addJob(recordSpec('beta', 'every 1h'));
    const provider = h.chronos(nasAt(emulator.url));
    await provider.start();
    const before = emulator.provisions().length;

    const summary = await provider.reconcile();
    await provider.reconcile();

    expect(emulator.provisions().length).toBe(before);
    expect(summary).toMatchObject({ armed: 0, cancelled: 0, unchanged: 2, failed: 0 });
  });

  it('re-arms only the job whose next_run_at changed', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    await h.addJob(recordSpec('beta', 'every 1h'));
    const provider = h.chronos(nasAt(emulator.url));
    await provider.start();
    const before = emulator.provisions().length;

    const moved = T0 + 20 * MINUTE;
    await h.store.updateJob('beta', (job) => ({ ...job, next_run_at: moved }));
    const summary = await provider.reconcile();

    // One provision, then one list that confirms it (a list sent after the arm).
    const calls = emulator.provisions().slice(before);
    expect(calls.map((c) => c.kind)).toEqual(['provision', 'list']);
    expect(calls[0]).toMatchObject({ kind: 'provision', status: 200, body: { job_id: 'beta' } });
    expect(provider.settled()).toBe(true);
    expect(emulator.armed().find((arm) => arm.job_id === 'beta')?.fire_at).toBe(formatFireAt(moved));
    expect(summary).toMatchObject({ armed: 1, unchanged: 1, cancelled: 0, failed: 0 });
  });

  it('cancels the arm of a removed job and of a paused job (orphans)', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    await h.addJob(recordSpec('beta', 'every 1h'));
    await h.addJob(recordSpec('gamma', 'every 2h'));
    const provider = h.chronos(nasAt(emulator.url));
    await provider.start();

    await h.store.removeJob('alpha');
    await h.store.updateJob('beta', (job) => ({ ...job, state: 'paused' }));
    const summary = await provider.reconcile();

    expect(summary).toMatchObject({ armed: 0, cancelled: 2, unchanged: 1, failed: 0 });
    expect(emulator.armed().map((arm) => arm.job_id)).toEqual(['gamma']);
    expect(provider.isArmed('alpha')).toBe(false);
    expect(provider.settled()).toBe(true);
  });

  it('leaves arms unknown to us alone when the start list failed (untrusted)', async () => {
    await armDirectly(emulator, 'stranger', '2026-06-01T00:00:00Z');
    await h.addJob(recordSpec('alpha', 'every 15m'));
    proxy = await startNasProxy(emulator.url);
    proxy.failList = true;
    const provider = h.chronos(nasAt(proxy.url));
    await provider.start();

    // The failed list counts as a failure: nothing can be confirmed, so the process must not sleep.
    const summary = provider.status().lastReconcile!;
    expect(summary).toMatchObject({ trusted: false, armed: 1, cancelled: 0, failed: 1 });
    expect(provider.settled()).toBe(false);
    expect(provider.status().unconfirmed.map((u) => u.job_id)).toEqual(['alpha']);
    expect(
      emulator
        .armed()
        .map((arm) => arm.job_id)
        .sort(),
    ).toEqual(['alpha', 'stranger']);
    expect(callsOf(emulator, 'cancel')).toBe(0);
  });

  it('cancels arms unknown to us when the start list succeeded (trusted)', async () => {
    await armDirectly(emulator, 'stranger', '2026-06-01T00:00:00Z');
    await h.addJob(recordSpec('alpha', 'every 15m'));
    const provider = h.chronos(nasAt(emulator.url));
    await provider.start();

    const summary = provider.status().lastReconcile!;
    expect(summary).toMatchObject({ trusted: true, armed: 1, cancelled: 1, failed: 0 });
    expect(emulator.armed().map((arm) => arm.job_id)).toEqual(['alpha']);
  });

  it('compares instants, not strings: an arm listed as 02:00-05:00 equals our 07:00Z', async () => {
    // 30 2 * * * in New York on the spring-forward day: 02:30 does not exist, so it fires at 03:00 EDT = 07:00Z.
    h.clock.set('2026-03-08T00:00:00Z');
    const job = await h.addJob(recordSpec('dst', '30 2 * * *', { timezone: 'America/New_York' }));
    expect(job.next_run_at).toBe(Date.parse('2026-03-08T07:00:00Z'));
    await armDirectly(emulator, 'dst', '2026-03-08T02:00:00-05:00');
    const provider = h.chronos(nasAt(emulator.url));
    await provider.start();

    expect(callsOf(emulator, 'provision')).toBe(1); // the direct arm above, none from Chronos
    expect(provider.status().lastReconcile).toMatchObject({
      unchanged: 1,
      armed: 0,
      failed: 0,
      trusted: true,
    });
    expect(provider.isArmed('dst')).toBe(true);
    expect(emulator.armed()[0]?.fire_at).toBe('2026-03-08T02:00:00-05:00');
  });

  it('retries a failed provision on a heal timer until the job is armed', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    emulator.faults.provisionFailures = 1;
    const provider = h.chronos(nasAt(emulator.url), { healBackoff: { base: 1_000, max: 60_000 } });
    await provider.start();

    expect(provider.status().lastReconcile).toMatchObject({ failed: 1, armed: 0 });
    expect(provider.settled()).toBe(false);
    expect(provider.isArmed('alpha')).toBe(false);
    expect(timerInstants()).toEqual([T0 + 1_000, dueWatch(T0 + 15 * MINUTE)]);
    expect(emulator.armed()).toHaveLength(0);

    await h.clock.advance(1_000);
    await waitUntil(() => provider.settled());

    expect(provider.isArmed('alpha')).toBe(true);
    expect(emulator.armed().map((arm) => arm.job_id)).toEqual(['alpha']);
    expect(provider.status().lastReconcile).toMatchObject({ failed: 0, armed: 1 });
    expect(timerInstants()).toEqual([dueWatch(T0 + 15 * MINUTE)]);
  });

  it('backs off between heal rounds while provision keeps failing', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    emulator.faults.provisionFailures = 3;
    const provider = h.chronos(nasAt(emulator.url), { healBackoff: { base: 1_000, max: 60_000 } });
    await provider.start();
    const delays: number[] = [];
    for (let round = 0; round < 3; round++) {
      const at = h.clock.nextTimerAt()!;
      delays.push(at - h.clock.now());
      const calls = callsOf(emulator, 'provision');
      await h.clock.advanceTo(at);
      await waitUntil(
        () => callsOf(emulator, 'provision') > calls && (h.clock.pending() > 0 || provider.settled()),
      );
    }
    expect(delays).toEqual([1_000, 2_000, 4_000]);
    expect(provider.settled()).toBe(true);
    expect(timerInstants()).toEqual([dueWatch(T0 + 15 * MINUTE)]);
  });

  it("waits at least as long as NAS's Retry-After before healing", async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    // The emulator answers a failed provision with 503 and Retry-After: 1.
    emulator.faults.provisionFailures = 1;
    const provider = h.chronos(nasAt(emulator.url), { healBackoff: { base: 100, max: 60_000 } });
    await provider.start();
    expect(provider.status().lastReconcile).toMatchObject({ failed: 1 });
    expect(h.clock.nextTimerAt()! - h.clock.now()).toBe(1_000);
    await h.clock.advance(1_000);
    await waitUntil(() => provider.settled());
    expect(provider.isArmed('alpha')).toBe(true);
  });

  it.each([
    ['120', 120_000],
    // A NAS asking for an hour is capped (MAX_RETRY_AFTER_MS): jobs must not stay unarmed that long.
    ['3600', 300_000],
  ])('honours Retry-After: %s beyond the backoff cap (heals after %i ms)', async (header, expected) => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    proxy = await startNasProxy(emulator.url);
    proxy.failProvisions = { count: 1, retryAfter: header };
    // Before: the heal delay was capped at the backoff's 60 s, so NAS was asked again too early.
    const provider = h.chronos(nasAt(proxy.url), { healBackoff: { base: 100, max: 60_000 } });
    await provider.start();
    expect(provider.status().lastReconcile).toMatchObject({ failed: 1 });
    expect(h.clock.nextTimerAt()! - h.clock.now()).toBe(expected);
    await h.clock.advance(expected - 1);
    expect(provider.isArmed('alpha')).toBe(false);
    await h.clock.advance(1);
    await waitUntil(() => provider.settled());
    expect(provider.isArmed('alpha')).toBe(true);
  });

  it('does not count as settled when the store could not be read, and heals once it can', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    const listJobs = h.store.listJobs.bind(h.store);
    let failures = 1;
    h.store.listJobs = async () => {
      if (failures-- > 0) throw new Error('EIO: disk went away');
      return listJobs();
    };
    const provider = h.chronos(nasAt(emulator.url), { healBackoff: { base: 1_000, max: 60_000 } });
    await provider.start();
    expect(provider.settled()).toBe(false);
    expect(emulator.armed()).toHaveLength(0);
    expect(timerInstants()).toEqual([T0 + 1_000]);

    await h.clock.advance(1_000);
    await waitUntil(() => provider.settled());
    expect(emulator.armed().map((arm) => arm.job_id)).toEqual(['alpha']);
  });

  it('never lets a reconcile working from an older job list overwrite a newer arm', async () => {
    const job = await h.addJob(recordSpec('alpha', 'every 15m'));
    const provider = h.chronos(nasAt(emulator.url));
    // A fire claims alpha's current instant while the reconcile is between reading the list and arming.
    const later = { ...job, next_run_at: job.next_run_at! + 15 * MINUTE };
    const listJobs = h.store.listJobs.bind(h.store);
    h.store.listJobs = async () => {
      const jobs = await listJobs();
      await h.store.updateJob('alpha', () => later);
      await provider.arm(later);
      return jobs;
    };
    await provider.start();

    expect(emulator.armed().map((arm) => arm.fire_at)).toEqual([formatFireAt(later.next_run_at)]);
    const provisioned = emulator
      .provisions()
      .filter((call) => call.kind === 'provision')
      .map((call) => (call.body as { fire_at: string }).fire_at);
    expect(provisioned).toEqual([formatFireAt(later.next_run_at)]);
    expect(provider.settled()).toBe(true);
  });

  it('re-arms a job resumed while its cancel is still on the way to NAS', async () => {
    const job = await h.addJob(recordSpec('alpha', 'every 15m'));
    proxy = await startNasProxy(emulator.url);
    const nas = proxy;
    const provider = h.chronos(nasAt(nas.url));
    await provider.start();
    expect(emulator.armed().map((arm) => arm.job_id)).toEqual(['alpha']);

    // Paused: the cancel is held at NAS. Resumed at the same instant before the cancel lands.
    nas.hold = true;
    const cancelling = provider.disarm('alpha');
    await waitUntil(() => nas.held() === 1);
    const arming = provider.arm(job);
    nas.release();
    await Promise.all([cancelling, arming]);
    // The arm is confirmed by the list that follows it.
    expect(provider.settled()).toBe(false);
    await h.clock.advance(50);

    await waitUntil(() => provider.settled());
    expect(emulator.armed().map((arm) => [arm.job_id, arm.fire_at])).toEqual([
      ['alpha', formatFireAt(job.next_run_at!)],
    ]);
  });

  it('hands over to the fallback once on invalid_client and never calls NAS again', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    await h.addJob(recordSpec('beta', 'every 1h'));
    await h.addJob(recordSpec('gamma', 'every 2h'));
    const reasons: string[] = [];
    const provider = h.chronos(nasAt(emulator.url), {
      onInvalidClient: (r) => reasons.push(r),
      concurrency: 1,
    });
    await provider.start();
    expect(reasons).toHaveLength(0);

    emulator.faults.rejectAgent = true;
    await h.store.updateJob('alpha', (job) => ({ ...job, next_run_at: T0 + 5 * MINUTE }));
    await h.store.updateJob('beta', (job) => ({ ...job, next_run_at: T0 + 6 * MINUTE }));
    await h.store.updateJob('gamma', (job) => ({ ...job, next_run_at: T0 + 7 * MINUTE }));
    const before = emulator.provisions().length;
    await provider.reconcile();

    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toMatch(/invalid_client/);
    // One rejected call, then silence: the remaining provisions of the same round are not sent.
    expect(emulator.provisions().length).toBe(before + 1);
    expect(emulator.provisions().at(-1)).toMatchObject({ status: 403 });

    const job = (await h.store.getJob('alpha'))!;
    await provider.reconcile();
    await provider.arm(job);
    await provider.disarm('beta');
    provider.onJobsChanged();
    await h.clock.advance(60_000);
    expect(emulator.provisions().length).toBe(before + 1);
    expect(reasons).toHaveLength(1);
    expect(provider.settled()).toBe(false);
    // A stopped provider leaves no timer at all: not even the due watch it kept while in charge.
    expect(timerInstants()).toEqual([]);
  });

  it('stops at the start list when the agent is rejected from the first call', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    emulator.faults.rejectAgent = true;
    const reasons: string[] = [];
    const provider = h.chronos(nasAt(emulator.url), { onInvalidClient: (r) => reasons.push(r) });
    await provider.start();

    expect(reasons).toHaveLength(1);
    expect(emulator.provisions().map((p) => p.kind)).toEqual(['list']);
    await provider.reconcile();
    expect(emulator.provisions()).toHaveLength(1);
  });

  it('keeps at most `concurrency` calls in flight toward NAS', async () => {
    const ids = Array.from({ length: 12 }, (_, i) => `job-${i}`);
    for (const id of ids) await h.addJob(recordSpec(id, 'every 15m'));
    proxy = await startNasProxy(emulator.url);
    const provider = h.chronos(nasAt(proxy.url), { concurrency: 4 });
    await provider.start();
    for (const id of ids) await h.store.updateJob(id, (job) => ({ ...job, next_run_at: T0 + 30 * MINUTE }));

    proxy.hold = true;
    const round = provider.reconcile();
    await waitUntil(() => proxy!.held() === 4);
    // Every call is counted as NAS activity before its request is sent: a fifth would show here at once.
    expect(h.activity.snapshot().nas).toBe(4);
    proxy.release();
    const summary = await round;

    expect(summary).toMatchObject({ armed: 12, failed: 0 });
    expect(emulator.armed().every((arm) => arm.fire_at === formatFireAt(T0 + 30 * MINUTE))).toBe(true);
  });

  it('leaves no periodic timer behind: only the one-shot watch for the next due instant', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    await h.addJob(recordSpec('beta', 'every 1h'));
    const provider = h.chronos(nasAt(emulator.url));
    await provider.start();
    expect(timerInstants()).toEqual([dueWatch(T0 + 15 * MINUTE)]);

    // A mutation schedules one debounced reconcile, and nothing after it.
    await h.store.updateJob('alpha', (job) => ({ ...job, next_run_at: T0 + 20 * MINUTE }));
    provider.onJobsChanged();
    provider.onJobsChanged();
    expect(timerInstants()).toEqual([T0 + 50, dueWatch(T0 + 15 * MINUTE)]);
    await h.clock.advance(50);
    await waitUntil(() => provider.settled());
    expect(timerInstants()).toEqual([dueWatch(T0 + 20 * MINUTE)]);
    expect(callsOf(emulator, 'provision')).toBe(3);
    expect(emulator.armed().find((arm) => arm.job_id === 'alpha')?.fire_at).toBe(
      formatFireAt(T0 + 20 * MINUTE),
    );
  });
});
