import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningChronos, startChronos } from '../../src/main.js';
import { createHandlerRegistry } from '../../src/run/targets/handler.js';
import { runCli } from '../helpers/run-cli.js';

// `chronos status`, `chronos jobs logs` and `chronos jobs edit`: the built CLI against a real server.
const TOKEN = 'observe-admin-token-0123456789';

let dir: string;
let running: RunningChronos;
let said = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chronos-observe-'));
  const handlers = createHandlerRegistry();
  handlers.register('say', () => {
    said += 1;
    return `line ${said}`;
  });
  handlers.register('broken', () => {
    throw new Error('disk full');
  });
  running = await startChronos({
    env: {
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'silent',
      CHRONOS_ADMIN_TOKEN: TOKEN,
      CHRONOS_DATA_DIR: join(dir, 'data'),
      CHRONOS_PROVIDER: 'builtin',
    },
    handlers,
    handleSignals: false,
    exit: () => {},
  });
});

afterAll(async () => {
  await running?.shutdown('test over');
  await rm(dir, { recursive: true, force: true });
});

const chronos = (args: string[]) =>
  runCli([...args, '--url', running.url], { env: { CHRONOS_ADMIN_TOKEN: TOKEN } });

async function add(spec: Record<string, unknown>): Promise<void> {
  const res = await runCli(['jobs', 'add', '--url', running.url], {
    env: { CHRONOS_ADMIN_TOKEN: TOKEN },
    stdin: JSON.stringify(spec),
  });
  expect(res.code, res.stderr).toBe(0);
}

