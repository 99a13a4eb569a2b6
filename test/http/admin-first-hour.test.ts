import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type RunningChronos, type StartOptions, startChronos } from '../../src/main.js';
import { createHandlerRegistry } from '../../src/run/targets/handler.js';
import { ManualClock } from '../helpers/manual-clock.js';

const TOKEN = 'admin-token-0123456789abcdef';

let dir: string;
let running: RunningChronos | undefined;
let logs: Array<Record<string, unknown>>;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chronos-admin-first-hour-'));
  logs = [];
});

afterEach(async () => {
  await running?.shutdown('test over');
  running = undefined;
  await rm(dir, { recursive: true, force: true });
});

function captureLogger() {
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line) logs.push(JSON.parse(line));
      done();
    },
  });
  return pino({ level: 'info' }, sink);
}

async function start(env: Record<string, string> = {}, extra: Partial<StartOptions> = {}) {
  running = await startChronos({
    env: {
      PORT: '0',
      CHRONOS_DATA_DIR: join(dir, 'data'),
      CHRONOS_PROVIDER: 'builtin',
      CHRONOS_ADMIN_TOKEN: TOKEN,
      ...env,
    },
    clock: new ManualClock('2026-01-05T10:00:00Z'),
    logger: captureLogger(),
    handleSignals: false,
    exit: () => {},
    ...extra,
  });
  return running;
}

