import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ChronosError } from '../../src/errors.js';
import { createHttpNasClient, type HttpNasClientOptions } from '../../src/nas/http-client.js';
import { type NasClient, NasError } from '../../src/nas/nas.js';
import { createTokenSource } from '../../src/nas/token-source.js';
import { USER_AGENT } from '../../src/version.js';
import { recordingLogger } from '../helpers/logger.js';
import { closedPort, LoopbackNas, ObservedClock } from './loopback-nas.js';

const FIRE_AT = Date.parse('2026-03-08T07:00:00Z');
const CALLBACK = 'https://agent.example.test';

let nas: LoopbackNas;
let dir: string;
const clients: NasClient[] = [];

beforeEach(async () => {
  nas = await LoopbackNas.start();
  dir = await mkdtemp(join(tmpdir(), 'chronos-nas-'));
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await nas.close();
  await rm(dir, { recursive: true, force: true });
});

function client(overrides: Partial<HttpNasClientOptions> = {}): NasClient {
  const created = createHttpNasClient({
    portalUrl: nas.url,
    callbackUrl: CALLBACK,
    tokenSource: createTokenSource({ token: 'agent-token' }),
    userAgent: USER_AGENT,
    clock: new ObservedClock(true),
    random: () => 0.5,
    ...overrides,
  });
  clients.push(created);
  return created;
}

async function failure(promise: Promise<unknown>): Promise<NasError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(NasError);
  return err as NasError;
}

describe('hop 1 requests', () => {
  it('provision sends the contract body and headers and returns the schedule id', async () => {
    nas.reply({ status: 200, json: { schedule_id: 'sch-1' } });
    const result = await client().provision({ job_id: 'nightly', fire_at: FIRE_AT });

    expect(result).toEqual({ schedule_id: 'sch-1' });
    const [req] = nas.requests;
    expect(req?.method).toBe('POST');
    expect(req?.url).toBe('/api/agent-cron/provision');
    expect(req?.headers['accept']).toBe('application/json');
    expect(req?.headers['content-type']).toBe('application/json');
    expect(req?.headers['user-agent']).toBe(USER_AGENT);
    expect(req?.headers['user-agent']).toMatch(/^chronos\/\d+\.\d+\.\d+/);
    expect(req?.headers['authorization']).toBe('Bearer agent-token');
    expect(JSON.parse(req?.body ?? '')).toEqual({
      job_id: 'nightly',
      fire_at: '2026-03-08T07:00:00Z',
      agent_callback_url: CALLBACK,
      dedup_key: 'nightly:2026-03-08T07:00:00Z',
    });
  });

  it('keeps milliseconds in fire_at and dedup_key when the instant has them', async () => {
    nas.reply({ status: 200, json: { schedule_id: 's' } });
    await client().provision({ job_id: 'fast', fire_at: FIRE_AT + 250 });
    expect(nas.bodies()[0]).toMatchObject({
      fire_at: '2026-03-08T07:00:00.250Z',
      dedup_key: 'fast:2026-03-08T07:00:00.250Z',
    });
  });

  it('joins paths under a portal path prefix and drops a trailing slash from the callback URL', async () => {
    nas.reply(
      { status: 200, json: { schedule_id: 's' } },
      { status: 200, json: { ok: true } },
      { status: 200, json: { armed: [] } },
    );
    const c = client({ portalUrl: `${nas.url}/tenants/a/`, callbackUrl: `${CALLBACK}/` });
    await c.provision({ job_id: 'j', fire_at: FIRE_AT });
    await c.cancel('j');
    await c.list();
    expect(nas.requests.map((r) => `${r.method} ${r.url}`)).toEqual([
      'POST /tenants/a/api/agent-cron/provision',
      'POST /tenants/a/api/agent-cron/cancel',
      'GET /tenants/a/api/agent-cron/list',
    ]);
    expect(nas.bodies()[0]).toMatchObject({ agent_callback_url: CALLBACK });
  });

  it('cancel posts only the job id', async () => {
    nas.reply({ status: 200, json: { ok: true } });
    await client().cancel('nightly');
    const [req] = nas.requests;
    expect(req?.url).toBe('/api/agent-cron/cancel');
    expect(JSON.parse(req?.body ?? '')).toEqual({ job_id: 'nightly' });
    expect(req?.headers['authorization']).toBe('Bearer agent-token');
  });

  it('list is a GET with Accept, User-Agent and Authorization but no body', async () => {
    nas.reply({ status: 200, json: { armed: [] } });
    expect(await client().list()).toEqual({ entries: [], skipped: 0, unreadableJobIds: [] });
    const [req] = nas.requests;
    expect(req?.method).toBe('GET');
    expect(req?.body).toBe('');
    expect(req?.headers['content-type']).toBeUndefined();
    expect(req?.headers['accept']).toBe('application/json');
    expect(req?.headers['user-agent']).toBe(USER_AGENT);
    expect(req?.headers['authorization']).toBe('Bearer agent-token');
  });

  it('reuses keep-alive connections across calls', async () => {
    const c = client();
    nas.fallback = { status: 200, json: { armed: [] } };
    for (let i = 0; i < 4; i++) await c.list();
    // Back-to-back calls may open a second socket before the first is released, but no more.
    const ports = new Set(nas.requests.map((r) => r.remotePort));
    expect(nas.requests).toHaveLength(4);
    expect(ports.size).toBeLessThanOrEqual(2);
  });
});

