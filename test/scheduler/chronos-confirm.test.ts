import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Emulator } from '../../src/emulator/index.js';
import { formatFireAt, type NasClient } from '../../src/nas/nas.js';
import { claimFire } from '../../src/occurrence/claim.js';
import { DEFAULT_DELIVERY_SETTLE_MS, DEFAULT_DUE_SLACK_MS } from '../../src/scheduler/chronos.js';
import { currentOwner } from '../../src/store/owner.js';
import {
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

let emulator: Emulator;
let h: SchedulerHarness;
let client: NasClient;

beforeEach(async () => {
  emulator = await startFrozenEmulator();
  h = createHarness();
  client = nasClientFor(emulator.url, emulator.agentToken, h.clock);
});

afterEach(async () => {
  await h.current.provider?.stop();
  await client.close();
  await emulator.close();
});

/** NAS's own bookkeeping dropping a job's row (what the strict emulator does after a delivery). */
async function nasDropsRow(jobId: string): Promise<void> {
  const res = await fetch(`${emulator.url}/api/agent-cron/cancel`, {
    method: 'POST',
    headers: { authorization: `Bearer ${emulator.agentToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ job_id: jobId }),
  });
  expect(res.status).toBe(200);
}

/** What the fire route does for a NAS delivery: claim, report the delivery, then arm and run. */
async function deliver(jobId: string, fireAt: number): Promise<void> {
  const outcome = await claimFire(h.store, {
    job_id: jobId,
    fire_at: fireAt,
    trigger: 'nas',
    now: h.clock.now(),
    owner: currentOwner(),
  });
  h.current.provider!.onDelivered!(jobId, fireAt);
  if (outcome.kind === 'accepted') await h.engine.onAccepted(outcome.accepted);
  else if (outcome.kind === 'gone' || outcome.kind === 'inactive') await h.current.provider!.disarm(jobId);
}

const provisionedInstants = (jobId: string) =>
  emulator
    .provisions()
    .filter((p) => p.kind === 'provision' && (p.body as { job_id: string }).job_id === jobId)
    .map((p) => (p.body as { fire_at: string }).fire_at);

describe('ChronosProvider: confirmed arms', () => {
  it('confirms the next arm only once NAS had time to finish the delivery, and re-arms a row NAS dropped', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    const provider = h.chronos(async () => client);
    await provider.start();
    expect(provider.settled()).toBe(true);

    const t1 = T0 + 15 * MINUTE;
    const t2 = T0 + 30 * MINUTE;
    await h.clock.advanceTo(t1);
    await deliver('alpha', t1);
    await h.runsSettled();
    expect(emulator.armed().map((a) => a.fire_at)).toEqual([formatFireAt(t2)]);
    expect(provider.isArmed('alpha')).toBe(true);
    expect(provider.settled()).toBe(false);
    expect(provider.status().unconfirmed).toEqual([
      { job_id: 'alpha', fire_at: t2, reason: expect.stringMatching(/waiting for a NAS list|delivered/) },
    ]);

    // NAS's post-delivery bookkeeping removes the row after the next arm was provisioned.
    await nasDropsRow('alpha');
    const lists = callsOf(emulator, 'list');
    await h.clock.advance(DEFAULT_DELIVERY_SETTLE_MS - 1);
    expect(callsOf(emulator, 'list')).toBe(lists); // not before NAS had time to finish
    await h.clock.advance(1);
    await waitUntil(() => provider.settled());

    // One list found the row gone, one provision re-armed it, one list confirmed it.
    expect(callsOf(emulator, 'list')).toBe(lists + 2);
    expect(provisionedInstants('alpha')).toEqual([formatFireAt(t1), formatFireAt(t2), formatFireAt(t2)]);
    expect(emulator.armed().map((a) => a.fire_at)).toEqual([formatFireAt(t2)]);
    expect(provider.status().unconfirmed).toEqual([]);
  });

  it('a later delivery neither postpones the list that confirms an earlier one nor goes unconfirmed', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    await h.addJob(recordSpec('beta', 'every 15m'));
    const provider = h.chronos(async () => client);
    await provider.start();
    const t1 = T0 + 15 * MINUTE;
    await h.clock.advanceTo(t1);
    await deliver('alpha', t1);
    await h.runsSettled();
    await h.clock.advance(1_000);
    await deliver('beta', t1);
    await h.runsSettled();
    const unconfirmed = () =>
      provider
        .status()
        .unconfirmed.map((u) => u.job_id)
        .sort();
    expect(unconfirmed()).toEqual(['alpha', 'beta']);

    // alpha's list comes once alpha's delivery has settled, not a settle time after beta's.
    const lists = callsOf(emulator, 'list');
    await h.clock.advanceTo(t1 + DEFAULT_DELIVERY_SETTLE_MS);
    await waitUntil(() => callsOf(emulator, 'list') > lists);
    await waitUntil(() => unconfirmed().length === 1);
    expect(unconfirmed()).toEqual(['beta']);

    // beta's own list follows once its delivery has settled.
    await h.clock.advanceTo(t1 + 1_000 + DEFAULT_DELIVERY_SETTLE_MS);
    await waitUntil(() => provider.settled());
    expect(unconfirmed()).toEqual([]);
  });

  it('a quiet wake costs one list: the start-up list waits for the delivery to settle and confirms the next arm', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    const t1 = T0 + 15 * MINUTE;
    // A previous process armed t1; this one is woken by its delivery.
    const previous = h.chronos(async () => client);
    await previous.start();
    await previous.stop();
    const before = { list: callsOf(emulator, 'list'), provision: callsOf(emulator, 'provision') };

    h.clock.set(t1);
    const provider = h.chronos(async () => client);
    await deliver('alpha', t1);
    const starting = provider.start();
    await h.clock.advance(DEFAULT_DELIVERY_SETTLE_MS);
    await starting;
    await h.runsSettled();
    await h.clock.advance(100); // the post-run reconcile, which must need no call
    await waitUntil(() => provider.settled() && !h.activity.busy);

    expect(callsOf(emulator, 'list') - before.list).toBe(1);
    expect(callsOf(emulator, 'provision') - before.provision).toBe(1);
    expect(callsOf(emulator, 'cancel')).toBe(0);
  });

  it('an awake process whose fire never comes asks NAS, and runs the occurrence here once NAS gave it up', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    const provider = h.chronos(async () => client);
    await provider.start();
    const t1 = T0 + 15 * MINUTE;
    const t2 = T0 + 30 * MINUTE;

    // The watch fires DEFAULT_DUE_SLACK_MS after t1: NAS still holds t1 (retrying), so nothing is run.
    const lists = callsOf(emulator, 'list');
    await h.clock.advanceTo(t1 + DEFAULT_DUE_SLACK_MS);
    await waitUntil(() => callsOf(emulator, 'list') === lists + 1 && !h.activity.busy);
    expect(h.handled.calls).toHaveLength(0);
    expect(provider.settled()).toBe(true);

    // NAS gives up on the delivery and drops the row: the next watch (with backoff) sees it and claims t1.
    await nasDropsRow('alpha');
    await h.clock.advance(60_000);
    await waitUntil(() => h.handled.of('alpha').length === 1);
    await h.runsSettled();
    await h.clock.advance(100);
    await waitUntil(() => provider.settled() && !h.activity.busy);

    const runs = await h.store.listRuns('alpha');
    expect(runs.map((r) => [r.fire_at, r.trigger, r.status])).toEqual([[t1, 'misfire', 'succeeded']]);
    // t1's key was never provisioned a second time; the next occurrence is armed and confirmed.
    expect(provisionedInstants('alpha')).toEqual([formatFireAt(t1), formatFireAt(t2)]);
    expect(emulator.armed().map((a) => a.fire_at)).toEqual([formatFireAt(t2)]);
  });

  it('never provisions an instant that has come: arm() hands it to reconcile, which claims it here', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    const provider = h.chronos(async () => client);
    await provider.start();
    // A change made while NAS never held this instant, noticed only once the instant has come.
    const due = T0 + 5 * MINUTE;
    const job = await h.store.updateJob('alpha', (j) => ({ ...j, next_run_at: due }));
    await h.clock.advanceTo(due + 1_000);
    await provider.arm(job);
    expect(provisionedInstants('alpha')).not.toContain(formatFireAt(due));
    await h.clock.advance(50);
    await waitUntil(() => h.handled.of('alpha').length === 1);
    await h.runsSettled();
    const runs = await h.store.listRuns('alpha');
    expect(runs.map((r) => [r.fire_at, r.trigger])).toEqual([[due, 'misfire']]);
    expect(provisionedInstants('alpha')).not.toContain(formatFireAt(due));
  });
});

describe('ChronosProvider: no redundant hop-1 calls', () => {
  it("a one-shot's delivery ends with no cancel: NAS consumed the arm", async () => {
    await h.addJob(recordSpec('once', 'in 10m'));
    const provider = h.chronos(async () => client);
    await provider.start();
    const at = T0 + 10 * MINUTE;
    await h.clock.advanceTo(at);
    await deliver('once', at);
    await h.runsSettled();
    await h.clock.advance(DEFAULT_DELIVERY_SETTLE_MS);
    await waitUntil(() => provider.settled() && !h.activity.busy);
    expect(h.handled.of('once')).toHaveLength(1);
    expect(callsOf(emulator, 'cancel')).toBe(0);
  });

  it('a one-shot run here (not delivered by NAS) sends exactly one cancel', async () => {
    await h.addJob(recordSpec('once', 'in 10m'));
    const provider = h.chronos(async () => client);
    await provider.start();
    const at = T0 + 10 * MINUTE;
    await h.clock.advanceTo(at);
    await h.engine.fireLocal('once', at, 'builtin');
    await h.runsSettled();
    await h.clock.advance(100);
    await waitUntil(() => provider.settled() && !h.activity.busy);
    expect(callsOf(emulator, 'cancel')).toBe(1);
    expect(emulator.armed()).toEqual([]);
  });

  it('gone and inactive deliveries send no cancel', async () => {
    await h.addJob(recordSpec('paused', 'every 15m'));
    const provider = h.chronos(async () => client);
    await provider.start();
    await h.store.updateJob('paused', (job) => ({ ...job, state: 'paused' }));
    await deliver('paused', T0 + 15 * MINUTE);
    await deliver('ghost', T0 + 15 * MINUTE);
    expect(callsOf(emulator, 'cancel')).toBe(0);
  });
});

describe('ChronosProvider: lists with unreadable items', () => {
  it('keeps a job whose item is unreadable unconfirmed (never cancelled), and confirms it once it reads', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    await h.addJob(recordSpec('beta', 'every 1h'));
    emulator.faults.junkListItems = true;
    emulator.faults.malformedListJobs = ['beta'];
    const provider = h.chronos(async () => client);
    await provider.start();

    expect(provider.settled()).toBe(false);
    expect(provider.status().unconfirmed).toEqual([
      { job_id: 'beta', fire_at: T0 + 60 * MINUTE, reason: expect.stringMatching(/unreadable/) },
    ]);
    // Neither beta nor the junk items' job ids (junk-a, junk-b) are cancelled on a trusted list.
    expect(callsOf(emulator, 'cancel')).toBe(0);

    emulator.faults.malformedListJobs = [];
    await h.clock.advance(1_000);
    await waitUntil(() => provider.settled());
    expect(callsOf(emulator, 'cancel')).toBe(0);
  });
});
