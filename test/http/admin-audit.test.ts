import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADMIN_REFUSALS_SUMMARY_MSG, ADMIN_REFUSED_MSG, AUDIT_MSG } from '../../src/http/audit.js';
import { type RunningChronos, startChronos } from '../../src/main.js';
import { createHandlerRegistry } from '../../src/run/targets/handler.js';

const TOKEN = 'audit-admin-token-0123456789';
const WRONG = 'some-other-token-9876543210';
const fingerprint = (token: string) => createHash('sha256').update(token).digest('hex').slice(0, 8);

let dir: string;
let running: RunningChronos | undefined;
let lines: Array<Record<string, unknown>>;
let raw: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chronos-audit-'));
  lines = [];
  raw = '';
});

afterEach(async () => {
  await running?.shutdown('test over');
  running = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function start(): Promise<RunningChronos> {
  const handlers = createHandlerRegistry();
  handlers.register('noop', () => 'ok');
  const logger = pino(
    { level: 'info' },
    {
      write: (line: string) => {
        raw += line;
        lines.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  );
  running = await startChronos({
    env: { PORT: '0', CHRONOS_DATA_DIR: dir, CHRONOS_PROVIDER: 'builtin', CHRONOS_ADMIN_TOKEN: TOKEN },
    logger,
    handlers,
    handleSignals: false,
    exit: () => {},
  });
  return running;
}

async function api(method: string, url: string, body?: unknown, token: string | null = TOKEN) {
  const res = await running!.app.inject({
    method: method as 'GET',
    url,
    headers: {
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
  return { status: res.statusCode, body: res.json() as Record<string, unknown> };
}

const audits = () => lines.filter((l) => l['msg'] === AUDIT_MSG);

describe('admin audit lines (docs/operations.md, Logs)', () => {
  it('one line per change: action, job, token fingerprint; never the token', async () => {
    await start();
    const target = { type: 'handler', name: 'noop' };
    expect((await api('POST', '/api/jobs', { id: 'a', schedule: 'every 1h', target })).status).toBe(201);
    expect((await api('PATCH', '/api/jobs/a', { schedule: 'every 2h', name: 'A' })).status).toBe(200);
    expect((await api('POST', '/api/jobs/a/pause')).status).toBe(200);
    expect((await api('POST', '/api/jobs/a/resume')).status).toBe(200);
    const run = await api('POST', '/api/jobs/a/run');
    expect(run.status).toBe(202);
    expect((await api('DELETE', '/api/jobs/a')).status).toBe(200);
    // Reads and refused changes are not changes.
    expect((await api('GET', '/api/jobs')).status).toBe(200);
    expect((await api('POST', '/api/jobs', { id: 'b', schedule: 'nonsense', target })).status).toBe(400);
    expect((await api('POST', '/api/jobs/missing/pause')).status).toBe(404);

    expect(audits().map((l) => [l['action'], l['job_id']])).toEqual([
      ['create', 'a'],
      ['update', 'a'],
      ['pause', 'a'],
      ['resume', 'a'],
      ['run-now', 'a'],
      ['delete', 'a'],
    ]);
    for (const line of audits()) {
      expect(line).toMatchObject({ level: 30, token_sha256: fingerprint(TOKEN), ip: '127.0.0.1' });
    }
    expect(audits()[1]).toMatchObject({ fields: ['name', 'schedule'] });
    expect(audits()[2]).toMatchObject({ state: 'paused' });
    expect(audits()[3]).toMatchObject({ state: 'scheduled' });
    expect(audits()[4]).toMatchObject({ run_id: run.body['run_id'] });
    expect(raw).not.toContain(TOKEN);
  });

  it('removing a damaged job is logged as damaged-remove with where its file went', async () => {
    await start();
    await api('POST', '/api/jobs', {
      id: 'broken',
      schedule: 'every 1h',
      target: { type: 'handler', name: 'noop' },
    });
    await running!.shutdown('restart');
    const path = join(dir, 'jobs', 'broken.json');
    await writeFile(path, (await readFile(path, 'utf8')).slice(0, 40));
    await start();
    const removed = await api('DELETE', '/api/jobs/broken');
    expect(removed.status).toBe(200);
    expect(audits().at(-1)).toMatchObject({
      action: 'damaged-remove',
      job_id: 'broken',
      moved_to: removed.body['moved_to'],
      token_sha256: fingerprint(TOKEN),
    });
  });

  it('refused requests are aggregated: the first per address with the wrong token fingerprint, then a count', async () => {
    await start();
    for (let i = 0; i < 5; i++)
      expect((await api('POST', '/api/jobs/x/pause', undefined, WRONG)).status).toBe(401);
    expect((await api('GET', '/api/status', undefined, null)).status).toBe(401);
    await running!.shutdown('flush');
    running = undefined;

    const refused = lines.filter((l) => l['msg'] === ADMIN_REFUSED_MSG);
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({
      level: 40,
      code: 'admin_unauthorized',
      ip: '127.0.0.1',
      detail: `POST /api/jobs/x/pause: token_sha256 ${fingerprint(WRONG)}`,
    });
    const summary = lines.filter((l) => l['msg'] === ADMIN_REFUSALS_SUMMARY_MSG);
    expect(summary).toHaveLength(1);
    expect(summary[0]).toMatchObject({
      refused: 6,
      by_cause: [{ code: 'admin_unauthorized', ip: '127.0.0.1', count: 6 }],
    });
    expect(audits()).toEqual([]);
    expect(raw).not.toContain(WRONG);
  });
});