describe('list parsing', () => {
  it('parses fire_at into instants: an offset form equals the same instant in Z', async () => {
    nas.reply({
      status: 200,
      json: {
        armed: [
          { job_id: 'a', fire_at: '2026-03-08T02:00:00-05:00', schedule_id: 's-a', extra: 1 },
          { job_id: 'b', fire_at: '2026-03-08T07:00:00Z', schedule_id: 's-b' },
        ],
      },
    });
    const { entries, skipped } = await client().list();
    expect(entries).toEqual([
      { job_id: 'a', fire_at: FIRE_AT, schedule_id: 's-a', fire_at_raw: '2026-03-08T02:00:00-05:00' },
      { job_id: 'b', fire_at: FIRE_AT, schedule_id: 's-b', fire_at_raw: '2026-03-08T07:00:00Z' },
    ]);
    expect(entries[0]?.fire_at).toBe(entries[1]?.fire_at);
    expect(skipped).toBe(0);
  });

  it('trusts items without schedule_id, with +00:00 offsets and unknown fields', async () => {
    nas.reply({
      status: 200,
      json: {
        armed: [
          { job_id: 'a', fire_at: '2026-03-08T07:00:00+00:00', status: 'scheduled', attempts: 0 },
          { job_id: 'b', fire_at: '2026-03-08T07:00:00.250+00:00', schedule_id: '' },
        ],
      },
    });
    expect(await client().list()).toEqual({
      entries: [
        { job_id: 'a', fire_at: FIRE_AT, schedule_id: null, fire_at_raw: '2026-03-08T07:00:00+00:00' },
        {
          job_id: 'b',
          fire_at: FIRE_AT + 250,
          schedule_id: null,
          fire_at_raw: '2026-03-08T07:00:00.250+00:00',
        },
      ],
      skipped: 0,
      unreadableJobIds: [],
    });
  });

  it('skips and counts malformed items, names the jobs it could not read, and trusts the rest', async () => {
    const { logger, at } = recordingLogger();
    nas.reply({
      status: 200,
      json: {
        armed: [
          { job_id: 'good', fire_at: '2026-03-08T07:00:00Z', schedule_id: 's' },
          42,
          null,
          ['x'],
          {},
          { job_id: 'junk-a' },
          { job_id: 'junk-b', fire_at: 'not a time' },
          { job_id: 'naive', fire_at: '2026-03-08T07:00:00' },
          { job_id: 'soon', fire_at: 'soon', schedule_id: 's2' },
          { job_id: 'soon', fire_at: 7 },
          { job_id: '', fire_at: '2026-03-08T07:00:00Z' },
          { job_id: 'also-good', fire_at: '2026-03-08T02:00:00-05:00' },
        ],
      },
    });
    const result = await client({ logger }).list();
    expect(result.entries.map((e) => e.job_id)).toEqual(['good', 'also-good']);
    expect(result.skipped).toBe(10);
    expect(result.unreadableJobIds).toEqual(['junk-a', 'junk-b', 'naive', 'soon']);
    const warnings = at('warn');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.obj).toMatchObject({
      skipped: 10,
      unreadable_job_ids: result.unreadableJobIds,
      trusted: 2,
    });
    expect(at('debug').filter((d) => (d.obj as { problem?: string }).problem !== undefined)).toHaveLength(10);
  });

  it.each([
    ['no armed array', { jobs: [] }],
    ['armed not an array', { armed: { job_id: 'a' } }],
    ['a top-level array', [{ job_id: 'a', fire_at: '2026-03-08T07:00:00Z' }]],
    ['null', null],
  ])(
    'rejects a reply with %s as nas_rejected, not retried (the envelope must parse)',
    async (_what, json) => {
      nas.reply({ status: 200, json });
      const err = await failure(client().list());
      expect(err.code).toBe('nas_rejected');
      expect(err.retryable).toBe(false);
      expect(nas.requests).toHaveLength(1);
    },
  );

  it('rejects a 200 that is not JSON', async () => {
    nas.reply({ status: 200, text: '<html>proxy</html>' });
    const err = await failure(client().list());
    expect(err.code).toBe('nas_rejected');
    expect(err.message).toContain('not JSON');
  });
});

