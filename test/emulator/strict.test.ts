import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type Emulator,
  type EmulatorOptions,
  JUNK_LIST_ITEMS,
  STRICT_FAULTS,
  startEmulator,
} from '../../src/emulator/index.js';
import { isChronosError } from '../../src/errors.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { type Agent, hop1, provisionBody, startAgent } from './agent.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(opts: EmulatorOptions = {}): Promise<{ emu: Emulator; agent: Agent; lines: string[] }> {
  const lines: string[] = [];
  const emu = await startEmulator({ log: (line) => lines.push(line), ...opts });
  cleanups.push(() => emu.close());
  const agent = await startAgent(emu);
  cleanups.push(() => agent.close());
  return { emu, agent, lines };
}

async function rawProvision(
  url: string,
  body: unknown,
): Promise<{ status: number; text: string; type: string }> {
  const res = await fetch(`${url}/api/agent-cron/provision`, {
    method: 'POST',
    headers: { authorization: 'Bearer dev-agent-token', 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, text: await res.text(), type: res.headers.get('content-type') ?? '' };
}

const PAST = '2020-01-01T00:00:00Z';

/**
 * A manual clock near real time: the agent verifies fire tokens against the real clock, so `iat`/`exp`
 * must be current. `at(ms)` is the ISO instant `ms` after the clock's start.
 */
function nearNowClock(): { clock: ManualClock; at: (ms: number) => string } {
  const start = Math.floor(Date.now() / 1000) * 1000;
  return { clock: new ManualClock(start), at: (ms) => new Date(start + ms).toISOString() };
}
const FUTURE = '2030-01-01T00:00:00Z';

describe('rememberKeys', () => {
  it('a delivered key provisioned again answers 200 and arms nothing; the current row is untouched', async () => {
    const { emu, agent, lines } = await setup({ faults: { rememberKeys: true } });
    const first = await hop1(emu.url, 'provision', provisionBody('a', PAST, agent.url));
    await emu.waitFor(() => emu.armed().length === 0 && emu.deliveries().length === 1);
    expect(emu.consumedKeys()).toEqual([{ dedup_key: `a:${PAST}`, outcome: 'delivered' }]);

    // Nothing armed: the consumed key arms nothing and NAS answers like a no-op.
    const again = await hop1(emu.url, 'provision', provisionBody('a', PAST, agent.url));
    expect(again.status).toBe(200);
    expect(again.body.schedule_id).toBe(first.body.schedule_id);
    expect(emu.armed()).toEqual([]);

    // A different arm held by the row is left exactly as it is.
    await hop1(emu.url, 'provision', provisionBody('a', FUTURE, agent.url));
    const before = emu.armed();
    const third = await hop1(emu.url, 'provision', provisionBody('a', PAST, agent.url));
    expect(third.status).toBe(200);
    expect(emu.armed()).toEqual(before);
    expect(agent.fires).toHaveLength(1);
    expect(lines.filter((l) => l.startsWith('consumed'))).toHaveLength(2);
  });

  it('a key given up after the delivery attempts is consumed too', async () => {
    const { emu, agent } = await setup({
      retry: { baseDelayMs: 5 },
      faults: { rememberKeys: true, deliveryAttempts: 2 },
    });
    agent.setHandler(() => ({ status: 500 }));
    await hop1(emu.url, 'provision', provisionBody('a', PAST, agent.url));
    await emu.waitFor(() => emu.consumedKeys().length === 1);
    expect(emu.consumedKeys()[0]).toEqual({ dedup_key: `a:${PAST}`, outcome: 'given_up' });
    await hop1(emu.url, 'provision', provisionBody('a', PAST, agent.url));
    expect(emu.armed()).toEqual([]);
    expect(emu.deliveries()).toHaveLength(2);
  });

  it('a dropped delivery consumes its key', async () => {
    const { emu, agent } = await setup({ faults: { rememberKeys: true, dropDeliveries: 1 } });
    await hop1(emu.url, 'provision', provisionBody('a', PAST, agent.url));
    await emu.waitFor(() => emu.consumedKeys().length === 1);
    expect(emu.consumedKeys()[0]!.outcome).toBe('dropped');
    await hop1(emu.url, 'provision', provisionBody('a', PAST, agent.url));
    expect(emu.armed()).toEqual([]);
    expect(agent.fires).toHaveLength(0);
  });

  it('off (the default), a delivered key arms again and is delivered again', async () => {
    const { emu, agent } = await setup();
    await hop1(emu.url, 'provision', provisionBody('a', PAST, agent.url));
    await emu.waitFor(() => agent.fires.length === 1 && emu.armed().length === 0);
    await hop1(emu.url, 'provision', provisionBody('a', PAST, agent.url));
    await emu.waitFor(() => agent.fires.length === 2);
  });

  it('an armed key not yet delivered is an ordinary same-key no-op', async () => {
    const { emu, agent } = await setup({ faults: { rememberKeys: true } });
    const first = await hop1(emu.url, 'provision', provisionBody('a', FUTURE, agent.url));
    const again = await hop1(emu.url, 'provision', provisionBody('a', FUTURE, agent.url));
    expect(again.body.schedule_id).toBe(first.body.schedule_id);
    expect(emu.armed().map((a) => a.fire_at)).toEqual([FUTURE]);
    expect(emu.consumedKeys()).toEqual([]);
  });
});

describe('removeRowOnDelivery', () => {
  it('removes the arm provisioned while the delivery was in flight, removeRowDelayMs after the 2xx', async () => {
    const { emu, agent, lines } = await setup({
      faults: { removeRowOnDelivery: true, removeRowDelayMs: 300 },
    });
    agent.setHandler(async () => {
      // What Chronos does: claim, arm the next occurrence, answer 202.
      await hop1(emu.url, 'provision', provisionBody('a', FUTURE, agent.url));
      return { status: 202 };
    });
    await hop1(emu.url, 'provision', provisionBody('a', PAST, agent.url));
    await emu.waitFor(() => emu.deliveries().length === 1);
    const endedAt = Date.now();
    // The replacement survives the delivery itself …
    expect(emu.armed().map((a) => a.fire_at)).toEqual([FUTURE]);
    // … and is removed by NAS's bookkeeping, not before the delay.
    await emu.waitFor(() => emu.rowRemovals().length === 1, 3000);
    expect(Date.now() - endedAt).toBeGreaterThanOrEqual(250);
    expect(emu.armed()).toEqual([]);
    expect(emu.rowRemovals()[0]).toMatchObject({
      job_id: 'a',
      after_delivery_of: PAST,
      removed_fire_at: FUTURE,
    });
    expect(lines.some((l) => l.startsWith('remove') && l.includes(`removed arm at ${FUTURE}`))).toBe(true);
  });

  it('removes an arm provisioned after the 2xx but within the delay; a later one survives', async () => {
    const { clock, at } = nearNowClock();
    const { emu, agent } = await setup({ clock, faults: { removeRowOnDelivery: true } });
    await hop1(emu.url, 'provision', provisionBody('a', at(0), agent.url));
    await clock.advance(0);
    await emu.waitFor(() => emu.deliveries().length === 1 && emu.armed().length === 0);

    await hop1(emu.url, 'provision', provisionBody('a', at(60_000), agent.url));
    await clock.advance(249);
    expect(emu.armed()).toHaveLength(1);
    await clock.advance(1);
    expect(emu.armed()).toEqual([]);
    expect(emu.rowRemovals()[0]!.removed_fire_at).toBe(at(60_000));

    // The repair: an arm made after the removal stays.
    await hop1(emu.url, 'provision', provisionBody('a', at(60_000), agent.url));
    await clock.advance(1000);
    expect(emu.armed().map((a) => a.fire_at)).toEqual([at(60_000)]);
  });

  it('counts the end after the duplicateDelivery POST, and after giving up', async () => {
    const { clock, at } = nearNowClock();
    const { emu, agent } = await setup({
      clock,
      retry: { baseDelayMs: 10, maxDelayMs: 10 },
      faults: { removeRowOnDelivery: true, removeRowDelayMs: 100, duplicateDelivery: true },
    });
    await hop1(emu.url, 'provision', provisionBody('dup', at(0), agent.url));
    await clock.advance(0);
    await emu.waitFor(() => emu.deliveries().length === 2);
    expect(emu.deliveries()[1]!.duplicate).toBe(true);
    await hop1(emu.url, 'provision', provisionBody('dup', at(300_000), agent.url));
    await clock.advance(100);
    expect(emu.armed()).toEqual([]);

    emu.faults.duplicateDelivery = false;
    emu.faults.deliveryAttempts = 2;
    agent.setHandler(() => ({ status: 500 }));
    await hop1(emu.url, 'provision', provisionBody('fail', at(0), agent.url));
    await clock.advance(0);
    await emu.waitFor(() => emu.deliveries().length === 3);
    // The retry timer is set a few microtasks after the attempt is recorded.
    await vi.waitFor(() => expect(clock.pending()).toBe(1), { timeout: 2000, interval: 2 });
    await clock.advance(10);
    await emu.waitFor(() => emu.deliveries().length === 4 && emu.consumedKeys().length === 2);
    await hop1(emu.url, 'provision', provisionBody('fail', at(300_000), agent.url));
    await clock.advance(99);
    expect(emu.armed().map((a) => a.job_id)).toEqual(['fail']);
    await clock.advance(1);
    expect(emu.armed()).toEqual([]);
    expect(emu.rowRemovals().map((r) => [r.job_id, r.removed_fire_at])).toEqual([
      ['dup', at(300_000)],
      ['fail', at(300_000)],
    ]);
  });

  it('off (the default), a replacement arm survives indefinitely', async () => {
    const { clock, at } = nearNowClock();
    const { emu, agent } = await setup({ clock });
    await hop1(emu.url, 'provision', provisionBody('a', at(0), agent.url));
    await clock.advance(0);
    await emu.waitFor(() => emu.deliveries().length === 1);
    await hop1(emu.url, 'provision', provisionBody('a', at(60_000), agent.url));
    await clock.advance(10_000);
    expect(emu.armed()).toHaveLength(1);
    expect(emu.rowRemovals()).toEqual([]);
  });
});

describe('deliveryAttempts', () => {
  it('gives up after the set number of attempts and drops the arm', async () => {
    const { emu, agent, lines } = await setup({ retry: { baseDelayMs: 5 }, faults: { deliveryAttempts: 3 } });
    agent.setHandler(() => ({ status: 503 }));
    await hop1(emu.url, 'provision', provisionBody('a', PAST, agent.url));
    await emu.waitFor(() => lines.some((l) => l.startsWith('give up')));
    expect(emu.deliveries().map((d) => d.attempt)).toEqual([1, 2, 3]);
    expect(emu.armed()).toEqual([]);
  });

  it('defaults to retry.maxAttempts', async () => {
    const { emu } = await setup({ retry: { maxAttempts: 5 } });
    expect(emu.faults.deliveryAttempts).toBe(5);
  });
});

describe('emptyProvisionReply', () => {
  it('a successful provision answers 200 with an empty body and still arms', async () => {
    const { emu, agent } = await setup({ faults: { emptyProvisionReply: true } });
    const res = await rawProvision(emu.url, provisionBody('a', FUTURE, agent.url));
    expect(res).toMatchObject({ status: 200, text: '' });
    expect(emu.armed().map((a) => a.fire_at)).toEqual([FUTURE]);
    expect(emu.provisions().at(-1)).toMatchObject({ kind: 'provision', status: 200, reply: '' });
  });

  it('errors keep their JSON body', async () => {
    const { emu } = await setup({ faults: { emptyProvisionReply: true } });
    const res = await rawProvision(emu.url, { job_id: 'a' });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.text)).toMatchObject({ error: 'invalid_request' });
  });
});