/** Runs the job now and waits (with a deadline) until that run is recorded as ended. */
async function runNow(id: string): Promise<void> {
  const res = await chronos(['jobs', 'run', id, '--json']);
  expect(res.code, res.stderr).toBe(0);
  const runId = (JSON.parse(res.stdout) as { run_id: string }).run_id;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const run = (await running.store.listRuns(id)).find((r) => r.run_id === runId);
    if (run && run.status !== 'running') return;
    if (Date.now() > deadline) throw new Error(`run ${runId} of ${id} did not end within 10 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('chronos jobs logs', () => {
  it('prints what recent runs printed, newest last, bounded by --limit; --json gives the same runs', async () => {
    const spec = { id: 'hello', schedule: 'every 1h', target: { type: 'handler', name: 'say' } };
    await add(spec);
    for (let i = 0; i < 3; i++) await runNow('hello');

    const logs = await chronos(['jobs', 'logs', 'hello', '--limit', '2']);
    expect(logs.code, logs.stderr).toBe(0);
    const blocks = logs.stdout.trim().split('\n\n');
    expect(blocks).toHaveLength(2);
    expect(blocks[0]).toMatch(/^=== \S+Z {2}manual {2}succeeded {2}\d+ ms {2}run [0-9a-f-]{36}\nline 2$/);
    expect(blocks[1]).toMatch(/^=== \S+Z {2}manual {2}succeeded {2}\d+ ms {2}run [0-9a-f-]{36}\nline 3$/);

    const json = await chronos(['jobs', 'logs', 'hello', '--limit', '2', '--json']);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as { job_id: string; runs: Array<{ output: string }> };
    expect(parsed.job_id).toBe('hello');
    expect(parsed.runs.map((r) => r.output)).toEqual(['line 2', 'line 3']);

    const none = await chronos(['jobs', 'logs', 'nope']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/job_not_found/);
    expect((await chronos(['jobs', 'logs', 'hello', '--limit', '0'])).code).toBe(2);
  });
});

describe('chronos status', () => {
  it('says which provider runs, what fires next, and which jobs fail with their error', async () => {
    const spec = { id: 'flaky', schedule: 'every 2h', target: { type: 'handler', name: 'broken' } };
    await add(spec);
    await runNow('flaky');
    await runNow('flaky');

    const res = await chronos(['status']);
    expect(res.code, res.stderr).toBe(0);
    const out = res.stdout;
    expect(out).toMatch(/^Chronos \S+ at http:\/\/127\.0\.0\.1:\d+, up /);
    expect(out).toMatch(/^ {2}provider +builtin$/m);
    expect(out).not.toMatch(/^ {2}NAS /m); // the builtin timer never calls NAS
    expect(out).toMatch(/^ {2}jobs +2 \(2 scheduled\)$/m);
    // Woken by these admin requests; the builtin timer never lets the process stop.
    expect(out).toMatch(/^ {2}awake +\d+ (s|min), woken by admin; builtin provider in use$/m);
    const next = out.slice(out.indexOf('NEXT FIRES'));
    expect(next).toMatch(/^hello +\S+Z +(\d+ min|1 h.*) +yes +every 1h$/m);
    expect(next).toMatch(/^flaky +\S+Z +.* +yes +every 2h$/m);
    // Sorted by next fire: hello (every 1h) before flaky (every 2h).
    expect(next.indexOf('hello')).toBeLessThan(next.indexOf('flaky'));
    const failing = out.slice(out.indexOf('FAILING (1)'));
    expect(failing).toMatch(/^flaky +2 +\S+Z +.*disk full/m);
    expect(out).not.toMatch(/DAMAGED/);

    const json = await chronos(['status', '--json']);
    const parsed = JSON.parse(json.stdout) as { status: { provider: string }; jobs: { jobs: unknown[] } };
    expect(parsed.status.provider).toBe('builtin');
    expect(parsed.jobs.jobs).toHaveLength(2);

    const unauthorized = await runCli(['status', '--url', running.url], {
      env: { CHRONOS_ADMIN_TOKEN: 'wrong-token-0123456789' },
    });
    expect(unauthorized.code).toBe(1);
    expect(unauthorized.stderr).toMatch(/^chronos status: unauthorized/);
    expect((await chronos(['status', 'extra'])).code).toBe(2);
    for (const args of [
      ['status', '--help'],
      ['help', 'status'],
    ]) {
      const help = await runCli(args);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(/^Usage: chronos status/);
    }
  });
});

describe('chronos jobs edit', () => {
  it('--set changes dotted paths of the spec through PATCH, values read as JSON or text', async () => {
    const spec = { id: 'editme', schedule: 'every 1h', target: { type: 'handler', name: 'say' } };
    await add(spec);
    const res = await chronos([
      'jobs',
      'edit',
      'editme',
      '--set',
      'schedule=every 10m',
      '--set',
      'retry.max_attempts=3',
      '--set',
      'name="123"',
      '--set',
      'enabled=false',
    ]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/^updated editme: state scheduled, next run /);
    const job = await running.store.getJob('editme');
    expect(job).toMatchObject({
      schedule: 'every 10m',
      name: '123',
      enabled: false,
      target: { type: 'handler', name: 'say' },
    });
    expect(job?.retry).toMatchObject({ max_attempts: 3 });

    // A nested field keeps its siblings: the API replaces `retry` whole, so the CLI sends all of it.
    expect((await chronos(['jobs', 'edit', 'editme', '--set', 'retry.backoff_seconds=7'])).code).toBe(0);
    expect((await running.store.getJob('editme'))?.retry).toMatchObject({
      max_attempts: 3,
      backoff_seconds: 7,
    });

    // A whole field as JSON, then a key with a dash inside it (an http header).
    const http = '{"type":"http","url":"http://127.0.0.1:9/hook","headers":{"X-Token":"old"}}';
    expect((await chronos(['jobs', 'edit', 'editme', '--set', `target=${http}`])).code).toBe(0);
    const header = await chronos(['jobs', 'edit', 'editme', '--set', 'target.headers.X-Token=new value']);
    expect(header.code, header.stderr).toBe(0);
    expect((await running.store.getJob('editme'))?.target).toMatchObject({
      type: 'http',
      url: 'http://127.0.0.1:9/hook',
      headers: { 'X-Token': 'new value' },
    });
    const back = await chronos(['jobs', 'edit', 'editme', '--set', 'target={"type":"handler","name":"say"}']);
    expect(back.code, back.stderr).toBe(0);
  });

  it('--file sends a spec; bad paths and values are refused with what to fix, the job unchanged', async () => {
    const specFile = join(dir, 'edit.json');
    await writeFile(specFile, JSON.stringify({ name: 'From a file', schedule: 'every 2h' }));
    const fromFile = await chronos(['jobs', 'edit', 'editme', '--file', specFile]);
    expect(fromFile.code, fromFile.stderr).toBe(0);
    expect(await running.store.getJob('editme')).toMatchObject({ name: 'From a file', schedule: 'every 2h' });
    const before = await running.store.getJob('editme');

    const usage = async (args: string[], message: RegExp) => {
      const res = await chronos(['jobs', 'edit', 'editme', ...args]);
      expect(res.code, args.join(' ')).toBe(2);
      expect(res.stderr).toMatch(message);
    };
    await usage(['--set', 'schedul=every 5m'], /a job spec has no field "schedul" \(fields: name, schedule,/);
    await usage(['--set', 'schedule.every=5m'], /schedule is "every 2h", not an object with fields/);
    await usage(['--set', 'id=other'], /"id" cannot be set: a job id cannot be changed/);
    await usage(['--set', 'state=paused'], /chronos jobs pause/);
    await usage(['--set', 'noequals'], /--set takes path=value/);
    await usage(['--set', 'target..name=x'], /field names joined by dots/);
    await usage([], /--set path=value .* or with --file/);
    await usage(['--set', 'name=x', '--file', specFile], /not both/);

    // The server's validation, with the field path, exit 1.
    const invalid = await chronos(['jobs', 'edit', 'editme', '--set', 'timeout_seconds=-5']);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toMatch(/validation_failed/);
    expect(invalid.stderr).toMatch(/^ {2}timeout_seconds: /m);
    const badTarget = await chronos(['jobs', 'edit', 'editme', '--set', 'target.url=http://x']);
    expect(badTarget.code).toBe(1);
    expect(badTarget.stderr).toMatch(/target/);
    const missing = await chronos(['jobs', 'edit', 'ghost', '--set', 'name=x']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/job_not_found/);

    expect(await running.store.getJob('editme')).toEqual(before);
  });
});
