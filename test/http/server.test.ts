/*
 * The HTTP surface around the fire route (src/http/server.ts, src/http/errors.ts): liveness, unknown
 * routes, and the one error handler that turns ChronosError codes into statuses without leaking
 * internals in 5xx bodies. Not a decision-table row; rows 1-12 are in test/fire/.
 */
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { ChronosError, type ErrorCode } from '../../src/errors.js';
import { STATUS_BY_CODE } from '../../src/http/errors.js';
import { buildFireApp, type FireApp } from '../helpers/build-fire-app.js';

const SECRET = 'EACCES: permission denied, open /var/lib/chronos/jobs/.nightly.4f2a.tmp';
const apps: FireApp[] = [];
afterEach(async () => {
  for (const f of apps.splice(0)) await f.close();
});

async function appWith(...plugins: Array<(app: FastifyInstance) => Promise<void>>): Promise<FireApp> {
  const f = await buildFireApp({ plugins });
  apps.push(f);
  return f;
}

/** A tiny route that throws whatever ChronosError code it is asked for. */
async function throwingRoutes(app: FastifyInstance): Promise<void> {
  app.get<{ Params: { code: ErrorCode } }>('/test/throw/:code', async (request) => {
    throw new ChronosError(request.params.code, SECRET, { hint: 'a detail safe to show' });
  });
  app.get('/test/expected', async () => {
    throw new ChronosError('draining', 'shutting down; come back later', undefined, {
      retryAfterSeconds: 17,
      expected: true,
    });
  });
  app.get('/test/contract/:code', async (request) => {
    const { code } = request.params as { code: ErrorCode };
    throw new ChronosError(code, SECRET, { hint: 'x' }, { retryAfterSeconds: 42 });
  });
  app.get('/test/crash', async () => {
    throw new Error(`database password=hunter2 at ${SECRET}`);
  });
  app.post('/test/echo', async (request) => request.body);
}

describe('GET /healthz', () => {
  it('answers 200 without any credential', async () => {
    const f = await appWith();
    const res = await f.app.inject({ method: 'GET', url: '/healthz' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'ok' });
  });

  it('ignores a bogus Authorization header and stays up while draining', async () => {
    const f = await appWith();
    f.setDraining(30);
    const res = await f.app.inject({
      method: 'GET',
      url: '/healthz',
      headers: { authorization: 'Bearer nope' },
    });
    expect(res.statusCode).toBe(200);
  });
});

describe('unknown routes', () => {
  it.each([
    ['GET', '/nope'],
    ['GET', '/api/jobs'],
    ['POST', '/api/cron/fire/extra'],
    ['GET', '/api/cron/fire'],
  ])('%s %s answers 404 JSON', async (method, url) => {
    const f = await appWith();
    const res = await f.app.inject({ method: method as 'GET' | 'POST', url });
    expect(res.statusCode).toBe(404);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.json()).toEqual({ error: 'not_found', message: `no route ${method} ${url}` });
  });
});

