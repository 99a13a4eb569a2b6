import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliIo } from '../../src/cli/common.js';
import { runJobs } from '../../src/cli/jobs.js';
import { buildJob } from '../../src/jobs/build.js';
import { ACCEPTED_FORMS } from '../../src/jobs/schedule.js';
import { VERSION } from '../../src/version.js';
import { runCli } from '../helpers/run-cli.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chronos-first-hour-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const COMMANDS = ['serve', 'check', 'next', 'jobs', 'emulator', 'dev'];

describe('the command line itself', () => {
  it('--version prints the version', async () => {
    for (const flag of ['--version', '-V']) {
      const res = await runCli([flag]);
      expect(res).toMatchObject({ code: 0, stdout: `chronos ${VERSION}\n`, stderr: '' });
    }
  });

  it('"help <cmd>" and "<cmd> --help" print that command\'s own help', async () => {
    for (const command of COMMANDS) {
      const viaHelp = await runCli(['help', command]);
      const viaFlag = await runCli([command, '--help']);
      expect(viaHelp.code, command).toBe(0);
      expect(viaHelp.stdout).toMatch(new RegExp(`^Usage: chronos ${command}\\b`));
      expect(viaFlag).toEqual(viaHelp);
    }
  });

  it.each<[string[], string]>([
    [['check', '--nope'], 'chronos check: unknown option --nope'],
    [['check', '--next'], 'chronos check: --next needs a value'],
    [['next', '@daily', '--json=1'], 'chronos next: --json takes no value'],
    [['next', '@daily', '--from', '2026-03-08'], 'chronos next: --from must be a date and time'],
    [['serve', 'now'], 'chronos serve: takes no arguments, got "now"'],
    [['emulator', '--port'], 'chronos emulator: --port needs a value'],
    [['emulator', '--alg', 'HS256'], 'chronos emulator: --alg must be ES256, RS256 or EdDSA'],
    [['emulator', 'extra'], 'chronos emulator: unexpected argument "extra"'],
    [['dev', '--bogus'], 'chronos dev: unknown option --bogus'],
    [['dev', '--idle-exit', 'x'], 'chronos dev: --idle-exit must be a whole number'],
    [['dev', '--keep-data', '--reset'], 'chronos dev: --keep-data and --reset contradict each other'],
    [['jobs', 'get'], 'chronos jobs: "get" needs a job id'],
    [['help', 'nope'], 'chronos help: unknown command "nope"'],
  ])('%j exits 2 with "%s"', async (args, message) => {
    const res = await runCli(args);
    expect(res.code).toBe(2);
    expect(res.stderr.startsWith(message)).toBe(true);
    // parseArgs's own wording never reaches the user.
    expect(res.stderr).not.toMatch(/Unknown option '|argument missing|positional argument|TypeError/);
    expect(res.stdout).toBe('');
  });
});

describe('chronos jobs add', () => {
  const io = (stdin: string, stdinIsTTY: boolean) => {
    const err: string[] = [];
    const value: CliIo = {
      out: () => {},
      err: (text) => err.push(text),
      env: { CHRONOS_ADMIN_TOKEN: 'a-token-of-16-characters', PORT: '1' },
      readStdin: async () => stdin,
      stdinIsTTY,
    };
    return { io: value, err };
  };

  it('says it reads stdin when stdin is a terminal, and refuses a jobs file', async () => {
    const jobsFile = JSON.stringify({
      jobs: [{ id: 'a', schedule: '@daily', target: { type: 'handler', name: 'x' } }],
    });
    const terminal = io(jobsFile, true);
    expect(await runJobs(['add'], terminal.io)).toBe(1);
    expect(terminal.err[0]).toMatch(
      /^chronos jobs add: reading the job spec \(JSON\) from stdin; end with Ctrl-D/,
    );
    expect(terminal.err[1]).toMatch(/this is a jobs file \(a list of jobs\), not one job spec/);

    const piped = io(JSON.stringify([{ id: 'a' }]), false);
    expect(await runJobs(['add'], piped.io)).toBe(1);
    expect(piped.err).toHaveLength(1);
    expect(piped.err[0]).toMatch(/this is a jobs file/);
  });
});

describe('chronos next predicts the server', () => {
  it('an interval from a fractional --from starts on the whole second, as a job created then would', async () => {
    const from = '2026-03-08T00:00:00.400Z';
    const res = await runCli(['next', 'every 10s', '--from', from, '--count', '2', '--json']);
    expect(res.code).toBe(0);
    const job = buildJob(
      { schedule: 'every 10s', target: { type: 'handler', name: 'x' } },
      { now: Date.parse(from), defaultTimezone: 'UTC', allowCommands: false, source: 'api' },
    );
    const next = JSON.parse(res.stdout).next as string[];
    expect(Date.parse(next[0]!)).toBe(job.next_run_at);
    expect(next).toEqual(['2026-03-08T00:00:11.000Z', '2026-03-08T00:00:21.000Z']);
  });

  it('a --from without an offset is read in --tz, not in UTC or the machine zone', async () => {
    const env = { TZ: 'America/Los_Angeles' };
    const res = await runCli(
      ['next', '0 9 * * *', '--from', '2026-03-08 08:00', '--tz', 'Europe/Paris', '--json'],
      {
        env,
      },
    );
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({
      from: '2026-03-08T07:00:00.000Z',
      next: expect.arrayContaining(['2026-03-08T08:00:00.000Z']),
    });
    const zoned = await runCli(
      ['next', 'every 1h', '--from', '2026-03-08T08:00:00', '--count', '1', '--json'],
      {
        env: { ...env, CHRONOS_TIMEZONE: 'Asia/Tokyo' },
      },
    );
    expect(JSON.parse(zoned.stdout)).toMatchObject({
      from: '2026-03-07T23:00:00.000Z',
      next: ['2026-03-08T00:00:00.000Z'],
    });
  });
});

describe('chronos check agrees with the server', () => {
  it('a past one-shot is accepted and said to be recorded missed (or run, within grace)', async () => {
    const file = join(dir, 'past.json');
    const recent = new Date(Date.now() - 30_000).toISOString();
    await writeFile(
      file,
      JSON.stringify({
        jobs: [
          { id: 'long-ago', schedule: 'at 2025-01-01T00:00:00Z', target: { type: 'handler', name: 'x' } },
          { id: 'recent', schedule: `at ${recent}`, target: { type: 'handler', name: 'x' } },
        ],
      }),
    );
    const res = await runCli(['check', '--jobs', file]);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(
      /long-ago .*\[in the past: recorded as missed at start \(misfire grace 300 s\), never run\]/,
    );
    expect(res.stdout).toMatch(
      /recent .*\[in the past but within its misfire grace \(300 s\): runs once at start\]/,
    );
  });

  it('reports every jobs-file problem in one round, bad JSON by line and column, the forms once', async () => {
    const file = join(dir, 'typos.json');
    await writeFile(
      file,
      JSON.stringify({
        jobs: [
          { id: 'a', shedule: '@daily', target: { type: 'handler', name: 'x' } },
          { id: 'a', schedule: 'every', target: { type: 'handler', name: 'x' } },
          { id: 'b', schedule: '30m', target: { type: 'http', url: 'http://127.0.0.1:1/' } },
        ],
      }),
    );
    const res = await runCli(['check', '--jobs', file]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('chronos check: 4 problems:\n');
    expect(res.stderr).toContain('  jobs[0]: unknown key "shedule": did you mean "schedule"?\n');
    expect(res.stderr).toContain('  jobs[1].id: duplicate id: entries 0 and 1 both declare "a"\n');
    expect(res.stderr).toMatch(/ {2}jobs\[1\]\.schedule: .*\n {2}jobs\[b\]\.schedule: "30m" is ambiguous/);
    expect(res.stderr.split('Accepted schedule forms:')).toHaveLength(2);
    expect(res.stderr.split(ACCEPTED_FORMS[0]!)).toHaveLength(2);

    await writeFile(file, '{"jobs": [\n  {"id": "a" "schedule": "@daily"}\n]}');
    const json = await runCli(['check', '--jobs', file]);
    expect(json.code).toBe(1);
    expect(json.stderr).toContain(`${file}: not valid JSON at line 2, column 14: `);
  });

  it('CHRONOS_PROVIDER=chronos that cannot work is an error; auto falls back with a warning', async () => {
    const nas = {
      CHRONOS_PORTAL_URL: 'http://127.0.0.1:9/',
      CHRONOS_CALLBACK_URL: 'http://127.0.0.1:8/',
      CHRONOS_EXPECTED_AUDIENCE: 'agent:test',
      CHRONOS_JWKS_URL: 'http://127.0.0.1:9/jwks',
      CHRONOS_ACCESS_TOKEN_FILE: join(dir, 'no-such-token'),
    };
    const explicit = await runCli(['check'], { env: { ...nas, CHRONOS_PROVIDER: 'chronos' } });
    expect(explicit.code).toBe(1);
    expect(explicit.stdout).not.toContain('configuration: ok');
    expect(explicit.stderr).toContain(
      `configuration: CHRONOS_PROVIDER=chronos cannot work: access token file ${nas.CHRONOS_ACCESS_TOKEN_FILE} does not exist`,
    );
    const auto = await runCli(['check'], { env: nas });
    expect(auto.code).toBe(0);
    expect(auto.stdout).toContain('configuration: ok (provider auto');
    expect(auto.stdout).toContain(
      'warning: CHRONOS_PROVIDER=auto falls back to the builtin timer (never sleeps)',
    );
  });
});

describe('chronos serve', () => {
  it('CHRONOS_PROVIDER=chronos with a missing token file exits 1 with one message, before touching data', async () => {
    const dataDir = join(dir, 'serve-data');
    const res = await runCli(['serve'], {
      env: {
        PORT: '0',
        CHRONOS_DATA_DIR: dataDir,
        CHRONOS_PROVIDER: 'chronos',
        CHRONOS_PORTAL_URL: 'http://127.0.0.1:9/',
        CHRONOS_CALLBACK_URL: 'http://127.0.0.1:8/',
        CHRONOS_EXPECTED_AUDIENCE: 'agent:test',
        CHRONOS_JWKS_URL: 'http://127.0.0.1:9/jwks',
        CHRONOS_ACCESS_TOKEN_FILE: join(dir, 'no-such-token'),
      },
    });
    expect(res.code).toBe(1);
    expect(res.stderr).toBe(
      `Chronos cannot start: CHRONOS_PROVIDER=chronos cannot work: access token file ${join(dir, 'no-such-token')} does not exist; fix it, or set CHRONOS_PROVIDER=auto to fall back to the builtin timer\n`,
    );
    await expect(readdir(dataDir)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('chronos dev --data-dir', () => {
  it("refuses to empty a directory holding another Chronos's data", async () => {
    const other = join(dir, 'served-data');
    await mkdir(join(other, 'jobs'), { recursive: true });
    await writeFile(join(other, 'jobs', 'keep.json'), '{}');
    const res = await runCli([
      'dev',
      '--data-dir',
      other,
      '--port',
      '0',
      '--nas-port',
      '0',
      '--app-port',
      '0',
    ]);
    expect(res.code).toBe(1);
    expect(res.stdout).toContain('holds the data of a Chronos that chronos dev did not start');
    expect(res.stdout).toContain('--reset to empty it');
    expect(await readdir(join(other, 'jobs'))).toEqual(['keep.json']);
  });
});