describe('provision replies', () => {
  it.each<[string, { status: number; json?: unknown; text?: string }]>([
    ['an empty 200', { status: 200, text: '' }],
    ['an empty 201', { status: 201, text: '' }],
    ['a 204', { status: 204 }],
    ['a 200 without schedule_id', { status: 200, json: { ok: true } }],
    ['a 200 that is not JSON', { status: 200, text: 'OK' }],
    ['a 202 with a non-string schedule_id', { status: 202, json: { schedule_id: 12 } }],
  ])('counts %s as an arm with schedule_id null', async (_what, reply) => {
    nas.reply(reply);
    expect(await client().provision({ job_id: 'a', fire_at: FIRE_AT })).toEqual({ schedule_id: null });
    expect(nas.requests).toHaveLength(1);
  });

  it('keeps schedule_id when the 2xx names one', async () => {
    nas.reply({ status: 201, json: { schedule_id: 'sch-9', extra: true } });
    expect(await client().provision({ job_id: 'a', fire_at: FIRE_AT })).toEqual({ schedule_id: 'sch-9' });
  });

  it('a 4xx is still a refusal', async () => {
    nas.reply({ status: 400, json: { error: 'invalid_request', message: 'fire_at is required' } });
    const err = await failure(client().provision({ job_id: 'a', fire_at: FIRE_AT }));
    expect(err.code).toBe('nas_rejected');
    expect(err.status).toBe(400);
  });
});