describe('list faults', () => {
  it('listQuirks: no schedule_id, +00:00 offsets for the same instant, unknown extra fields', async () => {
    const { emu, agent } = await setup({ faults: { listQuirks: true } });
    await hop1(emu.url, 'provision', provisionBody('z', '2030-01-01T09:00:00Z', agent.url));
    await hop1(emu.url, 'provision', provisionBody('cet', '2030-01-01T09:00:00.250+01:00', agent.url));
    const { body } = await hop1(emu.url, 'list');
    const items = body.armed as Array<Record<string, unknown>>;
    expect(items.map((i) => [i.job_id, i.fire_at])).toEqual([
      ['z', '2030-01-01T09:00:00+00:00'],
      ['cet', '2030-01-01T08:00:00.250+00:00'],
    ]);
    for (const item of items) {
      expect(item).not.toHaveProperty('schedule_id');
      expect(item).toMatchObject({ status: 'scheduled', attempts: 0 });
    }
    expect(Date.parse(items[1]!.fire_at as string)).toBe(Date.parse('2030-01-01T09:00:00.250+01:00'));
  });

  it('junkListItems appends the malformed items to the real ones', async () => {
    const { emu, agent } = await setup({ faults: { junkListItems: true } });
    await hop1(emu.url, 'provision', provisionBody('a', FUTURE, agent.url));
    const { body } = await hop1(emu.url, 'list');
    expect(body.armed).toEqual([
      { job_id: 'a', fire_at: FUTURE, schedule_id: expect.any(String) },
      42,
      {},
      { job_id: 'junk-a' },
      { job_id: 'junk-b', fire_at: 'not a time' },
    ]);
    expect(JUNK_LIST_ITEMS).toHaveLength(4);
  });

  it('malformedListJobs sends the named jobs with fire_at "soon"; the others are untouched', async () => {
    const { emu, agent } = await setup({ faults: { malformedListJobs: ['bad'] } });
    await hop1(emu.url, 'provision', provisionBody('bad', FUTURE, agent.url));
    await hop1(emu.url, 'provision', provisionBody('good', FUTURE, agent.url));
    const { body } = await hop1(emu.url, 'list');
    expect(body.armed).toEqual([
      { job_id: 'bad', fire_at: 'soon', schedule_id: expect.any(String) },
      { job_id: 'good', fire_at: FUTURE, schedule_id: expect.any(String) },
    ]);
    // The emulator itself still holds the real arm.
    expect(emu.armed().find((a) => a.job_id === 'bad')!.fire_at).toBe(FUTURE);
  });
});

