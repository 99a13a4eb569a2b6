import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createNetServer, createServer } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_STARTUP_WAIT_MS, NAS_WARNING, RECONCILING_WARNING } from '../../src/http/admin.js';
import { ADMIN_ROUTES } from '../../src/http/admin-routes.js';
import { type RunningChronos, startChronos } from '../../src/main.js';
import type { HandlerInput } from '../../src/run/targets/handler.js';
import { createHandlerRegistry } from '../../src/run/targets/handler.js';
import { generateFireKey } from '../helpers/fire-keys.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { waitUntil } from '../helpers/scheduler-fixtures.js';

const TOKEN = 'admin-token-0123456789abcdef';
const T0 = '2026-01-05T10:00:00Z';

let dir: string;
let running: RunningChronos | undefined;
let clock: ManualClock;
let calls: HandlerInput[];
/** Resolvers of `hold` handler runs still going, in start order. */
let held: (() => void)[];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chronos-admin-'));
  clock = new ManualClock(T0);
  calls = [];
  held = [];
});

afterEach(async () => {
  await running?.shutdown('test over');
  running = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function start(env: Record<string, string> = {}): Promise<RunningChronos> {
  const handlers = createHandlerRegistry();
  handlers.register('record', (input) => {
    calls.push(input);
    return 'recorded';
  });
  handlers.register(
    'hold',
    () =>
      new Promise<string>((resolve) => {
        held.push(() => resolve('released'));
      }),
  );
  running = await startChronos({
    env: {
      PORT: '0',
      LOG_LEVEL: 'silent',
      CHRONOS_DATA_DIR: dir,
      CHRONOS_PROVIDER: 'builtin',
      CHRONOS_ADMIN_TOKEN: TOKEN,
      ...env,
    },
    clock,
    handlers,
    handleSignals: false,
    exit: () => {},
  });
  return running;
}

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

async function api(method: Method, url: string, body?: unknown, token: string | null = TOKEN) {
  const res = await running!.app.inject({
    method,
    url,
    headers: {
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { payload: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  return {
    status: res.statusCode,
    // biome-ignore lint/suspicious/noExplicitAny: reply bodies are checked field by field with toMatchObject
    body: res.json() as Record<string, any>,
    headers: res.headers,
  };
}

const spec = (id: string, schedule = 'every 1h', extra: Record<string, unknown> = {}) => ({
  id,
  schedule,
  target: { type: 'handler', name: 'record' },
  ...extra,
});

describe('admin API: authentication', () => {
  it('answers 401 unauthorized for a missing, wrong, or wrong-length token, on every route', async () => {
    await start();
    for (const route of ADMIN_ROUTES) {
      const url = route.path.replace('{id}', 'some-job');
      const method = route.method.toUpperCase() as Method;
      for (const token of [null, 'x'.repeat(TOKEN.length), 'short', `${TOKEN}extra`]) {
        const res = await api(method, url, undefined, token);
        expect(res.status, `${method} ${url} with ${token}`).toBe(401);
        expect(res.body.error).toBe('unauthorized');
      }
    }
    const basic = await running!.app.inject({
      method: 'GET',
      url: '/api/jobs',
      headers: { authorization: `Basic ${TOKEN}` },
    });
    expect(basic.statusCode).toBe(401);
  });

  it('checks the token before reading the body', async () => {
    await start();
    const res = await api('POST', '/api/jobs', '{not json', 'wrong-token-wrong-token');
    expect(res.status).toBe(401);
  });

  it('does not register the routes at all without CHRONOS_ADMIN_TOKEN (404 saying how to turn them on)', async () => {
    await start({ CHRONOS_ADMIN_TOKEN: '' });
    for (const route of ADMIN_ROUTES) {
      const res = await api(route.method.toUpperCase() as Method, route.path.replace('{id}', 'x'));
      expect(res.status).toBe(404);
      expect(res.body.error).toBe('admin_disabled');
    }
  });
});

describe('admin API: jobs CRUD', () => {
  it('creates a job (201), lists and gets it with ISO instants and armed', async () => {
    await start();
    const created = await api('POST', '/api/jobs', spec('hourly'));
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      id: 'hourly',
      state: 'scheduled',
      source: 'api',
      armed: true,
      next_run_at: '2026-01-05T11:00:00.000Z',
      created_at: '2026-01-05T10:00:00.000Z',
    });
    expect(created.body.warning).toBeUndefined();

    const list = await api('GET', '/api/jobs');
    expect(list.status).toBe(200);
    expect(list.body.jobs.map((j: { id: string }) => j.id)).toEqual(['hourly']);
    expect(list.body.jobs[0]).toMatchObject({ next_run_at: '2026-01-05T11:00:00.000Z', armed: true });

    const one = await api('GET', '/api/jobs/hourly');
    expect(one.status).toBe(200);
    expect(one.body.id).toBe('hourly');
  });

  it('generates an id when none is given', async () => {
    await start();
    const created = await api('POST', '/api/jobs', {
      name: 'Nightly Report',
      schedule: '0 3 * * *',
      target: { type: 'handler', name: 'record' },
    });
    expect(created.status).toBe(201);
    expect(created.body.id).toMatch(/^nightly-report-[0-9a-f]{8}$/);
  });

  it('rejects invalid specs with 400 validation_failed and field paths', async () => {
    await start();
    const res = await api('POST', '/api/jobs', {
      id: 'Bad Id',
      schedule: 'every 1h',
      target: { type: 'http', url: 'ftp://x' },
      colour: 'red',
    });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('validation_failed');
    const paths = res.body.problems.map((p: { path: string }) => p.path);
    expect(paths).toContain('id');
    expect(paths).toContain('target.url');
    expect(res.body.problems.some((p: { message: string }) => p.message.includes('colour'))).toBe(true);

    const notObject = await api('POST', '/api/jobs', [1, 2]);
    expect(notObject.status).toBe(400);
    expect(notObject.body.error).toBe('validation_failed');

    const badJson = await api('POST', '/api/jobs', '{"id":');
    expect(badJson.status).toBe(400);
  });

  it('rejects a bad schedule with invalid_schedule listing the accepted forms', async () => {
    await start();
    const res = await api('POST', '/api/jobs', spec('bad', '30m'));
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_schedule');
    expect(res.body.accepted_forms.length).toBeGreaterThan(5);
    expect(res.body.message).toContain('every 30m');
  });

  it('refuses command targets through the API unless allowed', async () => {
    await start();
    const res = await api('POST', '/api/jobs', {
      id: 'cmd',
      schedule: 'every 1h',
      target: { type: 'command', argv: ['true'] },
    });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('commands_disabled');
  });

  it('answers 409 job_exists for a duplicate id', async () => {
    await start();
    expect((await api('POST', '/api/jobs', spec('dup'))).status).toBe(201);
    const again = await api('POST', '/api/jobs', spec('dup'));
    expect(again.status).toBe(409);
    expect(again.body.error).toBe('job_exists');
  });

  it('answers 404 job_not_found for unknown (and malformed) ids on every job route', async () => {
    await start();
    for (const id of ['missing', 'NOT..VALID']) {
      for (const [method, suffix] of [
        ['GET', ''],
        ['PATCH', ''],
        ['DELETE', ''],
        ['POST', '/pause'],
        ['POST', '/resume'],
        ['POST', '/run'],
        ['GET', '/runs'],
      ] as const) {
        const res = await api(
          method,
          `/api/jobs/${id}${suffix}`,
          method === 'PATCH' ? { name: 'x' } : undefined,
        );
        expect(res.status, `${method} ${suffix}`).toBe(404);
        expect(res.body.error).toBe('job_not_found');
      }
    }
  });

  it('PATCH merges fields onto the spec, keeps runtime state, and recomputes next_run_at on a new schedule', async () => {
    await start();
    await api('POST', '/api/jobs', spec('p', '0 12 * * *', { name: 'Noon' }));
    const renamed = await api('PATCH', '/api/jobs/p', { name: 'Midday' });
    expect(renamed.status).toBe(200);
    expect(renamed.body).toMatchObject({
      name: 'Midday',
      schedule: '0 12 * * *',
      next_run_at: '2026-01-05T12:00:00.000Z',
    });

    const moved = await api('PATCH', '/api/jobs/p', { schedule: '0 9 * * *', timezone: 'Europe/Paris' });
    expect(moved.status).toBe(200);
    expect(moved.body).toMatchObject({
      name: 'Midday',
      timezone: 'Europe/Paris',
      next_run_at: '2026-01-06T08:00:00.000Z',
      armed: true,
    });

    const oneShot = await api('PATCH', '/api/jobs/p', { schedule: 'in 5m' });
    expect(oneShot.body.repeat).toEqual({ times: 1, completed: 0 });
    const recurring = await api('PATCH', '/api/jobs/p', { schedule: 'every 1h' });
    expect(recurring.body.repeat).toEqual({ times: null, completed: 0 });

    const bad = await api('PATCH', '/api/jobs/p', { timeout_seconds: -1, target: { type: 'http' } });
    expect(bad.status).toBe(400);
    expect(bad.body.problems.map((p: { path: string }) => p.path)).toEqual(
      expect.arrayContaining(['timeout_seconds', 'target.url']),
    );

    const idChange = await api('PATCH', '/api/jobs/p', { id: 'other' });
    expect(idChange.status).toBe(400);
    expect(idChange.body.problems[0].path).toBe('id');
  });

  it('DELETE removes the job and its history; the job is no longer armed', async () => {
    await start();
    await api('POST', '/api/jobs', spec('gone'));
    const res = await api('DELETE', '/api/jobs/gone');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ id: 'gone', deleted: true, armed: false });
    expect((await api('GET', '/api/jobs/gone')).status).toBe(404);
    expect(running!.provider().isArmed('gone')).toBe(false);
  });

  it('refuses to PATCH or DELETE a jobs-file job with 409 naming the file, but pauses, resumes and runs it', async () => {
    const jobsFile = join(dir, 'declared.json');
    await writeFile(jobsFile, JSON.stringify({ jobs: [spec('declared')] }));
    await start({ CHRONOS_JOBS_FILE: jobsFile });
    const patch = await api('PATCH', '/api/jobs/declared', { name: 'x' });
    expect(patch.status).toBe(409);
    expect(patch.body.error).toBe('job_file_managed');
    expect(patch.body.message).toContain(jobsFile);
    const del = await api('DELETE', '/api/jobs/declared');
    expect(del.status).toBe(409);
    expect(del.body.jobs_file).toBe(jobsFile);
    expect((await api('POST', '/api/jobs/declared/pause')).body.state).toBe('paused');
    expect((await api('POST', '/api/jobs/declared/resume')).body.state).toBe('scheduled');
    expect((await api('POST', '/api/jobs/declared/run')).status).toBe(202);
  });

  it('limits admin bodies to 64 KiB', async () => {
    await start();
    const res = await api('POST', '/api/jobs', spec('big', 'every 1h', { name: 'x'.repeat(70 * 1024) }));
    expect(res.status).toBe(413);
  });
});

describe('admin API: pause, resume, run', () => {
  it('pause cancels the arm; resume recomputes next_run_at from now and arms it', async () => {
    await start();
    await api('POST', '/api/jobs', spec('cycle', '*/15 * * * *'));
    expect(running!.provider().isArmed('cycle')).toBe(true);

    const paused = await api('POST', '/api/jobs/cycle/pause');
    expect(paused.status).toBe(200);
    expect(paused.body).toMatchObject({ state: 'paused', armed: false });
    expect(running!.provider().isArmed('cycle')).toBe(false);
    expect((await api('POST', '/api/jobs/cycle/pause')).body.state).toBe('paused');

    // While paused, the 10:15 and 10:30 occurrences pass; resuming does not make them up.
    clock.set('2026-01-05T10:37:00Z');
    const resumed = await api('POST', '/api/jobs/cycle/resume');
    expect(resumed.status).toBe(200);
    expect(resumed.body).toMatchObject({
      state: 'scheduled',
      armed: true,
      next_run_at: '2026-01-05T10:45:00.000Z',
    });
    expect(running!.provider().isArmed('cycle')).toBe(true);
    expect(calls).toHaveLength(0);
  });

  it('resume keeps a paused one-shot at its own instant and never revives a completed one', async () => {
    await start();
    await api('POST', '/api/jobs', spec('once', 'at 2026-01-05T12:00:00Z'));
    await api('POST', '/api/jobs/once/pause');
    const resumed = await api('POST', '/api/jobs/once/resume');
    expect(resumed.body).toMatchObject({ state: 'scheduled', next_run_at: '2026-01-05T12:00:00.000Z' });

    await running!.store.updateJob('once', (job) => ({
      ...job,
      state: 'completed',
      next_run_at: null,
      repeat: { times: 1, completed: 1 },
    }));
    const again = await api('POST', '/api/jobs/once/resume');
    expect(again.body).toMatchObject({ state: 'completed', next_run_at: null, armed: false });
    const pauseCompleted = await api('POST', '/api/jobs/once/pause');
    expect(pauseCompleted.body.state).toBe('completed');
  });

  it('run starts a manual run (202) without moving next_run_at; runs are listed newest first', async () => {
    await start();
    await api('POST', '/api/jobs', spec('manual', 'every 1h'));
    const first = await api('POST', '/api/jobs/manual/run');
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({
      status: 'accepted',
      job_id: 'manual',
      trigger: 'manual',
      fire_at: '2026-01-05T10:00:00.000Z',
    });
    expect(first.body.run_id).toEqual(expect.any(String));
    await waitUntil(async () =>
      (await running!.store.listRuns('manual')).some((r) => r.status === 'succeeded'),
    );

    // concurrency "forbid" (the default): the next run-now is accepted once the first run is settled.
    await waitUntil(async () => (await running!.store.listClaimed()).length === 0);
    clock.set('2026-01-05T10:00:05Z');
    const second = await api('POST', '/api/jobs/manual/run');
    expect(second.status).toBe(202);
    await waitUntil(
      async () =>
        (await running!.store.listRuns('manual')).filter((r) => r.status === 'succeeded').length === 2,
    );
    expect(calls.map((c) => c.run_id)).toEqual([first.body.run_id, second.body.run_id]);

    const job = await api('GET', '/api/jobs/manual');
    expect(job.body).toMatchObject({
      next_run_at: '2026-01-05T11:00:00.000Z',
      armed: true,
      repeat: { completed: 0 },
    });

    const runs = await api('GET', '/api/jobs/manual/runs');
    expect(runs.status).toBe(200);
    expect(runs.body.runs.map((r: { run_id: string }) => r.run_id)).toEqual([
      second.body.run_id,
      first.body.run_id,
    ]);
    expect(runs.body.runs[0]).toMatchObject({
      trigger: 'manual',
      status: 'succeeded',
      fire_at: '2026-01-05T10:00:05.000Z',
    });
    const limited = await api('GET', '/api/jobs/manual/runs?limit=1');
    expect(limited.body.runs).toHaveLength(1);
    const badLimit = await api('GET', '/api/jobs/manual/runs?limit=0');
    expect(badLimit.status).toBe(400);
    expect(badLimit.body.problems[0].path).toBe('limit');
  });
});

describe('admin API: run-now respects the job concurrency policy', () => {
  /**
   * A real loopback target that, on each call, asks Chronos (over real HTTP) to run its own job again,
   * as the job in the report did. Each call moves the clock on, so every run-now gets its own instant.
   */
  async function selfCallingTarget(jobId: string) {
    const replies: { status: number; error?: string }[] = [];
    const server = createHttpServer((req, res) => {
      req.resume();
      req.on('end', async () => {
        clock.advance(1_000);
        const reply = await fetch(`${running!.url}/api/jobs/${jobId}/run`, {
          method: 'POST',
          headers: { authorization: `Bearer ${TOKEN}` },
        });
        const body = (await reply.json()) as { error?: string };
        replies.push({ status: reply.status, ...(body.error ? { error: body.error } : {}) });
        res.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/self`;
    return { url, replies, close: () => new Promise<void>((r) => server.close(() => r())) };
  }

  it('forbid (the default): a target calling its own run-now is refused 409 run_in_progress, no loop', async () => {
    await start();
    const target = await selfCallingTarget('loop');
    try {
      await api('POST', '/api/jobs', {
        id: 'loop',
        schedule: 'every 1h',
        target: { type: 'http', url: target.url },
      });
      expect((await api('POST', '/api/jobs/loop/run')).status).toBe(202);
      await waitUntil(async () =>
        (await running!.store.listRuns('loop')).some((r) => r.status === 'succeeded'),
      );
      // Before: each run started the next (~99 runs/s). Now the run's own call is refused while it runs.
      expect(target.replies).toEqual([{ status: 409, error: 'run_in_progress' }]);
      await waitUntil(async () => (await running!.store.listClaimed()).length === 0);
      expect(await running!.store.listRuns('loop')).toHaveLength(1);
    } finally {
      await target.close();
    }
  });

  it('forbid: refused while a run is going, with the running run named; accepted again once it ended', async () => {
    await start();
    await api('POST', '/api/jobs', spec('busy', 'every 1h', { target: { type: 'handler', name: 'hold' } }));
    const first = await api('POST', '/api/jobs/busy/run');
    expect(first.status).toBe(202);
    await waitUntil(() => held.length === 1);
    clock.advance(1_000);
    const refused = await api('POST', '/api/jobs/busy/run');
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ error: 'run_in_progress', running_run_id: first.body.run_id });
    expect(refused.body.message).toContain('forbid');
    held[0]!();
    // Free again once the run has ended and its ledger row is settled.
    await waitUntil(async () => (await running!.store.listClaimed()).length === 0);
    clock.advance(1_000);
    expect((await api('POST', '/api/jobs/busy/run')).status).toBe(202);
    await waitUntil(() => held.length === 2);
    held[1]!();
  });

  it('allow: run-now starts a run beside the one going', async () => {
    await start();
    await api(
      'POST',
      '/api/jobs',
      spec('many', 'every 1h', { target: { type: 'handler', name: 'hold' }, concurrency: 'allow' }),
    );
    expect((await api('POST', '/api/jobs/many/run')).status).toBe(202);
    await waitUntil(() => held.length === 1);
    clock.advance(1_000);
    expect((await api('POST', '/api/jobs/many/run')).status).toBe(202);
    await waitUntil(() => held.length === 2);
    for (const done of held) done();
  });
});

describe('admin API: status and OpenAPI', () => {
  it('reports provider, NAS reachability, reconcile summary, counts, JWKS age, version and uptime', async () => {
    await start();
    await api('POST', '/api/jobs', spec('a'));
    await api('POST', '/api/jobs', spec('b'));
    await api('POST', '/api/jobs/b/pause');
    await waitUntil(() => running!.provider().status().lastReconcile !== null);
    clock.set('2026-01-05T10:02:00Z');
    const res = await api('GET', '/api/status');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      version: expect.any(String),
      uptime_seconds: 120,
      provider: 'builtin',
      provider_configured: 'builtin',
      provider_reason: null,
      nas_reachable: null,
      jobs: 2,
      desired: 1,
      armed: 1,
      jwks_cache_age_seconds: null,
      jobs_file: null,
    });
    // This wake: started by the admin requests above; the builtin timer never lets it stop.
    expect(res.body.wake).toEqual({
      cause: 'admin',
      woke_at: '2026-01-05T10:00:00.000Z',
      settled_at: null,
      awake_seconds: 120,
      awake_because: 'builtin provider in use',
      exit_at: null,
    });
    expect(res.body.last_reconcile).toMatchObject({
      at: expect.stringMatching(/^2026-01-05T/),
      failed: 0,
      trusted: true,
    });
    // Behind a load balancer over several replicas, the reply names the process that answered it.
    expect(res.body.replica).toEqual({
      host: hostname(),
      pid: process.pid,
      boot_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
    });
  });

  it('serves an OpenAPI 3.1 document listing every route, with the JobSpec schema', async () => {
    await start();
    const res = await running!.app.inject({
      method: 'GET',
      url: '/api/openapi.json',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('application/json');
    const doc = JSON.parse(res.body);
    expect(doc.openapi).toBe('3.1.0');
    for (const route of ADMIN_ROUTES) {
      expect(doc.paths[route.path]?.[route.method], `${route.method} ${route.path}`).toBeDefined();
      expect(doc.paths[route.path][route.method].responses['401']).toBeDefined();
    }
    const jobSpec = doc.components.schemas.JobSpec;
    expect(jobSpec.type).toBe('object');
    expect(jobSpec.required).toEqual(expect.arrayContaining(['schedule', 'target']));
    expect(jobSpec.properties.id.pattern).toBe('^[a-z0-9][a-z0-9_-]{0,63}$');
    expect(doc.paths['/api/jobs'].post.requestBody.content['application/json'].schema.$ref).toBe(
      '#/components/schemas/JobSpec',
    );
    // Every $ref resolves.
    for (const ref of res.body.match(/"#\/components\/schemas\/[A-Za-z]+"/g) ?? []) {
      expect(doc.components.schemas[ref.slice(22, -1)], ref).toBeDefined();
    }
    // The status's wake is described field by field, as the route sends it.
    const status = await api('GET', '/api/status');
    const wakeSchema = doc.components.schemas.Status.properties.wake;
    expect(Object.keys(wakeSchema.properties).sort()).toEqual(Object.keys(status.body.wake).sort());
    expect(wakeSchema.properties.cause.enum).toContain(status.body.wake.cause);
  });
});

describe('admin API with the chronos provider and NAS unreachable', () => {
  it('saves the job, replies armed:false with a warning, and status shows NAS unreachable', async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const server = createServer();
      server.listen(0, '127.0.0.1', () => {
        const port = (server.address() as { port: number }).port;
        server.close(() => resolve(port));
      });
    });
    const key = await generateFireKey();
    await start({
      CHRONOS_PROVIDER: 'chronos',
      CHRONOS_PORTAL_URL: `http://127.0.0.1:${closedPort}`,
      CHRONOS_CALLBACK_URL: 'http://127.0.0.1:9',
      CHRONOS_EXPECTED_AUDIENCE: 'agent:test',
      CHRONOS_FIRE_PUBLIC_KEY: key.publicPem,
      CHRONOS_ACCESS_TOKEN: 'agent-token',
    });
    expect(running!.provider().name).toBe('chronos');
    const pending = api('POST', '/api/jobs', spec('offline'));
    let settled = false;
    void pending.finally(() => {
      settled = true;
    });
    // NAS retries back off on the manual clock, and so does the reply's wait for the arm; the job's write
    // is real I/O, so manual time moves in steps until the reply is there.
    for (let i = 0; i < 400 && !settled; i++) {
      await clock.advance(500);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const res = await pending;
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ id: 'offline', armed: false, warning: NAS_WARNING });
    expect(await running!.store.getJob('offline')).toBeDefined();
    // Status waits (bounded, on the clock) for the start-up reconcile, which NAS retries hold back.
    const statusReply = api('GET', '/api/status');
    let answered = false;
    void statusReply.finally(() => {
      answered = true;
    });
    for (let i = 0; i < 400 && !answered; i++) {
      await clock.advance(500);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const status = await statusReply;
    expect(status.body).toMatchObject({
      provider: 'chronos',
      nas_reachable: false,
      armed: 0,
      unconfirmed: [{ job_id: 'offline', fire_at: expect.any(String), reason: expect.any(String) }],
      last_fire_at: null,
      jobs_last_fire_at: { offline: null },
    });
  });

  it('answers status and jobs while the start-up reconcile is still running, and says so', async () => {
    // A NAS that accepts connections and never answers: the start-up list cannot finish.
    const silent = createNetServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const key = await generateFireKey();
      await start({
        CHRONOS_PROVIDER: 'chronos',
        CHRONOS_PORTAL_URL: `http://127.0.0.1:${(silent.address() as { port: number }).port}`,
        CHRONOS_CALLBACK_URL: 'http://127.0.0.1:9',
        CHRONOS_EXPECTED_AUDIENCE: 'agent:test',
        CHRONOS_FIRE_PUBLIC_KEY: key.publicPem,
        CHRONOS_ACCESS_TOKEN: 'agent-token',
      });
      for (const url of ['/api/status', '/api/jobs']) {
        const pending = api('GET', url);
        let answered = false;
        void pending.finally(() => {
          answered = true;
        });
        // The wait is bounded on the clock: it answers once the clock passed it, not before.
        await new Promise((resolve) => setTimeout(resolve, 200)); // the request reaches its wait
        await clock.advance(DEFAULT_STARTUP_WAIT_MS - 1);
        await new Promise((resolve) => setTimeout(resolve, 50));
        expect(answered).toBe(false);
        await clock.advance(1);
        const res = await pending;
        expect(res.status).toBe(200);
        expect(res.body).toMatchObject({ warning: RECONCILING_WARNING });
        if (url === '/api/status') expect(res.body).toMatchObject({ startup_reconcile: 'running' });
        else expect(res.body).toMatchObject({ reconciling: true });
      }
    } finally {
      await running?.shutdown('test');
      running = undefined;
      silent.close();
    }
  });
});

describe('admin API: bounded input and damaged jobs', () => {
  it('refuses a body nested 2,000 levels deep with 400 naming the field and the limit, and stores nothing', async () => {
    await start();
    await api('POST', '/api/jobs', spec('healthy'));
    // Sent as text: the request carries exactly what an attacker would send.
    const body = `{"id":"deep","schedule":"every 1h","target":{"type":"http","url":"http://127.0.0.1:9/","body":${'['.repeat(2_000)}${']'.repeat(2_000)}}}`;
    const res = await api('POST', '/api/jobs', body);
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({
      error: 'validation_failed',
      problems: [{ path: 'target.body', message: expect.stringContaining('64') }],
    });
    expect(await running!.store.getJob('deep')).toBeUndefined();
    expect(await readdir(join(dir, 'jobs'))).toEqual(['healthy.json']);
    const list = await api('GET', '/api/jobs');
    expect(list.body.jobs.map((j: { id: string }) => j.id)).toEqual(['healthy']);
    // The same through PATCH: refused, the stored job unchanged.
    const patched = await api('PATCH', '/api/jobs/healthy', JSON.parse(body.replace('"id":"deep",', '')));
    expect(patched.status).toBe(400);
    expect((await running!.store.getJob('healthy'))?.target).toEqual({ type: 'handler', name: 'record' });
  });

  it('shows a damaged job beside the others, refuses to overwrite it, and deletes it by moving its file aside', async () => {
    await start();
    await api('POST', '/api/jobs', spec('alpha'));
    await api('POST', '/api/jobs', spec('broken'));
    await running!.shutdown('restart');
    const path = join(dir, 'jobs', 'broken.json');
    const bytes = (await readFile(path, 'utf8')).slice(0, 50);
    await writeFile(path, bytes);
    await start();

    const list = await api('GET', '/api/jobs');
    expect(list.status).toBe(200);
    expect(list.body.jobs.map((j: { id: string }) => j.id)).toEqual(['alpha']);
    expect(list.body.damaged).toEqual([
      { job_id: 'broken', kind: 'job', file: path, error: expect.stringMatching(/JSON/) },
    ]);
    const status = await api('GET', '/api/status');
    expect(status.body).toMatchObject({ jobs: 1, damaged: [{ job_id: 'broken', kind: 'job', file: path }] });

    for (const [method, url] of [
      ['GET', '/api/jobs/broken'],
      ['PATCH', '/api/jobs/broken'],
      ['POST', '/api/jobs/broken/pause'],
      ['POST', '/api/jobs/broken/resume'],
      ['POST', '/api/jobs/broken/run'],
      ['GET', '/api/jobs/broken/runs'],
    ] as const) {
      const res = await api(method, url, method === 'PATCH' ? { name: 'x' } : undefined);
      expect([method, url, res.status, res.body.error]).toEqual([method, url, 409, 'job_damaged']);
      expect(res.body).toMatchObject({ file: path, damage: expect.any(String) });
    }
    const create = await api('POST', '/api/jobs', spec('broken'));
    expect(create.status).toBe(409);
    expect(create.body.error).toBe('job_damaged');
    expect(await readFile(path, 'utf8')).toBe(bytes);

    const removed = await api('DELETE', '/api/jobs/broken');
    expect(removed.status).toBe(200);
    expect(removed.body).toMatchObject({
      id: 'broken',
      deleted: true,
      moved_to: expect.stringContaining('damaged'),
    });
    expect(await readFile(removed.body.moved_to, 'utf8')).toBe(bytes);
    expect((await api('GET', '/api/jobs')).body.damaged).toEqual([]);
    expect((await api('POST', '/api/jobs', spec('broken'))).status).toBe(201);
  });
});
