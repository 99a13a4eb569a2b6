import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { errorMessage, isChronosError } from '../../src/errors.js';
import { buildJob } from '../../src/jobs/build.js';
import {
  JOBS_FILE_SYNC_STATE,
  loadJobsFile,
  parseJobsFile,
  syncJobsFileAtStart,
} from '../../src/jobs-file/jobs-file.js';
import { startChronos } from '../../src/main.js';
import { createHandlerRegistry } from '../../src/run/targets/handler.js';
import { FileStore } from '../../src/store/file-store.js';
import type { Store } from '../../src/store/store.js';
import { ManualClock } from '../helpers/manual-clock.js';

const T0 = Date.parse('2026-01-05T10:00:00Z');
let dir: string;
let dataDir: string;
let jobsFile: string;
let store: FileStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chronos-jobs-file-'));
  dataDir = join(dir, 'data');
  jobsFile = join(dir, 'jobs.json');
  store = await FileStore.open({ dir: dataDir });
});

afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const handler = { type: 'handler' as const, name: 'record' };

async function declare(jobs: unknown): Promise<void> {
  await writeFile(jobsFile, JSON.stringify(jobs));
}

function sync(now = T0, target: Store = store) {
  return syncJobsFileAtStart({ store: target, path: jobsFile, dataDir, now, defaultTimezone: 'UTC' });
}

async function expectProblems(promise: Promise<unknown>): Promise<Array<{ path: string; message: string }>> {
  try {
    await promise;
  } catch (err) {
    if (!isChronosError(err, 'validation_failed')) throw err;
    return err.details!.problems as Array<{ path: string; message: string }>;
  }
  throw new Error('expected validation_failed');
}

