import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpTarget } from '../../src/jobs/model.js';
import { executeHttp } from '../../src/run/targets/http.js';
import { USER_AGENT } from '../../src/version.js';
import { makeCtx, makeJob, T0 } from './fixtures.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

let server: Server;
let base: string;
const seen: Seen[] = [];
const pendingResponses = new Set<ServerResponse>();
let onSlowArrival: (() => void) | undefined;

function route(req: IncomingMessage, res: ServerResponse, body: string): void {
  seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
  switch (req.url) {
    case '/ok':
      res.writeHead(200, { 'content-type': 'text/plain' }).end('all good');
      return;
    case '/created':
      res.writeHead(201).end();
      return;
    case '/fail':
      res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":"maintenance"}');
      return;
    case '/redirect':
      res.writeHead(302, { location: '/ok' }).end();
      return;
    case '/slow':
      // Never answers; the client's timeout or abort must end the request.
      pendingResponses.add(res);
      res.on('close', () => pendingResponses.delete(res));
      onSlowArrival?.();
      return;
    case '/big': {
      res.writeHead(200, { 'content-type': 'text/plain' });
      const chunk = 'x'.repeat(64 * 1024);
      // 64 MiB if fully read; the target must stop long before that.
      let sent = 0;
      const pump = () => {
        while (sent < 1024) {
          sent++;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      res.on('close', () => {
        sent = Number.POSITIVE_INFINITY;
      });
      pump();
      return;
    }
    default:
      res.writeHead(404).end('not found');
  }
}

beforeAll(async () => {
  server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => route(req, res, Buffer.concat(parts).toString('utf8')));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const res of pendingResponses) res.destroy();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function target(path: string, extra: Partial<HttpTarget> = {}): HttpTarget {
  return { type: 'http', url: base + path, method: 'POST', headers: {}, ...extra };
}

describe('http target', () => {
  it('sends the identifying headers and succeeds on 2xx', async () => {
    seen.length = 0;
    const job = makeJob({ id: 'nightly-report' });
    const result = await executeHttp(target('/ok'), makeCtx({ job, fire_at: T0, run_id: 'run-abc' }));
    expect(result).toEqual({ ok: true, output: 'all good', error: null, timedOut: false });
    const req = seen[0]!;
    expect(req.method).toBe('POST');
    expect(req.headers['x-chronos-job']).toBe('nightly-report');
    expect(req.headers['x-chronos-fire-at']).toBe('2026-01-01T00:00:00.000Z');
    expect(req.headers['x-chronos-run']).toBe('run-abc');
    expect(req.headers['user-agent']).toBe(USER_AGENT);
  });

  it('JSON-encodes object bodies with a content type, passes strings through, keeps user headers', async () => {
    seen.length = 0;
    await executeHttp(
      target('/created', { method: 'PUT', body: { hello: 'world', n: 1 }, headers: { 'X-Team': 'ops' } }),
      makeCtx(),
    );
    await executeHttp(
      target('/created', { body: 'a=1', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } }),
      makeCtx(),
    );
    expect(seen[0]!.method).toBe('PUT');
    expect(JSON.parse(seen[0]!.body)).toEqual({ hello: 'world', n: 1 });
    expect(seen[0]!.headers['content-type']).toBe('application/json');
    expect(seen[0]!.headers['x-team']).toBe('ops');
    expect(seen[1]!.body).toBe('a=1');
    expect(seen[1]!.headers['content-type']).toBe('application/x-www-form-urlencoded');
  });

  it('lets the job set its own User-Agent but never the X-Chronos headers', async () => {
    seen.length = 0;
    await executeHttp(
      target('/ok', { method: 'GET', headers: { 'user-agent': 'mine/1', 'X-Chronos-Run': 'forged' } }),
      makeCtx({ run_id: 'real-run' }),
    );
    expect(seen[0]!.method).toBe('GET');
    expect(seen[0]!.headers['user-agent']).toBe('mine/1');
    expect(seen[0]!.headers['x-chronos-run']).toBe('real-run');
  });

  it('fails on a non-2xx reply and keeps the body as output', async () => {
    const result = await executeHttp(target('/fail'), makeCtx());
    expect(result).toEqual({
      ok: false,
      output: '{"error":"maintenance"}',
      error: 'HTTP 503',
      timedOut: false,
    });
  });

  it('does not follow redirects (a 3xx is not success)', async () => {
    const result = await executeHttp(target('/redirect'), makeCtx());
    expect(result.ok).toBe(false);
    expect(result.error).toBe('HTTP 302');
  });

  it('times out a slow response', async () => {
    const started = Date.now();
    const result = await executeHttp(target('/slow'), makeCtx({ timeoutMs: 300 }));
    expect(result).toMatchObject({ ok: false, timedOut: true, error: 'timed out after 0.3s' });
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('uses the target timeout when given (the runner passes it as timeoutMs)', async () => {
    // The runner resolves target.timeout_seconds; the target only honours timeoutMs.
    const result = await executeHttp(target('/slow', { timeout_seconds: 0.2 }), makeCtx({ timeoutMs: 200 }));
    expect(result.timedOut).toBe(true);
  });

  it('stops reading a big body at the bound and marks the excerpt', async () => {
    const result = await executeHttp(target('/big'), makeCtx({ outputLimitBytes: 1000 }));
    expect(result.ok).toBe(true);
    expect(result.output).toBe(`${'x'.repeat(1000)}…[truncated]`);
  });

  it('reports an abort from outside as a failure with the reason', async () => {
    const controller = new AbortController();
    const arrived = new Promise<void>((resolve) => {
      onSlowArrival = resolve;
    });
    const running = executeHttp(target('/slow'), makeCtx({ signal: controller.signal }));
    await arrived;
    controller.abort('shutdown');
    expect(await running).toEqual({ ok: false, output: null, error: 'aborted: shutdown', timedOut: false });
  });

  it('reports a connection failure clearly', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const result = await executeHttp(
      { type: 'http', url: `http://127.0.0.1:${port}/`, method: 'POST', headers: {} },
      makeCtx(),
    );
    expect(result.ok).toBe(false);
    expect(result.timedOut).toBe(false);
    expect(result.error).toMatch(/^request failed: .*ECONNREFUSED/);
  });
});