describe('retries', () => {
  it('retries a 503 with jittered backoff and then succeeds', async () => {
    const clock = new ObservedClock(true);
    nas.reply(
      { status: 503, text: 'busy' },
      { status: 503, text: 'busy' },
      { status: 200, json: { schedule_id: 's' } },
    );
    const result = await client({ clock, retry: { baseDelayMs: 200 } }).provision({
      job_id: 'a',
      fire_at: FIRE_AT,
    });
    expect(result.schedule_id).toBe('s');
    expect(nas.requests).toHaveLength(3);
    // random() = 0.5: half of 200, then half of 400.
    expect(clock.sleeps).toEqual([100, 200]);
    // Every retry is the same provision: same body, so NAS de-duplicates it.
    expect(new Set(nas.requests.map((r) => r.body)).size).toBe(1);
  });

  it('honours Retry-After (delta-seconds) instead of the backoff', async () => {
    const clock = new ObservedClock(false);
    nas.reply(
      { status: 503, text: 'later', headers: { 'retry-after': '7' } },
      { status: 200, json: { armed: [] } },
    );
    const pending = client({ clock }).list();
    expect(await clock.nextSleep()).toBe(7000);
    expect(nas.requests).toHaveLength(1);
    await clock.advance(6999);
    expect(nas.requests).toHaveLength(1);
    await clock.advance(1);
    expect(await pending).toMatchObject({ entries: [], skipped: 0 });
    expect(nas.requests).toHaveLength(2);
  });

  it('honours Retry-After as an HTTP-date', async () => {
    const clock = new ObservedClock(true);
    const in30s = new Date(clock.now() + 30_000).toUTCString();
    nas.reply(
      { status: 429, text: 'slow down', headers: { 'retry-after': in30s } },
      { status: 200, json: { ok: true } },
    );
    await client({ clock, retry: { maxDelayMs: 60_000 } }).cancel('a');
    expect(clock.sleeps).toEqual([30_000]);
    expect(nas.requests).toHaveLength(2);
  });

  it('a Retry-After longer than the in-call cap fails the call at once, carrying the delay', async () => {
    // Before: Retry-After: 120 was retried after 15 s (the cap), into another refusal.
    const clock = new ObservedClock(true);
    nas.reply({ status: 503, text: 'busy', headers: { 'retry-after': '120' } });
    const err = await failure(client({ clock }).list());
    expect(err).toMatchObject({ code: 'nas_rejected', status: 503, retryable: true, retryAfterMs: 120_000 });
    expect(clock.sleeps).toEqual([]);
    expect(nas.requests).toHaveLength(1);
  });

  it('gives up on persistent 429 after maxAttempts with a retryable nas_rejected', async () => {
    nas.fallback = { status: 429, json: { error: 'rate_limited' } };
    const err = await failure(client({ retry: { maxAttempts: 3 } }).list());
    expect(err.code).toBe('nas_rejected');
    expect(err.status).toBe(429);
    expect(err.retryable).toBe(true);
    expect(err.message).toContain('rate_limited');
    expect(nas.requests).toHaveLength(3);
  });

  it('retries a refused connection, then fails with nas_unreachable', async () => {
    const clock = new ObservedClock(true);
    const port = await closedPort();
    const err = await failure(
      client({ portalUrl: `http://127.0.0.1:${port}`, clock, retry: { maxAttempts: 3 } }).list(),
    );
    expect(err.code).toBe('nas_unreachable');
    expect(err.retryable).toBe(true);
    expect(err.status).toBeUndefined();
    expect(clock.sleeps).toHaveLength(2);
    expect(err.details).toMatchObject({ cause_code: 'ECONNREFUSED' });
  });

  it('times out an attempt that gets no reply and retries it', async () => {
    nas.reply(
      () => {
        // Never answer: the client must give up on its own.
      },
      { status: 200, json: { schedule_id: 's' } },
    );
    const clock = new ObservedClock(true);
    const started = performance.now();
    // Long enough that the answered second attempt cannot time out on a loaded machine as well.
    const result = await client({ clock, timeoutMs: 1000 }).provision({ job_id: 'a', fire_at: FIRE_AT });
    expect(result.schedule_id).toBe('s');
    expect(nas.requests).toHaveLength(2);
    expect(clock.sleeps).toHaveLength(1);
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('reports a timeout as nas_unreachable once attempts run out', async () => {
    nas.fallback = () => {};
    // Long enough that each attempt reaches NAS before it times out on a loaded machine: with 50 ms a
    // process kept off the CPU for longer fires the timer before the connect completes, and the attempt
    // ends without NAS ever seeing it.
    const err = await failure(client({ timeoutMs: 1000, retry: { maxAttempts: 2 } }).cancel('a'));
    expect(err.code).toBe('nas_unreachable');
    expect(err.message).toContain('no reply within 1000 ms');
    expect(nas.requests).toHaveLength(2);
  });

  it('logs each retry as a warning without the token', async () => {
    const { logger, at } = recordingLogger();
    nas.reply(
      { status: 503, text: 'busy', headers: { 'retry-after': '2' } },
      { status: 200, json: { ok: true } },
    );
    await client({ logger }).cancel('a');
    const warnings = at('warn');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.obj).toMatchObject({
      op: 'cancel',
      attempt: 1,
      delay_ms: 2000,
      retry_after: true,
      status: 503,
    });
    expect(JSON.stringify(warnings)).not.toContain('agent-token');
  });

  it('does not retry a 400', async () => {
    nas.reply({ status: 400, json: { error: 'invalid_request', error_description: 'fire_at is malformed' } });
    const clock = new ObservedClock(true);
    const err = await failure(client({ clock }).provision({ job_id: 'a', fire_at: FIRE_AT }));
    expect(err.code).toBe('nas_rejected');
    expect(err.status).toBe(400);
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('fire_at is malformed');
    expect(nas.requests).toHaveLength(1);
    expect(clock.sleeps).toEqual([]);
  });
});

describe('authorization', () => {
  it('on 401 re-reads the rotated token file once and retries at once with the new token', async () => {
    const file = join(dir, 'token');
    await writeFile(file, 'old-token\n');
    nas.reply(
      async (_req, res) => {
        // The platform rotates the token, and NAS already refuses the old one.
        await writeFile(file, 'new-token\n');
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"invalid_token"}');
      },
      { status: 200, json: { schedule_id: 's' } },
    );
    const clock = new ObservedClock(true);
    const result = await client({ clock, tokenSource: createTokenSource({ file }) }).provision({
      job_id: 'a',
      fire_at: FIRE_AT,
    });
    expect(result.schedule_id).toBe('s');
    expect(nas.requests.map((r) => r.headers['authorization'])).toEqual([
      'Bearer old-token',
      'Bearer new-token',
    ]);
    expect(clock.sleeps).toEqual([]);
  });

  it('a second 401 is nas_unauthorized, not retried further', async () => {
    const file = join(dir, 'token');
    await writeFile(file, 'stale');
    nas.fallback = { status: 401, json: { error: 'invalid_token' } };
    const err = await failure(client({ tokenSource: createTokenSource({ file }) }).list());
    expect(err.code).toBe('nas_unauthorized');
    expect(err.status).toBe(401);
    expect(err.retryable).toBe(false);
    expect(nas.requests).toHaveLength(2);
  });

  it('a 401 after a retried 503 does not re-read the token a second time', async () => {
    const file = join(dir, 'token');
    await writeFile(file, 'tok');
    nas.reply(
      { status: 401, json: {} },
      { status: 503, text: 'busy' },
      { status: 401, json: {} },
      { status: 200, json: { armed: [] } },
    );
    const err = await failure(client({ tokenSource: createTokenSource({ file }) }).list());
    expect(err.code).toBe('nas_unauthorized');
    expect(nas.requests).toHaveLength(3);
  });

  it('a 401 whose token file has vanished is nas_unauthorized naming the file', async () => {
    const file = join(dir, 'token');
    await writeFile(file, 'tok');
    nas.reply(async (_req, res) => {
      await rm(file);
      res.writeHead(401).end();
    });
    const err = await failure(client({ tokenSource: createTokenSource({ file }) }).list());
    expect(err.code).toBe('nas_unauthorized');
    expect(err.message).toContain(file);
    expect(nas.requests).toHaveLength(1);
  });

  it('403 invalid_client is nas_invalid_client after exactly one call', async () => {
    nas.fallback = { status: 403, json: { error: 'invalid_client', error_description: 'agent revoked' } };
    const clock = new ObservedClock(true);
    const err = await failure(client({ clock }).provision({ job_id: 'a', fire_at: FIRE_AT }));
    expect(err.code).toBe('nas_invalid_client');
    expect(err.status).toBe(403);
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('agent revoked');
    expect(nas.requests).toHaveLength(1);
    expect(clock.sleeps).toEqual([]);
  });

  it('any other 403 is nas_rejected, not retried', async () => {
    nas.fallback = { status: 403, text: 'Forbidden by firewall' };
    const err = await failure(client().list());
    expect(err.code).toBe('nas_rejected');
    expect(err.status).toBe(403);
    expect(err.retryable).toBe(false);
    expect(nas.requests).toHaveLength(1);
  });

  it('a missing token file fails before any call, with invalid_config', async () => {
    const err = await client({ tokenSource: createTokenSource({ file: join(dir, 'absent') }) })
      .list()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChronosError);
    expect((err as ChronosError).code).toBe('invalid_config');
    expect(nas.requests).toHaveLength(0);
  });
});