describe('strict mode', () => {
  it('turns on the strict switches, with 4 delivery attempts; explicit faults win', async () => {
    const { emu, lines } = await setup({ strict: true, faults: { listQuirks: false } });
    expect(emu.strict).toBe(true);
    expect(emu.faults).toMatchObject({
      rememberKeys: true,
      removeRowOnDelivery: true,
      removeRowDelayMs: 250,
      emptyProvisionReply: true,
      listQuirks: false,
      junkListItems: true,
      deliveryAttempts: 4,
      malformedListJobs: [],
      duplicateDelivery: false,
    });
    expect(STRICT_FAULTS).toMatchObject({ deliveryAttempts: 4 });
    expect(lines[0]).toMatch(/^listen .*strict/);
    expect(lines[1]).toMatch(/^faults .*"rememberKeys":true/);
    const state = (await (await fetch(`${emu.url}/_emulator/state`)).json()) as Record<string, unknown>;
    expect(state).toMatchObject({ strict: true, row_removals: [], consumed_keys: [] });
    expect(state.faults).toEqual({ ...emu.faults, malformedListJobs: [] });
  });

  it('the default emulator has every strict switch off', async () => {
    const { emu } = await setup();
    expect(emu.strict).toBe(false);
    expect(emu.faults).toMatchObject({
      rememberKeys: false,
      removeRowOnDelivery: false,
      emptyProvisionReply: false,
      listQuirks: false,
      junkListItems: false,
      deliveryAttempts: 8,
      malformedListJobs: [],
    });
  });

  it('POST /_emulator/faults sets and validates the strict switches', async () => {
    const { emu } = await setup();
    const post = async (body: unknown) => {
      const res = await fetch(`${emu.url}/_emulator/faults`, { method: 'POST', body: JSON.stringify(body) });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const ok = await post({
      rememberKeys: true,
      removeRowOnDelivery: true,
      removeRowDelayMs: 1000,
      deliveryAttempts: 2,
      emptyProvisionReply: true,
      listQuirks: true,
      junkListItems: true,
      malformedListJobs: ['x'],
    });
    expect(ok.status).toBe(200);
    expect(ok.body.faults).toMatchObject({
      removeRowDelayMs: 1000,
      deliveryAttempts: 2,
      malformedListJobs: ['x'],
    });
    expect(emu.faults).toMatchObject({ rememberKeys: true, junkListItems: true, malformedListJobs: ['x'] });
    for (const bad of [
      { deliveryAttempts: 0 },
      { deliveryAttempts: 1.5 },
      { removeRowDelayMs: -1 },
      { malformedListJobs: [1] },
      { malformedListJobs: 'x' },
      { listQuirks: 'yes' },
      // One bad switch leaves the good ones in the same patch unapplied.
      { rememberKeys: false, emptyProvisionReply: 1 },
    ]) {
      const res = await post(bad);
      expect(res.status, JSON.stringify(bad)).toBe(400);
      expect(res.body.error).toBe('invalid_request');
    }
    expect(emu.faults).toMatchObject({ rememberKeys: true, deliveryAttempts: 2, removeRowDelayMs: 1000 });
  });

  it('rejects bad initial faults with invalid_config', async () => {
    for (const faults of [{ deliveryAttempts: 0 }, { malformedListJobs: 'a' }, { nope: 1 }]) {
      const err = await startEmulator({ faults: faults as never }).catch((e: unknown) => e);
      expect(isChronosError(err, 'invalid_config')).toBe(true);
    }
  });
});
