import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Emulator, startEmulator } from '../../src/emulator/index.js';
import { type Agent, hop1, provisionBody, startAgent } from './agent.js';

let emu: Emulator;
let agent: Agent;
let lines: string[];

beforeEach(async () => {
  lines = [];
  emu = await startEmulator({ log: (line) => lines.push(line) });
  agent = await startAgent(emu);
});
afterEach(async () => {
  await emu.close();
  await agent.close();
});

async function control(method: 'GET' | 'POST', path: string, body?: unknown) {
  const res = await fetch(`${emu.url}${path}`, {
    method,
    ...(body === undefined
      ? {}
      : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('control endpoints', () => {
  it('GET /_emulator/state shows armed one-shots, deliveries and faults', async () => {
    await hop1(emu.url, 'provision', provisionBody('later', '2030-01-01T00:00:00Z', agent.url));
    await hop1(emu.url, 'provision', provisionBody('now', '2020-01-01T00:00:00Z', agent.url));
    await emu.waitFor(() => emu.deliveries().length === 1);
    const { status, body } = await control('GET', '/_emulator/state');
    expect(status).toBe(200);
    expect(body).toMatchObject({
      url: emu.url,
      audience: 'agent:dev',
      alg: 'ES256',
      current_kid: emu.currentKid(),
      armed: [{ job_id: 'later', fire_at: '2030-01-01T00:00:00Z' }],
      deliveries: [{ job_id: 'now', status: 202, attempt: 1 }],
      faults: {
        duplicateDelivery: false,
        dropDeliveries: 0,
        earlyMs: 0,
        provisionFailures: 0,
        rejectAgent: false,
      },
    });
  });

  it('POST /_emulator/faults merges switches and rejects unknown or mistyped ones', async () => {
    const ok = await control('POST', '/_emulator/faults', { rejectAgent: true, provisionFailures: 2 });
    expect(ok.status).toBe(200);
    expect(ok.body.faults).toMatchObject({
      rejectAgent: true,
      provisionFailures: 2,
      duplicateDelivery: false,
    });
    expect(emu.faults.rejectAgent).toBe(true);
    expect((await hop1(emu.url, 'list')).status).toBe(403);
    const more = await control('POST', '/_emulator/faults', { rejectAgent: false });
    expect(more.body.faults).toMatchObject({ rejectAgent: false, provisionFailures: 2 });
    for (const bad of [
      { nope: true },
      { rejectAgent: 'yes' },
      { dropDeliveries: -1 },
      { earlyMs: 'x' },
      [1],
    ]) {
      const res = await control('POST', '/_emulator/faults', bad);
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('invalid_request');
    }
    expect(emu.faults.dropDeliveries).toBe(0);
  });

  it('POST /_emulator/rotate-key returns the new kid, which the JWKS publishes', async () => {
    const { status, body } = await control('POST', '/_emulator/rotate-key');
    expect(status).toBe(200);
    expect(body.kid).toBe(emu.currentKid());
    const jwks = (await (await fetch(emu.jwksUrl)).json()) as { keys: Array<{ kid: string }> };
    expect(jwks.keys.map((k) => k.kid)).toContain(body.kid);
    expect(jwks.keys).toHaveLength(2);
  });

  it('POST /_emulator/fire/:job_id delivers now; 404 when the job is not armed', async () => {
    await hop1(emu.url, 'provision', provisionBody('a', '2030-01-01T00:00:00Z', agent.url));
    const fired = await control('POST', '/_emulator/fire/a');
    expect(fired.status).toBe(200);
    expect(fired.body.delivery).toMatchObject({ job_id: 'a', status: 202, manual: true });
    expect(agent.fires).toHaveLength(1);
    const missing = await control('POST', '/_emulator/fire/ghost');
    expect(missing.status).toBe(404);
    expect(missing.body.error).toBe('not_armed');
  });

  it('unknown routes are 404', async () => {
    expect((await control('GET', '/nope')).status).toBe(404);
    expect((await control('GET', '/api/agent-cron/provision')).status).toBe(404);
  });
});

describe('event log', () => {
  it('writes one human-readable line per event', async () => {
    agent.setHandler((_f, i) =>
      i === 0 ? { status: 503, headers: { 'retry-after': '0' } } : { status: 202 },
    );
    await hop1(emu.url, 'provision', provisionBody('report-hourly', '2020-01-01T00:00:00Z', agent.url));
    await emu.waitFor(() => emu.armed().length === 0);
    await hop1(emu.url, 'cancel', { job_id: 'report-hourly' });
    const text = lines.join('\n');
    expect(text).toMatch(/^armed\s+report-hourly\s+at 2020-01-01T00:00:00Z\s+\(.*ago, fires now\)$/m);
    expect(text).toMatch(/^deliver\s+report-hourly 2020-01-01T00:00:00Z attempt 1 → 503$/m);
    expect(text).toMatch(/^retry\s+report-hourly 2020-01-01T00:00:00Z in 0\.0s$/m);
    expect(text).toMatch(/^deliver\s+report-hourly 2020-01-01T00:00:00Z attempt 2 → 202$/m);
    expect(text).toMatch(/^cancel\s+report-hourly\s+\(not armed; ok\)$/m);
    for (const line of lines) expect(line).not.toContain('\n');
  });
});