async function send(
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
  url: string,
  payload?: string,
  type?: string,
) {
  const res = await running!.app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${TOKEN}`, ...(type ? { 'content-type': type } : {}) },
    ...(payload === undefined ? {} : { payload }),
  });
  // biome-ignore lint/suspicious/noExplicitAny: reply bodies are checked field by field
  return { status: res.statusCode, body: res.json() as Record<string, any> };
}

const httpSpec = (id: string, target: Record<string, unknown> = {}) =>
  JSON.stringify({
    id,
    schedule: 'every 1h',
    target: { type: 'http', url: 'http://127.0.0.1:9/hook', ...target },
  });

describe('admin API: the common mistakes get Chronos errors', () => {
  it("curl's default content type is refused with what to send instead", async () => {
    await start();
    const res = await send('POST', '/api/jobs', httpSpec('a'), 'application/x-www-form-urlencoded');
    expect(res.status).toBe(415);
    expect(res.body).toMatchObject({
      error: 'unsupported_media_type',
      content_type: 'application/x-www-form-urlencoded',
    });
    expect(res.body.message).toContain('"Content-Type: application/json"');
    // A body-less POST needs no content type at all.
    await send('POST', '/api/jobs', httpSpec('a'), 'application/json');
    expect((await send('POST', '/api/jobs/a/pause')).status).toBe(200);
  });

  it('bad JSON names the line and column', async () => {
    await start();
    const res = await send('POST', '/api/jobs', '{"id": "a",\n "schedule": every 1h}', 'application/json');
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_json');
    expect(res.body.message).toMatch(/^the body is not valid JSON: line 2, column 14: /);
  });

  it('method is case-insensitive and stored upper-case; an unknown one lists the methods', async () => {
    await start();
    const created = await send('POST', '/api/jobs', httpSpec('lower', { method: 'get' }), 'application/json');
    expect(created.status).toBe(201);
    expect(created.body.target.method).toBe('GET');
    const patched = await send(
      'PATCH',
      '/api/jobs/lower',
      JSON.stringify({ target: { type: 'http', url: 'http://127.0.0.1:9/x', method: 'Put' } }),
      'application/json',
    );
    expect(patched.body.target.method).toBe('PUT');
    const bad = await send('POST', '/api/jobs', httpSpec('bad', { method: 'fetch' }), 'application/json');
    expect(bad.status).toBe(400);
    expect(bad.body.problems).toEqual([
      { path: 'target.method', message: 'must be one of GET, POST, PUT, PATCH, DELETE (any case)' },
    ]);
  });

  it('an unknown key gets a "did you mean"', async () => {
    await start();
    const res = await send(
      'POST',
      '/api/jobs',
      JSON.stringify({ id: 'a', shedule: '@daily', target: { type: 'handler', name: 'x' } }),
      'application/json',
    );
    expect(res.status).toBe(400);
    expect(res.body.problems).toEqual([
      { path: '', message: 'unknown key "shedule": did you mean "schedule"?' },
    ]);
  });

  it('a handler target is refused when no handler can exist, and warned about when none is registered yet', async () => {
    const handlerSpec = JSON.stringify({
      id: 'h',
      schedule: '@daily',
      target: { type: 'handler', name: 'report' },
    });
    await start();
    const refused = await send('POST', '/api/jobs', handlerSpec, 'application/json');
    expect(refused.status).toBe(400);
    expect(refused.body.error).toBe('validation_failed');
    expect(refused.body.problems[0]).toMatchObject({ path: 'target.name' });
    expect(refused.body.problems[0].message).toContain('chronos serve registers no handlers');
    expect((await send('GET', '/api/jobs/h')).status).toBe(404);
    await running!.shutdown('next');

    const handlers = createHandlerRegistry();
    handlers.register('other', () => 'ok');
    await start({}, { handlers });
    const accepted = await send('POST', '/api/jobs', handlerSpec, 'application/json');
    expect(accepted.status).toBe(201);
    expect(accepted.body.warning).toBe(
      'no handler "report" is registered yet: runs fail until the application registers it',
    );
    handlers.register('report', () => 'ok');
    const fine = await send('PATCH', '/api/jobs/h', JSON.stringify({ name: 'Report' }), 'application/json');
    expect(fine.body.warning).toBeUndefined();
  });
});

describe('admin API off', () => {
  it('answers /api/* with 404 and how to turn it on, and says so at start', async () => {
    await start({ CHRONOS_ADMIN_TOKEN: '' });
    const res = await running!.app.inject({ method: 'GET', url: '/api/jobs' });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toMatchObject({
      error: 'admin_disabled',
      message: expect.stringContaining('CHRONOS_ADMIN_TOKEN'),
    });
    expect(logs.find((l) => l['msg'] === 'chronos listening')).toMatchObject({ admin_api: 'off' });
    expect(
      logs.some((l) =>
        String(l['msg']).startsWith('admin API off (/api/* answers 404): set CHRONOS_ADMIN_TOKEN'),
      ),
    ).toBe(true);
    // Other unknown paths keep the plain 404.
    expect((await running!.app.inject({ method: 'GET', url: '/nope' })).json()).toMatchObject({
      error: 'not_found',
    });
  });
});

describe('file jobs after CHRONOS_JOBS_FILE is unset', () => {
  it('can be edited (becoming API jobs) and deleted through the API', async () => {
    const jobsFile = join(dir, 'jobs.json');
    await writeFile(
      jobsFile,
      JSON.stringify({
        jobs: [
          { id: 'kept', schedule: 'every 1h', target: { type: 'http', url: 'http://127.0.0.1:9/a' } },
          { id: 'gone', schedule: 'every 1h', target: { type: 'http', url: 'http://127.0.0.1:9/b' } },
        ],
      }),
    );
    await start({ CHRONOS_JOBS_FILE: jobsFile });
    const managed = await send('DELETE', '/api/jobs/gone');
    expect(managed.status).toBe(409);
    expect(managed.body.error).toBe('job_file_managed');
    await running!.shutdown('unset the jobs file');

    await start();
    expect((await send('GET', '/api/jobs/gone')).body.source).toBe('file');
    expect(await send('DELETE', '/api/jobs/gone')).toMatchObject({ status: 200, body: { deleted: true } });
    const edited = await send(
      'PATCH',
      '/api/jobs/kept',
      JSON.stringify({ schedule: 'every 2h' }),
      'application/json',
    );
    expect(edited.status).toBe(200);
    expect(edited.body).toMatchObject({ source: 'api', schedule: 'every 2h' });
  });
});

describe('CHRONOS_IDLE_EXIT_SECONDS with the builtin timer', () => {
  it('is said to be ignored at start when auto falls back to builtin', async () => {
    await start({ CHRONOS_PROVIDER: '', CHRONOS_IDLE_EXIT_SECONDS: '30' });
    const warning = logs.find((l) => String(l['msg']).startsWith('CHRONOS_IDLE_EXIT_SECONDS is ignored'));
    expect(warning).toMatchObject({ level: 40, idle_exit_seconds: 30 });
  });
});
