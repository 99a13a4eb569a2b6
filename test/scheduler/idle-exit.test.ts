import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Emulator } from '../../src/emulator/index.js';
import type { NasClient } from '../../src/nas/nas.js';
import type { ChronosProvider } from '../../src/scheduler/chronos.js';
import { IdleExit } from '../../src/scheduler/idle-exit.js';
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

function watch(provider: ChronosProvider): IdleExit {
  watcher = new IdleExit({
    clock: h.clock,
    activity: h.activity,
    logger: silentLogger,
    provider: () => provider,
    idleMs: IDLE_MS,
    onIdle: () => {
      idleCalls += 1;
    },
  });
  watcher.start();
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
