import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Emulator, startEmulator } from '../../src/emulator/index.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { type Agent, hop1, provisionBody, startAgent } from './agent.js';

let emu: Emulator;
let agent: Agent;

beforeEach(async () => {
  emu = await startEmulator();
  agent = await startAgent(emu);
});
const extra: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  await emu.close();
  await agent.close();
  for (const part of extra.splice(0)) await part.close();
});

/**
 * An emulator whose timers only move when the test advances its clock: tests about which timer fires
 * must not depend on a request finishing within some real milliseconds. The clock starts at the current
 * second because the agent checks the fire tokens' iat and exp against real time; `at(ms)` is the ISO
 * instant `ms` after that start.
 */
async function manualClockEmulator() {
  const start = Math.floor(Date.now() / 1000) * 1000;
  const clock = new ManualClock(start);
  const own = await startEmulator({ clock });
  extra.push(own);
  const ownAgent = await startAgent(own);
  extra.push(ownAgent);
  return { emu: own, agent: ownAgent, clock, at: (ms: number) => new Date(start + ms).toISOString() };
}

describe('hop 1: provision validation', () => {
  const good = {
    job_id: 'report',
    fire_at: '2030-01-01T09:00:00+01:00',
    agent_callback_url: 'https://a.example',
  };
  const cases: Array<[string, unknown, RegExp]> = [
    ['missing job_id', { ...good, job_id: undefined, dedup_key: ':x' }, /job_id is required/],
    ['empty job_id', { ...good, job_id: '', dedup_key: `:${good.fire_at}` }, /job_id is required/],
    ['missing fire_at', { ...good, fire_at: undefined, dedup_key: 'report:' }, /fire_at is required/],
    [
      'naive fire_at',
      { ...good, fire_at: '2030-01-01T09:00:00', dedup_key: 'report:2030-01-01T09:00:00' },
      /offset/,
    ],
    ['date-only fire_at', { ...good, fire_at: '2030-01-01', dedup_key: 'report:2030-01-01' }, /ISO-8601/],
    [
      'impossible date',
      { ...good, fire_at: '2030-02-30T00:00:00Z', dedup_key: 'report:2030-02-30T00:00:00Z' },
      /ISO/,
    ],
    ['wrong dedup_key', { ...good, dedup_key: 'report:2030-01-01T08:00:00Z' }, /dedup_key must equal/],
    ['missing dedup_key', { ...good }, /dedup_key is required/],
    [
      'ftp callback',
      { ...good, agent_callback_url: 'ftp://a.example', dedup_key: `report:${good.fire_at}` },
      /http\(s\)/,
    ],
    [
      'non-URL callback',
      { ...good, agent_callback_url: 'not a url', dedup_key: `report:${good.fire_at}` },
      /http\(s\)/,
    ],
    ['array body', [good], /JSON object/],
  ];
  it.each(cases)('400 for %s', async (_name, body, reason) => {
    const res = await hop1(emu.url, 'provision', body);
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
    expect(String(res.body.message)).toMatch(reason);
    expect(emu.armed()).toEqual([]);
  });

  it('400 for a body that is not JSON', async () => {
    const res = await hop1(emu.url, 'provision', '{not json');
    expect(res.status).toBe(400);
    expect(String(res.body.message)).toMatch(/JSON/);
  });
});

