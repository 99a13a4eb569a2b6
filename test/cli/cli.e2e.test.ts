import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningChronos, startChronos } from '../../src/main.js';
import { createHandlerRegistry } from '../../src/run/targets/handler.js';
import { runCli } from '../helpers/run-cli.js';

const TOKEN = 'cli-admin-token-0123456789';

const chronos = runCli;

let dir: string;
let running: RunningChronos;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chronos-cli-'));
  const handlers = createHandlerRegistry();
  handlers.register('noop', () => 'done');
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

describe('chronos --help', () => {
  it('every command answers --help with exit 0', async () => {
    for (const args of [
      ['--help'],
      ['serve', '--help'],
      ['check', '--help'],
      ['next', '--help'],
      ['jobs', '--help'],
      ['emulator', '--help'],
    ]) {
      const res = await chronos(args);
      expect(res.code, args.join(' ')).toBe(0);
      expect(res.stdout).toMatch(/Usage: chronos/);
    }
  });

  it('usage errors exit 2 with the message on stderr', async () => {
    for (const args of [
      ['bogus'],
      ['next'],
      ['next', '@daily', '--count', 'x'],
      ['jobs'],
      ['jobs', 'get'],
      ['check', '--nope'],
    ]) {
      const res = await chronos(args);
      expect(res.code, args.join(' ')).toBe(2);
      expect(res.stderr).not.toBe('');
    }
  });
});

describe('chronos next', () => {
  it('prints occurrences across a DST gap as JSON', async () => {
    const res = await chronos([
      'next',
      '30 2 * * *',
      '--tz',
      'America/New_York',
      '--from',
      '2026-03-07T12:00:00Z',
      '--count',
      '3',
      '--json',
    ]);
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout)).toEqual({
      schedule: '30 2 * * *',
      timezone: 'America/New_York',
      from: '2026-03-07T12:00:00.000Z',
      next: ['2026-03-08T07:00:00.000Z', '2026-03-09T06:30:00.000Z', '2026-03-10T06:30:00.000Z'],
    });
  });

  it('prints local and UTC times by default, zone from CHRONOS_TIMEZONE', async () => {
    const res = await chronos(['next', '0 9 * * *', '--from', '2026-01-01T00:00:00Z', '--count', '1'], {
      env: { CHRONOS_TIMEZONE: 'Europe/Paris' },
    });
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('2026-01-01 09:00:00 +01:00   2026-01-01T08:00:00.000Z');
  });

  it('a one-shot has one occurrence; a bad schedule exits 1 with the accepted forms', async () => {
    const once = await chronos(['next', 'in 45m', '--from', '2026-01-01T00:00:00Z', '--json']);
    expect(JSON.parse(once.stdout).next).toEqual(['2026-01-01T00:45:00.000Z']);
    const bad = await chronos(['next', 'every fortnight']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('Accepted forms');
  });
});

describe('chronos check', () => {
  it('validates the example jobs file and prints each job in its zone and UTC', async () => {
    const res = await chronos(['check', '--jobs', 'examples/jobs.json', '--next', '2', '--json']);
    expect(res.code).toBe(0);
    const body = JSON.parse(res.stdout);
    expect(body.errors).toEqual([]);
    expect(body.jobs.map((j: { id: string }) => j.id)).toEqual([
      'hello-command',
      'self-ping',
      'paris-morning',
    ]);
    expect(body.jobs[2]).toMatchObject({
      timezone: 'Europe/Paris',
      next: [expect.stringMatching(/T0[78]:00:00\.000Z$/), expect.any(String)],
    });
    const text = await chronos(['check', '--jobs', 'examples/jobs.json']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(
      /paris-morning .*\(Europe\/Paris\)\n {2}\d{4}-\d\d-\d\d 09:00:00 \+0[12]:00 {3}\d{4}-\d\d-\d\dT0[78]:00:00\.000Z/,
    );
  });

  it('exits 1 listing every problem of the configuration and the jobs file', async () => {
    const file = join(dir, 'bad-jobs.json');
    await writeFile(
      file,
      JSON.stringify([
        { id: 'a', schedule: 'every', target: { type: 'handler', name: 'x' } },
        { schedule: '@daily', target: { type: 'handler', name: 'x' } },
      ]),
    );
    const res = await chronos(['check', '--jobs', file, '--json'], { env: { PORT: 'eighty' } });
    expect(res.code).toBe(1);
    const body = JSON.parse(res.stdout);
    const paths = body.errors.map((e: { path: string }) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['configuration', 'jobs[a].schedule', 'jobs[1].id']));
    const text = await chronos(['check', '--jobs', file]);
    expect(text.code).toBe(1);
    expect(text.stderr).toContain('jobs[a].schedule');
  });
});

