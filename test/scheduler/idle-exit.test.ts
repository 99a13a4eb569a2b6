import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Emulator } from '../../src/emulator/index.js';
import type { Logger } from '../../src/logger.js';
import type { NasClient } from '../../src/nas/nas.js';
import type { ChronosProvider } from '../../src/scheduler/chronos.js';
import { IdleExit, roundSeconds } from '../../src/scheduler/idle-exit.js';
import { recordingLogger } from '../helpers/logger.js';
import {
  callsOf,
  createHarness,
  MINUTE,
  type NasProxy,
  nasClientFor,
  recordSpec,
  type SchedulerHarness,
  silentLogger,
  startFrozenEmulator,
  startNasProxy,
  T0,
  waitUntil,
} from '../helpers/scheduler-fixtures.js';

const IDLE_MS = 10_000;

let emulator: Emulator;
let h: SchedulerHarness;
let client: NasClient;
let proxy: NasProxy | undefined;
let watcher: IdleExit | undefined;
let idleCalls: number;

beforeEach(async () => {
  emulator = await startFrozenEmulator();
  h = createHarness();
  idleCalls = 0;
});

afterEach(async () => {
  watcher?.stop();
  watcher = undefined;
  await h.current.provider?.stop();
  await client?.close();
  await proxy?.close();
  proxy = undefined;
  await emulator.close();
});

async function startProvider(via: string = emulator.url): Promise<ChronosProvider> {
  client = nasClientFor(via, emulator.agentToken, h.clock);
  const provider = h.chronos(async () => client, { healBackoff: { base: 1_000, max: 60_000 } });
  await provider.start();
  return provider;
}

function watch(
  provider: ChronosProvider,
  opts: { logger?: Logger; start?: boolean; idleMs?: number; wokeAt?: number } = {},
): IdleExit {
  watcher = new IdleExit({
    clock: h.clock,
    activity: h.activity,
    logger: opts.logger ?? silentLogger,
    provider: () => provider,
    idleMs: opts.idleMs ?? IDLE_MS,
    ...(opts.wokeAt === undefined ? {} : { wokeAt: opts.wokeAt }),
    onIdle: () => {
      idleCalls += 1;
    },
  });
  if (opts.start ?? true) watcher.start();
  return watcher;
}

/** Wait for the reconcile round that is running (or about to) to finish. */
async function nextReconcile(
  provider: ChronosProvider,
  previous = provider.status().lastReconcile,
): Promise<void> {
  await waitUntil(() => provider.status().lastReconcile !== previous);
}