describe('jobs file: loading', () => {
  it('accepts {"jobs": [...]} and a bare array', async () => {
    await declare({ jobs: [{ id: 'a', schedule: 'every 1h', target: handler }] });
    expect((await loadJobsFile(jobsFile)).specs.map((s) => s.id)).toEqual(['a']);
    await declare([{ id: 'b', schedule: '@daily', target: handler }]);
    const loaded = await loadJobsFile(jobsFile);
    expect(loaded.specs.map((s) => s.id)).toEqual(['b']);
    expect(loaded.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('lists every problem at once, by job id or index and field', async () => {
    await declare({
      jobs: [
        { id: 'ok', schedule: 'every 1h', target: handler },
        { id: 'ok', schedule: 'every 2h', target: handler },
        { schedule: 'every 1h', target: handler },
        { id: 'bad-schedule', schedule: '30m', target: handler },
        { id: 'bad-zone', schedule: '0 9 * * *', timezone: 'Mars/Olympus', target: handler },
        { id: 'extra', schedule: 'every 1h', target: handler, colour: 'red' },
        { id: 'bad-target', schedule: 'every 1h', target: { type: 'http', url: 'nope' } },
      ],
    });
    const problems = await expectProblems(loadJobsFile(jobsFile));
    const paths = problems.map((p) => p.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'jobs[1].id',
        'jobs[2].id',
        'jobs[bad-schedule].schedule',
        'jobs[bad-zone].timezone',
        'jobs[extra]',
        'jobs[bad-target].target.url',
      ]),
    );
    expect(problems.find((p) => p.path === 'jobs[1].id')!.message).toBe(
      'duplicate id: entries 0 and 1 both declare "ok"',
    );
    expect(problems.find((p) => p.path === 'jobs[extra]')!.message).toContain('colour');
    try {
      await loadJobsFile(jobsFile);
    } catch (err) {
      expect(errorMessage(err)).toContain(`jobs file ${jobsFile} has ${problems.length} problems`);
      expect(errorMessage(err)).toContain('jobs[bad-schedule].schedule:');
    }
  });

  it('one round: every problem of every entry, duplicates by index, a "did you mean", the forms once', async () => {
    await declare({
      jobs: [
        { id: 'a', shedule: 'every 1h', target: handler },
        { id: 'a', schedule: '30m', target: handler },
        {
          id: 'b',
          schedule: 'bogus',
          timezone: 'Mars/X',
          target: { type: 'http', url: 'http://127.0.0.1:1/', methd: 'POST' },
        },
        { id: 'c', schedule: 'every 1h', target: { type: 'handler', name: 'x' }, misfire: { polcy: 'skip' } },
      ],
    });
    let message = '';
    const problems = await expectProblems(
      loadJobsFile(jobsFile).catch((err: Error) => {
        message = err.message;
        throw err;
      }),
    );
    expect(problems).toEqual([
      { path: 'jobs[0]', message: 'unknown key "shedule": did you mean "schedule"?' },
      { path: 'jobs[1].id', message: 'duplicate id: entries 0 and 1 both declare "a"' },
      {
        path: 'jobs[1].schedule',
        message: '"30m" is ambiguous: write "every 30m" for a repeating job or "in 30m" for a one-shot',
      },
      { path: 'jobs[b].target', message: 'unknown key "methd": did you mean "method"?' },
      {
        path: 'jobs[b].timezone',
        message: 'unknown time zone "Mars/X"; use an IANA name such as Europe/Paris',
      },
      { path: 'jobs[b].schedule', message: expect.stringContaining('"bogus"') },
      { path: 'jobs[c].misfire', message: 'unknown key "polcy": did you mean "policy"?' },
    ]);
    expect(message.match(/Accepted schedule forms:/g)).toHaveLength(1);
    expect(message).not.toContain('Accepted forms:');
  });

  it('an unknown key without a near match lists the accepted keys; a misspelt top-level key is named', () => {
    const problems = (text: string) => {
      try {
        parseJobsFile(text, 'x.json');
      } catch (err) {
        if (isChronosError(err, 'validation_failed')) return err.details!.problems;
      }
      return undefined;
    };
    expect(problems(JSON.stringify([{ id: 'a', schedule: 'every 1h', target: handler, colour: 1 }]))).toEqual(
      [
        {
          path: 'jobs[a]',
          message: expect.stringMatching(/^unknown key "colour" \(accepted here: id, name, schedule,/),
        },
      ],
    );
    expect(problems('{"job": []}')).toEqual([
      { path: '', message: 'unknown key "job": did you mean "jobs"? (only "jobs" is read)' },
      { path: '', message: 'expected {"jobs": [<job spec>, ...]} or a JSON array of job specs' },
    ]);
  });

  it('bad JSON is reported with its line and column', () => {
    expect(() => parseJobsFile('{"jobs": [\n  {"id": "a",}\n]}', 'x.json')).toThrow(
      /x\.json: not valid JSON at line 2, column 14: /,
    );
    expect(() => parseJobsFile('{"jobs": [', 'x.json')).toThrow(/not valid JSON at line 1, column 11: /);
  });

  it('holds declared jobs to the same bounds as the API, naming the field and the limit', async () => {
    await writeFile(
      jobsFile,
      `{"jobs":[{"id":"deep","schedule":"every 1h","target":{"type":"handler","name":"record","payload":${'['.repeat(2_000)}${']'.repeat(2_000)}}}]}`,
    );
    const problems = await expectProblems(loadJobsFile(jobsFile));
    expect(problems).toEqual([{ path: 'jobs[deep].target.payload', message: expect.stringContaining('64') }]);
  });

  it('reports JSON syntax errors and the wrong top-level shape', async () => {
    await writeFile(jobsFile, '{"jobs": [');
    expect((await expectProblems(loadJobsFile(jobsFile)))[0]!.message).toContain('not valid JSON');
    expect(() => parseJobsFile('{"job": []}', 'x.json')).toThrow(/expected \{"jobs"/);
    await expect(loadJobsFile(join(dir, 'missing.json'))).rejects.toMatchObject({ code: 'invalid_config' });
  });
});

describe('jobs file: sync', () => {
  it('adds declared jobs with source file', async () => {
    await declare({
      jobs: [
        { id: 'a', schedule: 'every 1h', target: handler },
        { id: 'b', schedule: '0 9 * * *', timezone: 'Europe/Paris', target: handler },
      ],
    });
    const result = await sync();
    expect(result).toMatchObject({ skipped: false, created: ['a', 'b'], updated: [], removed: [] });
    const a = await store.getJob('a');
    expect(a).toMatchObject({ source: 'file', next_run_at: T0 + 3_600_000, state: 'scheduled' });
    expect((await store.getJob('b'))!.next_run_at).toBe(Date.parse('2026-01-06T08:00:00Z'));
  });

  it('an edited declaration updates the job and keeps its runtime state', async () => {
    await declare([{ id: 'a', schedule: 'every 1h', target: handler, name: 'First' }]);
    await sync();
    await store.updateJob('a', (job) => ({
      ...job,
      state: 'paused',
      last_run_at: T0 + 1000,
      last_status: 'failed',
      failure_streak: 2,
      repeat: { ...job.repeat, completed: 3 },
    }));
    await declare([{ id: 'a', schedule: 'every 1h', target: handler, name: 'Renamed' }]);
    const result = await sync(T0 + 60_000);
    expect(result).toMatchObject({ updated: ['a'], created: [], removed: [] });
    expect(await store.getJob('a')).toMatchObject({
      name: 'Renamed',
      state: 'paused',
      last_status: 'failed',
      failure_streak: 2,
      next_run_at: T0 + 3_600_000,
      repeat: { completed: 3 },
      created_at: T0,
      updated_at: T0 + 60_000,
    });

    await declare([{ id: 'a', schedule: 'every 30m', target: handler, name: 'Renamed' }]);
    await sync(T0 + 120_000);
    expect(await store.getJob('a')).toMatchObject({
      next_run_at: T0 + 120_000 + 1_800_000,
      last_status: 'failed',
      state: 'paused',
    });
  });

  it('removes file jobs no longer declared and leaves API jobs alone', async () => {
    await store.createJob(
      buildJob(
        { id: 'api-job', schedule: 'every 1h', target: handler },
        { now: T0, defaultTimezone: 'UTC', allowCommands: false, source: 'api' },
      ),
    );
    await declare([
      { id: 'a', schedule: 'every 1h', target: handler },
      { id: 'b', schedule: 'every 1h', target: handler },
    ]);
    await sync();
    await declare([{ id: 'b', schedule: 'every 1h', target: handler }]);
    const result = await sync();
    expect(result).toMatchObject({ removed: ['a'], unchanged: ['b'] });
    expect((await store.listJobs()).map((j) => j.id).sort()).toEqual(['api-job', 'b']);
  });

  it('refuses a declared id taken by an API job, naming it, and writes nothing', async () => {
    await store.createJob(
      buildJob(
        { id: 'taken', schedule: 'every 1h', target: handler },
        { now: T0, defaultTimezone: 'UTC', allowCommands: false, source: 'api' },
      ),
    );
    await declare([
      { id: 'new-one', schedule: 'every 1h', target: handler },
      { id: 'taken', schedule: 'every 2h', target: handler },
    ]);
    const problems = await expectProblems(sync());
    expect(problems).toEqual([
      { path: 'jobs[taken].id', message: expect.stringContaining('created through the API') },
    ]);
    expect(await store.getJob('new-one')).toBeUndefined();
    expect((await store.getJob('taken'))!.schedule).toBe('every 1h');
    await expect(stat(join(dataDir, JOBS_FILE_SYNC_STATE))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('an invalid file changes nothing and is not remembered as synced', async () => {
    await declare([{ id: 'a', schedule: 'every 1h', target: handler }]);
    await sync();
    await declare([
      { id: 'a', schedule: 'every 1h', target: handler },
      { id: 'b', schedule: 'nonsense', target: handler },
    ]);
    await expectProblems(sync());
    expect((await store.listJobs()).map((j) => j.id)).toEqual(['a']);
    await declare([{ id: 'a', schedule: 'every 1h', target: handler }]);
    expect(await sync()).toMatchObject({ skipped: true });
  });

  it('syncs every other declared job past a damaged one, never writes over it, and tries it again next start', async () => {
    await declare([
      { id: 'a', schedule: 'every 1h', target: handler },
      { id: 'broken', schedule: 'every 1h', target: handler },
    ]);
    await sync();
    const brokenPath = join(dataDir, 'jobs', 'broken.json');
    await writeFile(brokenPath, '{"version":1,');
    await store.close();
    store = await FileStore.open({ dir: dataDir });
    await declare([
      { id: 'a', schedule: 'every 2h', target: handler },
      { id: 'broken', schedule: 'every 2h', target: handler },
      { id: 'c', schedule: 'every 1h', target: handler },
    ]);
    expect(await sync(T0 + 1_000)).toMatchObject({
      skipped: false,
      updated: ['a'],
      created: ['c'],
      damaged: ['broken'],
    });
    expect(await readFile(brokenPath, 'utf8')).toBe('{"version":1,');
    expect((await store.listJobs()).map((j) => [j.id, j.schedule])).toEqual([
      ['a', 'every 2h'],
      ['c', 'every 1h'],
    ]);
    // Deleted (set aside) by the operator: the next start creates it from the declaration.
    await store.removeJob('broken');
    expect(await sync(T0 + 2_000)).toMatchObject({ skipped: false, created: ['broken'], damaged: [] });
    expect(await sync(T0 + 3_000)).toMatchObject({ skipped: true });
  });

  it('an unchanged file is skipped without listing or writing jobs', async () => {
    await declare([{ id: 'a', schedule: 'every 1h', target: handler }]);
    await sync();
    const state = JSON.parse(await readFile(join(dataDir, JOBS_FILE_SYNC_STATE), 'utf8'));
    expect(state).toMatchObject({ path: jobsFile, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    const before = (await stat(join(dataDir, 'jobs'))).mtimeMs;
    const touched: string[] = [];
    const watched = new Proxy(store, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          touched.push(String(prop));
          return value.apply(target, args);
        };
      },
    });
    expect(await sync(T0 + 5_000, watched)).toMatchObject({ skipped: true });
    expect(touched).toEqual([]);
    expect((await stat(join(dataDir, 'jobs'))).mtimeMs).toBe(before);
    expect((await store.getJob('a'))!.updated_at).toBe(T0);
  });
});

describe('jobs file at start', () => {
  it('a file with errors stops startChronos with every problem listed', async () => {
    await store.close();
    await declare([
      { id: 'x', schedule: 'every', target: handler },
      { schedule: '@daily', target: handler },
    ]);
    const started = startChronos({
      env: {
        PORT: '0',
        LOG_LEVEL: 'silent',
        CHRONOS_DATA_DIR: dataDir,
        CHRONOS_PROVIDER: 'builtin',
        CHRONOS_JOBS_FILE: jobsFile,
      },
      handleSignals: false,
      exit: () => {},
    });
    await expect(started).rejects.toMatchObject({
      code: 'validation_failed',
      message: expect.stringMatching(/jobs\[x\]\.schedule[\s\S]*jobs\[1\]\.id/),
    });
    store = await FileStore.open({ dir: dataDir });
  });

  it('a past one-shot never blocks a start: within grace it runs once, beyond it is recorded missed', async () => {
    await store.close();
    const clock = new ManualClock(T0);
    const ran: string[] = [];
    const handlers = createHandlerRegistry();
    handlers.register('record', ({ job }) => {
      ran.push(job.id);
    });
    await declare([
      { id: 'long-ago', schedule: 'at 2025-12-24T18:00:00Z', target: handler },
      { id: 'just-now', schedule: `at ${new Date(T0 - 60_000).toISOString()}`, target: handler },
      { id: 'later', schedule: 'every 1h', target: handler },
    ]);
    const env = {
      PORT: '0',
      LOG_LEVEL: 'silent',
      CHRONOS_DATA_DIR: dataDir,
      CHRONOS_PROVIDER: 'builtin',
      CHRONOS_JOBS_FILE: jobsFile,
    };
    const waitFor = async (what: string, predicate: () => Promise<boolean>) => {
      const deadline = Date.now() + 10_000;
      while (!(await predicate())) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    // Fresh data directory.
    let chronos = await startChronos({ env, clock, handlers, handleSignals: false, exit: () => {} });
    await waitFor('both one-shots settled', async () => {
      // The overdue timer of the builtin provider is due now; a manual clock runs it when told to.
      await clock.advance(0);
      const jobs = await Promise.all(['long-ago', 'just-now'].map((id) => chronos.store.getJob(id)));
      return jobs.every((job) => job?.state === 'completed');
    });
    expect(await chronos.store.getJob('long-ago')).toMatchObject({
      last_status: 'missed',
      next_run_at: null,
    });
    expect((await chronos.store.listRuns('long-ago', 5)).map((r) => r.status)).toEqual(['missed']);
    await waitFor('the run within grace', async () => ran.includes('just-now'));
    expect(ran).toEqual(['just-now']);
    await chronos.shutdown('test');

    // The same data directory after the file changed: the past one-shots are neither refused nor revived.
    await declare([
      { id: 'long-ago', schedule: 'at 2025-12-24T18:00:00Z', target: handler },
      { id: 'just-now', schedule: `at ${new Date(T0 - 60_000).toISOString()}`, target: handler },
      { id: 'later', schedule: 'every 2h', target: handler },
    ]);
    await clock.advance(600_000);
    chronos = await startChronos({ env, clock, handlers, handleSignals: false, exit: () => {} });
    expect(await chronos.store.getJob('long-ago')).toMatchObject({
      state: 'completed',
      last_status: 'missed',
    });
    expect(await chronos.store.getJob('just-now')).toMatchObject({ state: 'completed' });
    expect((await chronos.store.listRuns('long-ago', 5)).map((r) => r.status)).toEqual(['missed']);
    await chronos.shutdown('test');
    expect(ran).toEqual(['just-now']);
    store = await FileStore.open({ dir: dataDir });
  });
});