describe('chronos jobs (against a running server)', () => {
  const env = () => ({ CHRONOS_ADMIN_TOKEN: TOKEN });
  const url = () => ['--url', running.url];

  it('add (stdin and --file), list, get, pause, resume, run, runs, rm', async () => {
    const added = await chronos(['jobs', 'add', ...url()], {
      env: env(),
      stdin: JSON.stringify({
        id: 'from-stdin',
        schedule: 'every 1h',
        target: { type: 'handler', name: 'noop' },
      }),
    });
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toMatch(/^created from-stdin: state scheduled, next run \S+Z, armed yes/);

    const specFile = join(dir, 'spec.json');
    await writeFile(
      specFile,
      JSON.stringify({ id: 'from-file', schedule: '0 9 * * *', target: { type: 'handler', name: 'noop' } }),
    );
    expect((await chronos(['jobs', 'add', '--file', specFile, ...url()], { env: env() })).code).toBe(0);

    const list = await chronos(['jobs', 'list', ...url()], { env: env() });
    expect(list.code).toBe(0);
    expect(list.stdout.split('\n')[0]).toMatch(/^ID\s+STATE\s+ARMED\s+NEXT RUN \(UTC\)/);
    expect(list.stdout).toMatch(/from-file\s+scheduled\s+yes/);
    expect(list.stdout).toMatch(/from-stdin\s+scheduled\s+yes/);
    const listJson = JSON.parse((await chronos(['jobs', 'list', '--json', ...url()], { env: env() })).stdout);
    expect(listJson.jobs).toHaveLength(2);

    const got = await chronos(['jobs', 'get', 'from-file', ...url()], { env: env() });
    expect(got.stdout).toMatch(/schedule\s+0 9 \* \* \* \(UTC\)/);

    const paused = await chronos(['jobs', 'pause', 'from-file', ...url()], { env: env() });
    expect(paused.stdout).toMatch(/^paused from-file: state paused/);
    const resumed = await chronos(['jobs', 'resume', 'from-file', '--json', ...url()], { env: env() });
    expect(JSON.parse(resumed.stdout)).toMatchObject({ id: 'from-file', state: 'scheduled', armed: true });

    const ran = await chronos(['jobs', 'run', 'from-stdin', ...url()], { env: env() });
    expect(ran.stdout).toMatch(/^started run \S+ of from-stdin \(manual\)/);
    const runId = /started run (\S+)/.exec(ran.stdout)![1];
    // The run itself is real work in the server; poll the CLI until it is recorded as finished.
    let runs = await chronos(['jobs', 'runs', 'from-stdin', '--limit', '5', ...url()], { env: env() });
    for (let i = 0; i < 20 && !/succeeded/.test(runs.stdout); i++) {
      runs = await chronos(['jobs', 'runs', 'from-stdin', '--limit', '5', ...url()], { env: env() });
    }
    expect(runs.stdout).toContain(runId);
    expect(runs.stdout).toMatch(/manual\s+succeeded/);

    const removed = await chronos(['jobs', 'rm', 'from-stdin', ...url()], { env: env() });
    expect(removed.stdout.trim()).toBe('deleted from-stdin');
    const missing = await chronos(['jobs', 'get', 'from-stdin', ...url()], { env: env() });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('job_not_found');
  });

  it('list shows a damaged job with its file and error; rm moves its file aside', async () => {
    const add = await chronos(['jobs', 'add', ...url()], {
      env: env(),
      stdin: JSON.stringify({
        id: 'to-break',
        schedule: 'every 1h',
        target: { type: 'handler', name: 'noop' },
      }),
    });
    expect(add.code, add.stderr).toBe(0);
    const path = join(dir, 'data', 'jobs', 'to-break.json');
    await writeFile(path, '{"version":1,"job":');

    const got = await chronos(['jobs', 'get', 'to-break', ...url()], { env: env() });
    expect(got.code).toBe(1);
    expect(got.stderr).toContain('job_damaged');
    expect(got.stderr).toContain(path);
    const list = await chronos(['jobs', 'list', ...url()], { env: env() });
    expect(list.code).toBe(0);
    expect(list.stdout).not.toMatch(/^to-break\s+scheduled/m);
    expect(list.stdout).toMatch(/DAMAGED \(1\)/);
    expect(list.stdout).toMatch(
      new RegExp(`to-break\\s+job\\s+${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\s+\\S`),
    );

    const removed = await chronos(['jobs', 'rm', 'to-break', ...url()], { env: env() });
    expect(removed.code, removed.stderr).toBe(0);
    const movedTo = /moved to (\S+)\)/.exec(removed.stdout)?.[1];
    expect(movedTo).toContain(join(dir, 'data', 'damaged', 'jobs', 'to-break.'));
    expect(await readFile(movedTo!, 'utf8')).toBe('{"version":1,"job":');
    expect((await chronos(['jobs', 'list', ...url()], { env: env() })).stdout).not.toContain('DAMAGED');
  });

  it('shows field paths of a rejected spec and exits 1', async () => {
    const res = await chronos(['jobs', 'add', ...url()], {
      env: env(),
      stdin: JSON.stringify({ id: 'x', schedule: 'every 1h', target: { type: 'http', url: 'nope' } }),
    });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('validation_failed');
    expect(res.stderr).toContain('target.url');
  });

  it('fails with exit 1 on a missing or wrong token, or an unreachable server', async () => {
    const noToken = await chronos(['jobs', 'list', ...url()]);
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toContain('CHRONOS_ADMIN_TOKEN');
    const wrong = await chronos(['jobs', 'list', ...url()], {
      env: { CHRONOS_ADMIN_TOKEN: 'wrong-token-wrong-token' },
    });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('unauthorized');
    const down = await chronos(['jobs', 'list', '--url', 'http://127.0.0.1:9'], { env: env() });
    expect(down.code).toBe(1);
    expect(down.stderr).toContain('cannot reach Chronos at http://127.0.0.1:9');
  });
});
