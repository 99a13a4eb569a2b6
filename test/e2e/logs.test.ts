import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bundleSnapshot, e2eStacks, removeBundleSnapshot } from '../helpers/e2e.js';

const startStack = e2eStacks();
afterAll(removeBundleSnapshot);

const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const INFO = 30;
const DEBUG = 20;

describe('e2e: logs of a fire (docs/operations.md, Logs)', () => {
  it('one info line per NAS fire carries job, occurrence, reply, run and outcome; the steps are at debug', async () => {
    const s = await startStack({
      env: { LOG_LEVEL: 'debug' },
      jobs: (recorder) => [
        { id: 'tick', schedule: 'every 4s', target: { type: 'http', url: `${recorder}/hit/tick` } },
        // Nothing listens on port 9: every run fails.
        { id: 'boom', schedule: 'every 4s', target: { type: 'http', url: 'http://127.0.0.1:9/' } },
      ],
    });
    await s.wake();
    await s.waitFor(
      'two logged runs of each job',
      () =>
        s.logsWith('job ran').filter((l) => l['job_id'] === 'tick').length >= 2 &&
        s.logsWith('job ran').filter((l) => l['job_id'] === 'boom').length >= 2,
      40_000,
    );

    for (const line of s.logs()) expect(String(line['time'])).toMatch(ISO_MS);

    const runs = [...(await s.runs('tick')), ...(await s.runs('boom'))].filter((r) => r.status !== 'running');
    const logged = s.logsWith('job ran');
    expect(runs.length).toBeGreaterThanOrEqual(4);
    for (const run of runs) {
      const mine = s.logs().filter((l) => l['run_id'] === run.run_id);
      // Exactly one line at info or above per fire; the steps are there, at debug.
      const shown = mine.filter((l) => l.level >= INFO);
      expect(
        shown.map((l) => l.msg),
        s.transcript(),
      ).toEqual(['job ran']);
      const steps = mine.filter((l) => l.level === DEBUG).map((l) => l.msg);
      // A fire NAS delivered was answered 202; on a loaded machine the process may have claimed a due
      // occurrence itself (trigger misfire), with no reply to anyone.
      const nas = run.trigger === 'nas';
      expect(steps).toContain(nas ? 'fire accepted' : 'occurrence claimed');
      // On a loaded machine a run can still be going when the next occurrence comes: that one is skipped.
      if (run.status !== 'skipped')
        expect(steps).toEqual(expect.arrayContaining(['run started', 'run finished']));
      const line = shown[0]!;
      const failed = run.status === 'failed' || run.status === 'timed_out';
      expect(line).toMatchObject({
        level: failed ? 40 : INFO,
        job_id: run.job_id,
        fire_at: new Date(run.fire_at).toISOString(),
        status: run.status,
        trigger: run.trigger,
        next_armed: true,
      });
      if (nas) expect(line['reply']).toBe(202);
      else expect(line).not.toHaveProperty('reply');
      expect(line['duration_ms']).toBe((run.finished_at ?? 0) - run.started_at);
      expect(Date.parse(String(line['next_run_at']))).toBeGreaterThan(run.fire_at);
      if (run.error === null) expect(line).not.toHaveProperty('error');
      else expect(line['error']).toBe(run.error.slice(0, 300) + (run.error.length > 300 ? '…' : ''));
    }
    expect(runs.filter((r) => r.job_id === 'tick').map((r) => r.status)).toContain('succeeded');
    const boomRuns = runs.filter((r) => r.job_id === 'boom' && r.status === 'failed');
    expect(boomRuns.length).toBeGreaterThanOrEqual(1);
    expect(boomRuns[0]!.error).toMatch(/ECONNREFUSED|connect/);
    // Each logged fire is a recorded run; none was logged twice.
    const ids = logged.map((l) => l['run_id']);
    expect(new Set(ids).size).toBe(ids.length);
    // What a routine fire leaves at info: its own line, nothing else naming the job.
    const otherInfo = s
      .logs()
      .filter((l) => l.level === INFO && (l['job_id'] === 'tick' || l['job_id'] === 'boom'));
    expect(otherInfo.filter((l) => l.msg !== 'job ran').map((l) => l.msg)).toEqual([]);
  }, 60_000);
});

describe('e2e: LOG_FORMAT=pretty', () => {
  it('writes one readable line per event, the fire line with its key fields, and no JSON', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'chronos-pretty-'));
    try {
      const jobsFile = join(dir, 'jobs.json');
      await writeFile(
        jobsFile,
        JSON.stringify({
          jobs: [
            {
              id: 'hello',
              schedule: 'every 1s',
              target: { type: 'command', argv: [process.execPath, '-e', 'console.log("hi")'] },
            },
          ],
        }),
      );
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries(process.env))
        if (
          v !== undefined &&
          !k.startsWith('CHRONOS_') &&
          !/^(PORT|HOST|LOG_.*|NODE_EXTRA_CA_CERTS)$/.test(k)
        )
          env[k] = v;
      const child = spawn(process.execPath, [await bundleSnapshot()], {
        env: {
          ...env,
          LOG_FORMAT: 'pretty',
          PORT: '0',
          CHRONOS_PROVIDER: 'builtin',
          CHRONOS_DATA_DIR: join(dir, 'data'),
          CHRONOS_JOBS_FILE: jobsFile,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      const fireLine =
        /^\d{2}:\d{2}:\d{2}\.\d{3}Z INFO {2}job ran job_id=hello fire_at=\S+ status=succeeded run_id=[0-9a-f-]{36} trigger=builtin duration_ms=\d+ next_run_at=\S+ next_armed=true$/m;
      const seen = await new Promise<boolean>((resolve) => {
        const deadline = setTimeout(() => resolve(false), 20_000);
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString('utf8');
          if (fireLine.test(out)) {
            clearTimeout(deadline);
            resolve(true);
          }
        });
        child.once('exit', () => resolve(false));
      });
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      expect(seen, out).toBe(true);
      const lines = out.split('\n').filter((l) => l !== '');
      expect(lines.filter((l) => l.startsWith('{'))).toEqual([]);
      for (const line of lines)
        expect(line).toMatch(/^\d{2}:\d{2}:\d{2}\.\d{3}Z (TRACE|DEBUG|INFO |WARN |ERROR|FATAL) \S/);
      expect(
        lines.some((l) =>
          / INFO {2}chronos listening url=http:\/\/127\.0\.0\.1:\d+ provider=builtin /.test(l),
        ),
      ).toBe(true);
      // The run's steps are at debug, below the default level.
      expect(out).not.toMatch(/run started|fire accepted/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 40_000);
});