describe('error handler', () => {
  it.each([
    ['job_not_found', 404],
    ['job_exists', 409],
    ['validation_failed', 400],
    ['unauthorized', 401],
    ['rate_limited', 429],
  ] as Array<[ErrorCode, number]>)('maps %s to %i with its message and details', async (code, status) => {
    const f = await appWith(throwingRoutes);
    const res = await f.app.inject({ method: 'GET', url: `/test/throw/${code}` });
    expect(res.statusCode).toBe(status);
    expect(res.json()).toEqual({ error: code, message: SECRET, hint: 'a detail safe to show' });
  });

  const serverSide = (Object.entries(STATUS_BY_CODE) as Array<[ErrorCode, number]>).filter(
    ([, s]) => s >= 500,
  );
  it.each(serverSide)(
    'keeps the internal message of %s (%i) out of the body and in the log',
    async (code, status) => {
      const f = await appWith(throwingRoutes);
      const res = await f.app.inject({ method: 'GET', url: `/test/throw/${code}` });
      expect(res.statusCode).toBe(status);
      expect(res.json()).toEqual({
        error: code,
        message: 'the service cannot handle this request right now; try again later',
      });
      expect(res.body).not.toContain('/var/lib');
      expect(res.body).not.toContain('a detail');
      if (status === 503) expect(res.headers['retry-after']).toBe('5');
      const logged = f.logs.find((l) => l.msg === 'request failed');
      expect(logged?.code).toBe(code);
      expect(JSON.stringify(logged)).toContain('/var/lib/chronos');
    },
  );

  it('sends the message and Retry-After of an expected 5xx refusal, without logging it again', async () => {
    const f = await appWith(throwingRoutes);
    const res = await f.app.inject({ method: 'GET', url: '/test/expected' });
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('17');
    expect(res.json()).toEqual({ error: 'draining', message: 'shutting down; come back later' });
    expect(f.logs.find((l) => l.msg === 'request failed')).toBeUndefined();
  });

  it('writes the fire bodies docs/contract.md fixes: one 401 body for every cause, 425 with retry_after', async () => {
    const f = await appWith(throwingRoutes);
    const refused = await f.app.inject({ method: 'GET', url: '/test/contract/invalid_fire_token' });
    expect(refused.statusCode).toBe(401);
    expect(refused.json()).toEqual({ error: 'invalid fire token' });
    const early = await f.app.inject({ method: 'GET', url: '/test/contract/too_early' });
    expect(early.statusCode).toBe(425);
    expect(early.headers['retry-after']).toBe('42');
    expect(early.json()).toEqual({ error: 'too_early', retry_after: 42 });
  });

  it('every error code has a status', () => {
    for (const status of Object.values(STATUS_BY_CODE)) {
      expect(status).toBeGreaterThanOrEqual(400);
      expect(status).toBeLessThan(600);
    }
  });

  it('answers 500 with a fixed body to an unexpected error, logging it', async () => {
    const f = await appWith(throwingRoutes);
    const res = await f.app.inject({ method: 'GET', url: '/test/crash' });
    expect(res.statusCode).toBe(500);
    expect(res.json()).toEqual({ error: 'internal', message: 'internal error' });
    expect(res.body).not.toContain('hunter2');
    expect(JSON.stringify(f.logs.find((l) => l.msg === 'unhandled error'))).toContain('hunter2');
  });

  it("passes Fastify's own client errors through with their code", async () => {
    const f = await appWith(throwingRoutes);
    const res = await f.app.inject({
      method: 'POST',
      url: '/test/echo',
      headers: { 'content-type': 'application/json' },
      payload: '{"broken":',
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ error: expect.stringMatching(/^FST_ERR_CTP_/) });
  });
});

describe('activity', () => {
  it('counts a request in flight until its response is sent (idle exit waits for it)', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const f = await appWith(async (app) => {
      app.get('/test/slow', async () => {
        await gate;
        return { ok: true };
      });
    });
    const started = new Promise<void>((resolve) => {
      const stop = f.activity.onChange(() => {
        if (f.activity.snapshot().request === 1) {
          stop();
          resolve();
        }
      });
    });
    const pending = f.app.inject({ method: 'GET', url: '/test/slow' });
    await started;
    expect(f.activity.busy).toBe(true);
    release();
    expect((await pending).statusCode).toBe(200);
    expect(f.activity.snapshot().request).toBe(0);
    expect(f.activity.busy).toBe(false);
  });

  it('does not count health checks as activity, so they cannot keep an idle process awake', async () => {
    const f = await appWith(async () => {});
    let changes = 0;
    const stop = f.activity.onChange(() => {
      changes += 1;
    });
    expect((await f.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    stop();
    expect(changes).toBe(0);
  });
});

describe('what a request says about why the process is awake', () => {
  it('tells idle exit each request: NAS fire, a person (admin API, CLI, status page) or other; never a health check', async () => {
    const causes: string[] = [];
    const f = await buildFireApp({ onRequest: (cause) => causes.push(cause) });
    apps.push(f);
    const sent: Array<[string, string]> = [
      ['GET', '/healthz'],
      ['POST', '/api/cron/fire'],
      ['GET', '/api/status?verbose=1'],
      ['GET', '/ui'],
      ['GET', '/ui/app.js'],
      ['GET', '/wp-login.php'],
      ['GET', '/uix'],
    ];
    for (const [method, url] of sent) await f.app.inject({ method: method as 'GET' | 'POST', url });
    expect(causes).toEqual(['fire', 'admin', 'admin', 'admin', 'other', 'other']);
  });
});