describe('IdleExit with the chronos provider', () => {
  it('calls onIdle once after idleMs with nothing in flight and every job armed', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    const provider = await startProvider();
    expect(provider.settled()).toBe(true);
    const w = watch(provider);
    expect(w.blocker()).toBeNull();

    await h.clock.advance(IDLE_MS - 1);
    expect(idleCalls).toBe(0);
    await h.clock.advance(1);
    expect(idleCalls).toBe(1);
    await h.clock.advance(10 * IDLE_MS);
    expect(idleCalls).toBe(1);
  });

  it.each(['request', 'run', 'nas'] as const)('never exits while a %s is in flight', async (kind) => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    const provider = await startProvider();
    const w = watch(provider);
    const end = h.activity.begin(kind);

    await h.clock.advance(20 * IDLE_MS);
    expect(idleCalls).toBe(0);
    expect(w.blocker()).toBe('work in flight');

    end();
    await h.clock.advance(IDLE_MS);
    expect(idleCalls).toBe(1);
  });

  it('never exits while a real job run is going', async () => {
    let finish: (() => void) | undefined;
    h.handlers.register('slow', () => new Promise<void>((resolve) => (finish = resolve)));
    await h.addJob({ id: 'slow', schedule: 'every 15m', target: { type: 'handler', name: 'slow' } });
    const provider = await startProvider();
    await h.clock.advanceTo(T0 + 15 * MINUTE);
    watch(provider);

    const outcome = await h.engine.fireLocal('slow', T0 + 15 * MINUTE, 'nas');
    expect(outcome.kind).toBe('accepted');
    await waitUntil(() => finish !== undefined && provider.isArmed('slow'));
    expect(provider.settled()).toBe(false); // armed, not yet confirmed
    await h.clock.advance(50); // the list that confirms the next arm
    await waitUntil(() => provider.settled());
    await h.clock.advance(3 * IDLE_MS);
    expect(idleCalls).toBe(0);

    finish?.();
    await h.runsSettled();
    await h.clock.advance(50); // the post-fire reconcile
    await waitUntil(() => provider.settled() && !h.activity.busy);
    await h.clock.advance(IDLE_MS);
    expect(idleCalls).toBe(1);
    expect((await h.store.listRuns('slow'))[0]?.status).toBe('succeeded');
  });

  it('never exits while a real NAS call is pending', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    proxy = await startNasProxy(emulator.url);
    const provider = await startProvider(proxy.url);
    watch(provider);

    proxy.hold = true;
    await h.store.updateJob('alpha', (job) => ({ ...job, next_run_at: T0 + 20 * MINUTE }));
    const previous = provider.status().lastReconcile;
    provider.onJobsChanged();
    await h.clock.advance(50);
    await waitUntil(() => proxy!.held() === 1);
    await h.clock.advance(20 * IDLE_MS);
    expect(idleCalls).toBe(0);
    expect(h.activity.snapshot().nas).toBe(1);

    proxy.release();
    await nextReconcile(provider, previous);
    await waitUntil(() => !h.activity.busy);
    expect(provider.settled()).toBe(true);
    await h.clock.advance(IDLE_MS);
    expect(idleCalls).toBe(1);
  });

  it('never exits while a job is unarmed, and exits once the heal timer armed it', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    emulator.faults.provisionFailures = 1_000;
    const provider = await startProvider();
    const w = watch(provider);
    expect(provider.settled()).toBe(false);

    for (let round = 0; round < 5; round++) {
      const previous = provider.status().lastReconcile;
      await h.clock.advance(60_000);
      await nextReconcile(provider, previous);
    }
    // At least one failed provision per round (a fast loopback round may fit a second one in an advance).
    expect(callsOf(emulator, 'provision')).toBeGreaterThanOrEqual(6);
    expect(idleCalls).toBe(0);
    expect(w.blocker()).toBe('not every job is confirmed armed');

    emulator.faults.provisionFailures = 0;
    const previous = provider.status().lastReconcile;
    // Run the watcher's pending re-checks so that the next timer is the heal timer, then reach exactly it.
    await h.clock.advance(0);
    await h.clock.advanceTo(h.clock.nextTimerAt()!);
    await nextReconcile(provider, previous);
    await waitUntil(() => !h.activity.busy);
    expect(provider.settled()).toBe(true);
    expect(idleCalls).toBe(0);
    await h.clock.advance(IDLE_MS);
    expect(idleCalls).toBe(1);
  });

  it('restarts the countdown on any activity', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    const provider = await startProvider();
    watch(provider);

    await h.clock.advance(IDLE_MS - 1_000);
    h.activity.begin('request')();
    await h.clock.advance(IDLE_MS - 1);
    expect(idleCalls).toBe(0);
    await h.clock.advance(1);
    expect(idleCalls).toBe(1);
  });

  it('waits for a debounced reconcile after a mutation before counting idle', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    const provider = await startProvider();
    const w = watch(provider);
    await h.clock.advance(IDLE_MS / 2);

    await h.addJob(recordSpec('beta', 'every 1h'));
    const previous = provider.status().lastReconcile;
    provider.onJobsChanged();
    expect(provider.settled()).toBe(false);
    await h.clock.advance(50);
    await nextReconcile(provider, previous);
    await waitUntil(() => !h.activity.busy);
    expect(w.blocker()).toBeNull();
    expect(provider.isArmed('beta')).toBe(true);

    await h.clock.advance(IDLE_MS - 1);
    expect(idleCalls).toBe(0);
    await h.clock.advance(1);
    expect(idleCalls).toBe(1);
  });
});

