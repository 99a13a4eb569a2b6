import { decodeJwt } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { type Emulator, type EmulatorOptions, startEmulator } from '../../src/emulator/index.js';
import { isChronosError } from '../../src/errors.js';
import { type Agent, hop1, isoIn, provisionBody, startAgent } from './agent.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(opts: EmulatorOptions = {}): Promise<{ emu: Emulator; agent: Agent }> {
  const emu = await startEmulator(opts);
  cleanups.push(() => emu.close());
  const agent = await startAgent(emu);
  cleanups.push(() => agent.close());
  return { emu, agent };
}

describe('hop 3: delivery', () => {
  it('delivers a past fire_at at once with a verifiable cron_fire JWT, then removes the arm', async () => {
    const { emu, agent } = await setup();
    const fireAt = '2020-01-01T00:00:00+01:00';
    await hop1(emu.url, 'provision', provisionBody('report', fireAt, agent.url));
    await emu.waitFor(() => emu.armed().length === 0);
    expect(agent.fires).toHaveLength(1);
    const fire = agent.fires[0]!;
    expect(fire.verifyError).toBeUndefined();
    expect(fire.path).toBe('/api/cron/fire');
    expect(fire.body).toEqual({ job_id: 'report', fire_at: fireAt });
    expect(fire.payload).toMatchObject({
      aud: 'agent:dev',
      iss: emu.url,
      purpose: 'cron_fire',
      sub: 'report',
    });
    expect(fire.payload!.exp! - fire.payload!.iat!).toBe(90);
    expect(fire.payload!.jti).toEqual(expect.any(String));
    expect(fire.protectedHeader).toMatchObject({ alg: 'ES256', kid: emu.currentKid() });
    expect(emu.deliveries()).toMatchObject([
      { job_id: 'report', fire_at: fireAt, attempt: 1, status: 202, body: { status: 'accepted' } },
    ]);
  });

  it('delivers a future fire_at at (not before) its instant', async () => {
    const { emu, agent } = await setup();
    // A lead the provision round trip cannot use up on a loaded machine: nothing may arrive before it.
    const fireAt = isoIn(1000);
    await hop1(emu.url, 'provision', provisionBody('soon', fireAt, agent.url));
    expect(agent.fires).toHaveLength(0);
    await emu.waitFor(() => agent.fires.length === 1, 10_000);
    expect(agent.fires[0]!.receivedAt).toBeGreaterThanOrEqual(Date.parse(fireAt));
  });

  it('appends /api/cron/fire to a callback URL with a trailing slash', async () => {
    const { emu, agent } = await setup();
    await hop1(emu.url, 'provision', provisionBody('a', '2020-01-01T00:00:00Z', `${agent.url}/`));
    await emu.waitFor(() => agent.fires.length === 1);
    expect(agent.fires[0]!.path).toBe('/api/cron/fire');
  });

  it('retries non-2xx with exponential backoff and a fresh token each time; 2xx stops retries', async () => {
    const { emu, agent } = await setup({ retry: { baseDelayMs: 20, maxDelayMs: 100 } });
    agent.setHandler((_fire, i) => (i < 2 ? { status: 500 } : { status: 202, body: { status: 'accepted' } }));
    await hop1(emu.url, 'provision', provisionBody('a', '2020-01-01T00:00:00Z', agent.url));
    await emu.waitFor(() => emu.armed().length === 0);
    expect(emu.deliveries().map((d) => [d.attempt, d.status])).toEqual([
      [1, 500],
      [2, 500],
      [3, 202],
    ]);
    const jtis = new Set(agent.fires.map((f) => f.payload!.jti));
    expect(jtis.size).toBe(3);
    const gap1 = agent.fires[1]!.receivedAt - agent.fires[0]!.receivedAt;
    const gap2 = agent.fires[2]!.receivedAt - agent.fires[1]!.receivedAt;
    expect(gap1).toBeGreaterThanOrEqual(15);
    expect(gap2).toBeGreaterThanOrEqual(35);
  });

  it('honours Retry-After on 503, then stops after success', async () => {
    const { emu, agent } = await setup({ retry: { baseDelayMs: 10 } });
    agent.setHandler((_fire, i) =>
      i === 0
        ? { status: 503, headers: { 'retry-after': '1' } }
        : { status: 200, body: { status: 'duplicate' } },
    );
    await hop1(emu.url, 'provision', provisionBody('a', '2020-01-01T00:00:00Z', agent.url));
    await emu.waitFor(() => emu.armed().length === 0, 4000);
    expect(emu.deliveries().map((d) => d.status)).toEqual([503, 200]);
    const gap = agent.fires[1]!.receivedAt - agent.fires[0]!.receivedAt;
    expect(gap).toBeGreaterThanOrEqual(950);
  });

  it('honours Retry-After on 425 (fire too early)', async () => {
    const { emu, agent } = await setup({ retry: { baseDelayMs: 5000 } });
    agent.setHandler((_fire, i) =>
      i === 0 ? { status: 425, headers: { 'retry-after': '0' } } : { status: 202 },
    );
    await hop1(emu.url, 'provision', provisionBody('a', '2020-01-01T00:00:00Z', agent.url));
    // base delay is 5 s, so finishing quickly proves Retry-After: 0 was used instead
    await emu.waitFor(() => emu.armed().length === 0, 2000);
    expect(emu.deliveries().map((d) => d.status)).toEqual([425, 202]);
  });

  it('gives up after maxAttempts transport errors (status 0) and drops the arm', async () => {
    const { emu } = await setup({ retry: { maxAttempts: 3, baseDelayMs: 5 } });
    const closed = await startAgent(emu);
    const deadUrl = closed.url;
    await closed.close();
    await hop1(emu.url, 'provision', provisionBody('a', '2020-01-01T00:00:00Z', deadUrl));
    await emu.waitFor(() => emu.armed().length === 0);
    const attempts = emu.deliveries();
    expect(attempts.map((d) => [d.attempt, d.status])).toEqual([
      [1, 0],
      [2, 0],
      [3, 0],
    ]);
    expect(attempts[0]!.error).toMatch(/ECONNREFUSED/);
  });

  it('times out a hanging agent (status 0, TimeoutError)', async () => {
    const { emu, agent } = await setup({ deliveryTimeoutMs: 150, retry: { maxAttempts: 1 } });
    agent.setHandler(() => 'hang');
    await hop1(emu.url, 'provision', provisionBody('a', '2020-01-01T00:00:00Z', agent.url));
    await emu.waitFor(() => emu.deliveries().length === 1, 10_000);
    expect(emu.deliveries()[0]).toMatchObject({ status: 0, error: 'TimeoutError' });
  });

  it('an arm replaced while its delivery is in flight survives that delivery', async () => {
    const { emu, agent } = await setup();
    const next = '2030-01-01T00:00:00Z';
    agent.setHandler(async () => {
      // Chronos claims, then arms the next occurrence before NAS has seen the 2xx.
      const res = await hop1(emu.url, 'provision', provisionBody('a', next, agent.url));
      expect(res.status).toBe(200);
      return { status: 202, body: { status: 'accepted' } };
    });
    await hop1(emu.url, 'provision', provisionBody('a', '2020-01-01T00:00:00Z', agent.url));
    await emu.waitFor(() => emu.deliveries().length === 1);
    expect(emu.deliveries()[0]!.status).toBe(202);
    expect(emu.armed().map((a) => [a.job_id, a.fire_at])).toEqual([['a', next]]);
  });

  it('stops retrying an arm that was replaced during the backoff wait', async () => {
    const lines: string[] = [];
    const { emu, agent } = await setup({ retry: { baseDelayMs: 200 }, log: (l) => lines.push(l) });
    agent.setHandler(() => ({ status: 500 }));
    await hop1(emu.url, 'provision', provisionBody('a', '2020-01-01T00:00:00Z', agent.url));
    await emu.waitFor(() => emu.deliveries().length === 1);
    await hop1(emu.url, 'provision', provisionBody('a', '2030-01-01T00:00:00Z', agent.url));
    expect(lines.some((l) => l.startsWith('stop') && l.includes('2020-01-01T00:00:00Z'))).toBe(true);
    expect(emu.armed().map((a) => a.fire_at)).toEqual(['2030-01-01T00:00:00Z']);
  });
});