describe('hop 1: provision, upsert, cancel, list', () => {
  it('arms a job and lists fire_at exactly as sent', async () => {
    const fireAt = '2030-06-01T09:00:00+02:00';
    const res = await hop1(emu.url, 'provision', provisionBody('report', fireAt, agent.url));
    expect(res.status).toBe(200);
    expect(res.body.schedule_id).toEqual(expect.any(String));
    const list = await hop1(emu.url, 'list');
    expect(list.status).toBe(200);
    expect(list.body).toEqual({
      armed: [{ job_id: 'report', fire_at: fireAt, schedule_id: res.body.schedule_id }],
    });
    expect(emu.armed()[0]).toMatchObject({
      job_id: 'report',
      fire_at: fireAt,
      agent_callback_url: agent.url,
      dedup_key: `report:${fireAt}`,
      armed_at: expect.any(String),
    });
  });

  it('a new fire_at replaces the arm; the same dedup_key again is a no-op', async () => {
    const first = await hop1(
      emu.url,
      'provision',
      provisionBody('report', '2030-06-01T09:00:00Z', agent.url),
    );
    const again = await hop1(
      emu.url,
      'provision',
      provisionBody('report', '2030-06-01T09:00:00Z', agent.url),
    );
    expect(again.status).toBe(200);
    expect(again.body.schedule_id).toBe(first.body.schedule_id);
    const moved = await hop1(
      emu.url,
      'provision',
      provisionBody('report', '2030-06-02T09:00:00Z', agent.url),
    );
    expect(moved.body.schedule_id).not.toBe(first.body.schedule_id);
    const list = await hop1(emu.url, 'list');
    expect(list.body.armed).toEqual([
      { job_id: 'report', fire_at: '2030-06-02T09:00:00Z', schedule_id: moved.body.schedule_id },
    ]);
  });

  it('replacing an arm cancels its pending timer', async () => {
    const { emu, agent, clock, at } = await manualClockEmulator();
    await hop1(emu.url, 'provision', provisionBody('a', at(150), agent.url));
    const later = '2030-01-01T00:00:00Z';
    await hop1(emu.url, 'provision', provisionBody('a', later, agent.url));
    // A sentinel due after the replaced instant proves the replaced timer had its chance and stayed quiet.
    await hop1(emu.url, 'provision', provisionBody('sentinel', at(300), agent.url));
    await clock.advance(300);
    await emu.waitFor(() => emu.deliveries().length > 0 && emu.armed().length === 1);
    expect(agent.fires.map((f) => f.body.job_id)).toEqual(['sentinel']);
    expect(emu.armed().map((a) => a.fire_at)).toEqual([later]);
  });

  it('cancel of an unknown job is still 200 ok; cancel of an armed job removes it and its timer', async () => {
    const { emu, agent, clock, at } = await manualClockEmulator();
    const unknown = await hop1(emu.url, 'cancel', { job_id: 'nope' });
    expect(unknown).toMatchObject({ status: 200, body: { ok: true } });
    await hop1(emu.url, 'provision', provisionBody('a', at(100), agent.url));
    const cancelled = await hop1(emu.url, 'cancel', { job_id: 'a' });
    expect(cancelled).toMatchObject({ status: 200, body: { ok: true } });
    expect((await hop1(emu.url, 'list')).body.armed).toEqual([]);
    await hop1(emu.url, 'provision', provisionBody('sentinel', at(250), agent.url));
    await clock.advance(250);
    await emu.waitFor(() => agent.fires.length > 0 && emu.armed().length === 0);
    expect(agent.fires.map((f) => f.body.job_id)).toEqual(['sentinel']);
  });

  it('cancel without job_id is 400', async () => {
    const res = await hop1(emu.url, 'cancel', {});
    expect(res.status).toBe(400);
  });

  it('records every hop-1 call with its status, body, reply and User-Agent', async () => {
    await hop1(emu.url, 'provision', provisionBody('a', '2030-01-01T00:00:00Z', agent.url));
    await hop1(emu.url, 'list');
    await hop1(emu.url, 'cancel', { job_id: 'a' }, 'wrong');
    expect(emu.provisions()).toMatchObject([
      { kind: 'provision', status: 200, body: { job_id: 'a' }, reply: { schedule_id: expect.any(String) } },
      { kind: 'list', status: 200, reply: { armed: [{ job_id: 'a' }] }, user_agent: 'chronos-test' },
      { kind: 'cancel', status: 401, body: { job_id: 'a' }, reply: { error: 'unauthorized' } },
    ]);
  });
});

describe('hop 1: auth and faults', () => {
  it('401 unauthorized for a wrong or missing bearer token', async () => {
    const wrong = await hop1(emu.url, 'list', undefined, 'not-the-token');
    expect(wrong).toMatchObject({ status: 401, body: { error: 'unauthorized' } });
    const res = await fetch(`${emu.url}/api/agent-cron/list`);
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: 'unauthorized' });
  });

  it('honours a custom agent token', async () => {
    const custom = await startEmulator({ agentToken: 's3cret' });
    try {
      expect((await hop1(custom.url, 'list', undefined, 's3cret')).status).toBe(200);
      expect((await hop1(custom.url, 'list')).status).toBe(401);
    } finally {
      await custom.close();
    }
  });

  it('rejectAgent answers every hop-1 call with 403 invalid_client', async () => {
    emu.faults.rejectAgent = true;
    for (const [call, body] of [
      ['provision', provisionBody('a', '2030-01-01T00:00:00Z', agent.url)],
      ['cancel', { job_id: 'a' }],
      ['list', undefined],
    ] as const) {
      const res = await hop1(emu.url, call, body);
      expect(res.status).toBe(403);
      expect(res.body.error).toBe('invalid_client');
    }
    expect(emu.armed()).toEqual([]);
  });

  it('provisionFailures answers the next N provisions with 503 + Retry-After, then succeeds', async () => {
    emu.faults.provisionFailures = 2;
    const body = provisionBody('a', '2030-01-01T00:00:00Z', agent.url);
    const first = await hop1(emu.url, 'provision', body);
    expect(first.status).toBe(503);
    expect(first.headers.get('retry-after')).toBe('1');
    // list and cancel are not provision calls and are unaffected
    expect((await hop1(emu.url, 'list')).status).toBe(200);
    expect((await hop1(emu.url, 'provision', body)).status).toBe(503);
    const ok = await hop1(emu.url, 'provision', body);
    expect(ok.status).toBe(200);
    expect(emu.faults.provisionFailures).toBe(0);
    expect(emu.armed()).toHaveLength(1);
  });
});