describe('abort and close', () => {
  it('the caller signal stops retries during a backoff sleep', async () => {
    const clock = new ObservedClock(false);
    nas.fallback = { status: 503, text: 'busy' };
    const c = client({ clock });
    const controller = new AbortController();
    const pending = c.provision({ job_id: 'a', fire_at: FIRE_AT }, controller.signal);
    await clock.nextSleep();
    const reason = new Error('reconcile cancelled');
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
    expect(nas.requests).toHaveLength(1);
    expect(clock.pending()).toBe(0);
  });

  it('the caller signal aborts a request in flight', async () => {
    nas.fallback = () => {};
    const c = client();
    const controller = new AbortController();
    const pending = c.list(controller.signal);
    await nas.nthRequest(0);
    const reason = new Error('stop');
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
    expect(nas.requests).toHaveLength(1);
  });

  it('an already aborted signal makes no call', async () => {
    const controller = new AbortController();
    controller.abort(new Error('too late'));
    await expect(client().list(controller.signal)).rejects.toThrow('too late');
    expect(nas.requests).toHaveLength(0);
  });

  it('close ends pending calls and refuses new ones', async () => {
    const clock = new ObservedClock(false);
    nas.fallback = { status: 503, text: 'busy' };
    const c = client({ clock });
    const pending = c.list();
    await clock.nextSleep();
    await c.close();
    const err = await failure(pending);
    expect(err.code).toBe('nas_unreachable');
    expect(err.retryable).toBe(false);
    expect((await failure(c.cancel('a'))).message).toContain('closed');
  });

  it('rejects a portal URL that is not http(s)', () => {
    expect(() => client({ portalUrl: 'ftp://nas.example' })).toThrow(ChronosError);
    expect(() => client({ portalUrl: 'not a url' })).toThrow(/not a URL/);
  });
});