describe('hop 3: fault switches', () => {
  it('duplicateDelivery delivers each fire twice with distinct tokens', async () => {
    const { emu, agent } = await setup();
    emu.faults.duplicateDelivery = true;
    await hop1(emu.url, 'provision', provisionBody('a', '2020-01-01T00:00:00Z', agent.url));
    await emu.waitFor(() => emu.armed().length === 0);
    expect(agent.fires.map((f) => f.body)).toEqual([
      { job_id: 'a', fire_at: '2020-01-01T00:00:00Z' },
      { job_id: 'a', fire_at: '2020-01-01T00:00:00Z' },
    ]);
    expect(agent.fires[0]!.payload!.jti).not.toBe(agent.fires[1]!.payload!.jti);
    expect(emu.deliveries()[1]).toMatchObject({ duplicate: true, status: 202 });
  });

  it('dropDeliveries consumes the next N arms without POSTing', async () => {
    const lines: string[] = [];
    const { emu, agent } = await setup({ log: (l) => lines.push(l) });
    emu.faults.dropDeliveries = 1;
    await hop1(emu.url, 'provision', provisionBody('dropped', '2020-01-01T00:00:00Z', agent.url));
    await emu.waitFor(() => emu.armed().length === 0);
    await hop1(emu.url, 'provision', provisionBody('kept', '2020-01-01T00:00:00Z', agent.url));
    await emu.waitFor(() => emu.armed().length === 0 && agent.fires.length === 1);
    expect(agent.fires.map((f) => f.body.job_id)).toEqual(['kept']);
    expect(emu.deliveries().map((d) => d.job_id)).toEqual(['kept']);
    expect(emu.faults.dropDeliveries).toBe(0);
    expect(lines.some((l) => l.startsWith('drop') && l.includes('dropped'))).toBe(true);
  });

  it('earlyMs delivers before fire_at', async () => {
    const { emu, agent } = await setup();
    emu.faults.earlyMs = 5000;
    const fireAt = isoIn(3000);
    await hop1(emu.url, 'provision', provisionBody('a', fireAt, agent.url));
    await emu.waitFor(() => agent.fires.length === 1, 10_000);
    expect(agent.fires[0]!.receivedAt).toBeLessThan(Date.parse(fireAt) - 2000);
  });

  it('negative earlyMs delivers late', async () => {
    const { emu, agent } = await setup();
    emu.faults.earlyMs = -300;
    const fireAt = isoIn(50);
    await hop1(emu.url, 'provision', provisionBody('a', fireAt, agent.url));
    await emu.waitFor(() => agent.fires.length === 1, 10_000);
    expect(agent.fires[0]!.receivedAt).toBeGreaterThanOrEqual(Date.parse(fireAt) + 300);
  });

  it('setting earlyMs re-times arms that are already pending', async () => {
    const { emu, agent } = await setup();
    await hop1(emu.url, 'provision', provisionBody('a', isoIn(60_000), agent.url));
    emu.faults.earlyMs = 60_000;
    await emu.waitFor(() => agent.fires.length === 1, 10_000);
  });

  it('clockOffsetMs skews the emulator clock: token times and due times move with it', async () => {
    const { emu, agent } = await setup({ clockOffsetMs: 60_000 });
    const fireAt = isoIn(30_000);
    await hop1(emu.url, 'provision', provisionBody('a', fireAt, agent.url));
    await emu.waitFor(() => agent.fires.length === 1, 10_000);
    const iat = agent.fires[0]!.payload!.iat!;
    expect(Math.abs(iat - (Date.now() + 60_000) / 1000)).toBeLessThan(3);
  });
});