describe('IdleExit: awake only while there is work', () => {
  /**
   * A process woken by NAS's fire of `slow` at T0+15m, as main.ts wires it: the request is noted before the
   * start-up work, the delivery is reported to the provider, the claimed occurrence starts its run, and
   * the watcher starts once start-up is done. `finish` ends the run.
   */
  async function fireWoken(opts: { logger?: Logger; wokeAt?: number } = {}) {
    let finish: (() => void) | undefined;
    h.handlers.register('slow', () => new Promise<void>((resolve) => (finish = resolve)));
    await h.addJob({ id: 'slow', schedule: 'every 15m', target: { type: 'handler', name: 'slow' } });
    const provider = await startProvider();
    const fireAt = T0 + 15 * MINUTE;
    await h.clock.advanceTo(fireAt);
    const w = watch(provider, { ...opts, start: false });
    w.noteRequest('fire');
    provider.onDelivered('slow', fireAt);
    const outcome = await h.engine.fireLocal('slow', fireAt, 'nas');
    expect(outcome.kind).toBe('accepted');
    w.start();
    await waitUntil(() => finish !== undefined && provider.isArmed('slow'));
    return { provider, w, finish: () => finish?.() };
  }

  /** Run every check the provider and the watcher have due now, then wait for the work they start. */
  async function settle(provider: ChronosProvider): Promise<void> {
    for (let i = 0; i < 5; i++) {
      await h.clock.advance(50);
      await waitUntil(() => !h.activity.busy);
    }
    expect(provider.settled()).toBe(true);
  }

  it('a fire-woken wake stops as soon as the run is recorded and the next arm confirmed, without an idle window', async () => {
    const log = recordingLogger();
    const wokeAt = h.clock.now();
    const { provider, w, finish } = await fireWoken({ logger: log.logger, wokeAt });
    // NAS may still be finishing the delivery: the next arm is confirmed only by a list 1.5 s later.
    expect(provider.settled()).toBe(false);
    await h.clock.advance(1_550);
    await waitUntil(() => provider.settled());
    await h.clock.advance(3 * IDLE_MS);
    expect(idleCalls).toBe(0);
    expect(w.report()).toMatchObject({ cause: 'fire', settledAt: null, awakeBecause: 'work in flight' });

    finish();
    await h.runsSettled();
    // The run's end is recorded, then the post-run reconcile: not settled until it is done.
    expect(w.blocker()).not.toBeNull();
    for (let i = 0; i < 20 && idleCalls === 0; i++) {
      await h.clock.advance(50);
      await waitUntil(() => idleCalls > 0 || !h.activity.busy);
    }
    expect(idleCalls).toBe(1);
    const run = (await h.store.listRuns('slow'))[0];
    expect(run?.status).toBe('succeeded');
    expect(provider.isArmed('slow')).toBe(true);

    const exitLine = log.entries.find((e) => e.msg === 'idle and every job armed; exiting');
    expect(exitLine?.obj).toEqual({
      wake_cause: 'fire',
      woke_at: new Date(wokeAt).toISOString(),
      settled_at: expect.any(String),
      awake_seconds: expect.any(Number),
      idle_ms: 0,
    });
    const logged = exitLine!.obj as { settled_at: string; awake_seconds: number };
    const settledAt = Date.parse(logged.settled_at);
    // Settled by the post-run reconcile (a 50 ms debounce), and stopped then: no idle window after it.
    expect(settledAt).toBeGreaterThanOrEqual(run!.finished_at!);
    expect(settledAt - run!.finished_at!).toBeLessThan(500);
    expect(logged.awake_seconds).toBe(roundSeconds(settledAt - wokeAt));
  });

  it('a fire-woken wake stays up through the idle window when another occurrence is due within it', async () => {
    const { provider, w, finish } = await fireWoken();
    // A second job due 8 s from now: its fire is expected within the 10 s window.
    await h.addJob(recordSpec('soon', 'every 15m'));
    await h.store.updateJob('soon', (job) => ({ ...job, next_run_at: h.clock.now() + 8_000 }));
    provider.onJobsChanged();
    await h.clock.advance(1_500);
    finish();
    await h.runsSettled();
    await settle(provider);
    await h.clock.advance(0);
    expect(idleCalls).toBe(0);
    const report = w.report();
    expect(report.settledAt).not.toBeNull();
    expect(report.awakeBecause).toMatch(/an occurrence is due at .* within the 10 s idle window/);
    expect(report.exitAt).toBe(report.settledAt! + IDLE_MS);
    await h.clock.advance(7_000);
    expect(idleCalls).toBe(0);
  });

  it('a fire-woken wake whose next occurrence is beyond the idle window stops at once', async () => {
    const { provider, finish } = await fireWoken();
    await h.addJob(recordSpec('later', 'every 15m'));
    await h.store.updateJob('later', (job) => ({ ...job, next_run_at: h.clock.now() + IDLE_MS + 5_000 }));
    provider.onJobsChanged();
    await h.clock.advance(1_500);
    finish();
    await h.runsSettled();
    await settle(provider);
    await h.clock.advance(0);
    expect(idleCalls).toBe(1);
  });

  it('a person woke it: the full idle window runs from the last activity', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    const provider = await startProvider();
    const w = watch(provider, { start: false });
    w.noteRequest('admin');
    w.start();
    await h.clock.advance(0);
    const report = w.report();
    expect(report).toMatchObject({ cause: 'admin', settledAt: h.clock.now() });
    expect(report.awakeBecause).toMatch(/a person used the admin API/);
    expect(report.exitAt).toBe(h.clock.now() + IDLE_MS);

    await h.clock.advance(IDLE_MS - 1);
    expect(idleCalls).toBe(0);
    await h.clock.advance(1);
    expect(idleCalls).toBe(1);
  });

  it('a person who uses the admin API during a fire-woken wake gets the idle window too', async () => {
    const { provider, w, finish } = await fireWoken();
    await h.clock.advance(1_500);
    const end = h.activity.begin('request');
    w.noteRequest('admin');
    end();
    finish();
    await h.runsSettled();
    await settle(provider);
    await h.clock.advance(0);
    expect(idleCalls).toBe(0);
    expect(w.report().cause).toBe('fire');
    await h.clock.advance(IDLE_MS);
    expect(idleCalls).toBe(1);
  });

  it('a start without any request keeps the idle window, and a later fire does not change why it woke', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    const provider = await startProvider();
    const w = watch(provider);
    await h.clock.advance(0);
    expect(w.report().cause).toBe('start');
    w.noteRequest('fire');
    h.activity.begin('request')();
    await h.clock.advance(IDLE_MS - 1);
    expect(idleCalls).toBe(0);
    expect(w.report().cause).toBe('start');
    await h.clock.advance(1);
    expect(idleCalls).toBe(1);
  });

  it('a request being answered is not work left: the report stays settled, the exit waits for it', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    const provider = await startProvider();
    const w = watch(provider, { start: false });
    w.noteRequest('other');
    w.start();
    const end = h.activity.begin('request');
    await h.clock.advance(IDLE_MS);
    expect(idleCalls).toBe(0);
    expect(w.blocker()).toBe('work in flight');
    expect(w.report()).toMatchObject({ cause: 'other', awakeBecause: 'a request is being answered' });
    expect(w.report().settledAt).not.toBeNull();
    end();
    await h.clock.advance(0);
    expect(idleCalls).toBe(1);
  });

  it('with idle exit off it still reports the wake, and never stops', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    const provider = await startProvider();
    const w = watch(provider, { start: false, idleMs: 0, wokeAt: h.clock.now() - 2_340 });
    expect(w.report().awakeBecause).toMatch(/start-up work/);
    w.noteRequest('fire');
    w.start();
    await h.clock.advance(10 * IDLE_MS);
    expect(idleCalls).toBe(0);
    expect(w.report()).toMatchObject({
      cause: 'fire',
      awakeMs: 10 * IDLE_MS + 2_340,
      awakeBecause: 'idle exit is off (CHRONOS_IDLE_EXIT_SECONDS=0)',
      exitAt: null,
    });
  });
});