describe('hop 3: test helpers', () => {
  it('fireNow delivers an armed one-shot immediately and returns the first attempt', async () => {
    const { emu, agent } = await setup();
    await hop1(emu.url, 'provision', provisionBody('a', '2030-01-01T00:00:00Z', agent.url));
    const attempt = await emu.fireNow('a');
    expect(attempt).toMatchObject({ job_id: 'a', attempt: 1, status: 202, manual: true });
    expect(agent.fires).toHaveLength(1);
    await emu.waitFor(() => emu.armed().length === 0);
  });

  it('fireNow on a job that is not armed throws job_not_found', async () => {
    const { emu } = await setup();
    const err = await emu.fireNow('ghost').catch((e: unknown) => e);
    expect(isChronosError(err, 'job_not_found')).toBe(true);
  });

  it('mintFireToken makes a valid token and honours overrides (undefined removes a claim)', async () => {
    const { emu } = await setup();
    const token = await emu.mintFireToken({ sub: 'x', nbf: 5 });
    expect(decodeJwt(token)).toMatchObject({
      aud: 'agent:dev',
      iss: emu.url,
      purpose: 'cron_fire',
      sub: 'x',
      nbf: 5,
    });
    const noExp = decodeJwt(await emu.mintFireToken({ exp: undefined, purpose: 'other' }));
    expect(noExp.exp).toBeUndefined();
    expect(noExp.purpose).toBe('other');
  });

  it('deliverVia rewrites where fires are POSTed', async () => {
    const { emu: _unused, agent } = await setup();
    const seen: string[] = [];
    const emu = await startEmulator({
      deliverVia: (fireUrl) => {
        seen.push(fireUrl);
        return `${agent.url}${new URL(fireUrl).pathname}`;
      },
    });
    cleanups.push(() => emu.close());
    const other = await startAgent(emu);
    cleanups.push(() => other.close());
    await hop1(emu.url, 'provision', provisionBody('a', '2020-01-01T00:00:00Z', 'http://chronos.invalid:9'));
    await emu.waitFor(() => emu.deliveries().length === 1);
    expect(seen).toEqual(['http://chronos.invalid:9/api/cron/fire']);
    expect(agent.fires).toHaveLength(1);
    // that agent trusts the first emulator's JWKS, so the token from this one fails verification
    expect(emu.deliveries()[0]!.status).toBe(401);
  });

  it('a delay beyond the 24.8-day setTimeout limit does not fire early; close() clears timers', async () => {
    const { emu, agent } = await setup();
    await hop1(emu.url, 'provision', provisionBody('far', isoIn(30 * 86_400_000), agent.url));
    await hop1(emu.url, 'provision', provisionBody('near', isoIn(100), agent.url));
    // An unchunked timer would overflow to a 1 ms delay and fire before 'near'.
    await emu.waitFor(() => emu.deliveries().length === 1 && emu.armed().length === 1);
    expect(agent.fires.map((f) => f.body.job_id)).toEqual(['near']);
    expect(emu.armed().map((a) => a.job_id)).toEqual(['far']);
    const started = Date.now();
    await emu.close();
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('waitFor rejects when the condition is not met in time', async () => {
    const { emu } = await setup();
    await expect(emu.waitFor(() => false, 50)).rejects.toThrow(/not met within 50 ms/);
  });
});
