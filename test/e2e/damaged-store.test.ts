import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { JobSpecInput } from '../../src/jobs/model.js';
import { bundleSnapshot, e2eStacks, idleExits, iso, type Stack } from '../helpers/e2e.js';
import { type CliResult, runCli } from '../helpers/run-cli.js';

/*
 * Issue 10, items 3 and 4, replayed against the production bundle, the NAS emulator and real files: one
 * damaged job file (corrupt, truncated, unreadable, or holding a body nested 2,000 levels deep) or a damaged
 * run history used to stop recovery, reconcile, listing and status for every job, and idle exit then left
 * healthy jobs unarmed. A body nested 2,000 levels deep was stored through the API.
 */

const startStack = e2eStacks();
const TOKEN = 'e2e-admin-token-0123456789';
const HEALTHY = ['alpha', 'beta', 'hist'];
const DAMAGED_JOBS = ['corrupt', 'truncated', 'unreadable', 'poisoned'];

function every4s(recorder: string, id: string): JobSpecInput {
  return { id, schedule: 'every 4s', target: { type: 'http', url: `${recorder}/hit/${id}` } };
}

function deepJson(depth: number): string {
  return `${'['.repeat(depth)}${']'.repeat(depth)}`;
}

async function api(s: Stack, method: string, path: string, body?: string) {
  const res = await fetch(`${s.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${TOKEN}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body }),
  });
  // biome-ignore lint/suspicious/noExplicitAny: reply bodies are checked field by field
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

/** The `chronos` CLI of the same build, against the stack (through the wake proxy, as an operator would). */
async function cli(s: Stack, args: string[]): Promise<CliResult> {
  const bin = join(dirname(await bundleSnapshot()), 'cli.js');
  return runCli([...args, '--url', s.url], { bin, env: { CHRONOS_ADMIN_TOKEN: TOKEN } });
}

/** What NAS held from before the damage: an arm for the job whose file then broke. */
async function armAtNas(s: Stack, jobId: string, fireAt: string): Promise<void> {
  const res = await fetch(`${s.nas.url}/api/agent-cron/provision`, {
    method: 'POST',
    headers: { authorization: `Bearer ${s.nas.agentToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      job_id: jobId,
      fire_at: fireAt,
      agent_callback_url: s.url,
      dedup_key: `${jobId}:${fireAt}`,
    }),
  });
  expect(res.status).toBe(200);
}

describe('e2e: damaged job files and run history', () => {
  it('arms and fires every healthy job, shows the damage everywhere, and deletes damaged jobs by moving them aside', async () => {
    const s = await startStack({
      jobs: (recorder) => [...HEALTHY, ...DAMAGED_JOBS].map((id) => every4s(recorder, id)),
      env: { CHRONOS_ADMIN_TOKEN: TOKEN },
    });
    const jobFile = (id: string) => join(s.dataDir, 'jobs', `${id}.json`);
    await writeFile(jobFile('corrupt'), 'this is not JSON {');
    const truncated = await readFile(jobFile('truncated'), 'utf8');
    await writeFile(jobFile('truncated'), truncated.slice(0, Math.floor(truncated.length / 2)));
    // Unreadable: tests run as root, where chmod 000 changes nothing; a directory cannot be read as a file.
    await rm(jobFile('unreadable'));
    await mkdir(jobFile('unreadable'));
    // Stored before the bounds existed: the same document, its body nested 2,000 levels deep.
    const poisoned = await readFile(jobFile('poisoned'), 'utf8');
    await writeFile(
      jobFile('poisoned'),
      poisoned.replace('"target":{"type":"http",', `"target":{"type":"http","body":${deepJson(2_000)},`),
    );
    const historyBytes = '{"version":1,"runs":[{"run_id":"cut sh';
    await writeFile(join(s.dataDir, 'runs', 'hist.json'), historyBytes);
    const corruptArm = iso(Math.ceil(Date.now() / 1000) * 1000 + 3_600_000);
    await armAtNas(s, 'corrupt', corruptArm);

    await s.wake();
    await s.waitFor(
      'every healthy job fired twice',
      () => HEALTHY.every((id) => s.recorder.hitsFor(id).length >= 2),
      40_000,
    );
    const armedIds = new Set(s.nas.armed().map((a) => a.job_id));
    console.log(
      `figure: healthy jobs armed and fired with ${DAMAGED_JOBS.length} damaged job files and 1 damaged history: ` +
        `${HEALTHY.filter((id) => s.recorder.hitsFor(id).length >= 2).length} of ${HEALTHY.length}; ` +
        `idle exits ${idleExits(s.proxy)}`,
    );
    // Damage never held the process awake, and never made it sleep with a healthy job unarmed.
    expect(idleExits(s.proxy)).toBeGreaterThanOrEqual(1);
    for (const id of DAMAGED_JOBS) expect(s.recorder.hitsFor(id)).toEqual([]);

    // NAS's arm for the damaged job was left in place through every reconcile, and a fire of it answers 503.
    expect(armedIds.has('corrupt')).toBe(true);
    const cancelled = s.nas
      .provisions()
      .filter((p) => p.kind === 'cancel')
      .map((p) => (p.body as { job_id?: string }).job_id);
    expect(cancelled.filter((id) => DAMAGED_JOBS.includes(id ?? ''))).toEqual([]);
    const fire = await s.nas.fireNow('corrupt');
    expect(fire.status).toBe(503);

    // The job whose history was damaged keeps firing with a new history; the old bytes are set aside.
    await s.waitFor('hist runs recorded', async () =>
      (await s.runs('hist')).some((r) => r.status === 'succeeded'),
    );
    const asideRuns = await readdir(join(s.dataDir, 'damaged', 'runs'));
    expect(asideRuns).toEqual([expect.stringMatching(/^hist\./)]);
    expect(await readFile(join(s.dataDir, 'damaged', 'runs', asideRuns[0]!), 'utf8')).toBe(historyBytes);

    // The log names each damaged file with its problem, once per file per process.
    const damageLines = s.logs().filter((l) => l.code === 'store_corrupt' && typeof l.file === 'string');
    for (const id of DAMAGED_JOBS) {
      const lines = damageLines.filter((l) => l.file === jobFile(id));
      expect(lines.length, id).toBeGreaterThanOrEqual(1);
      expect(typeof lines[0]!.error).toBe('string');
      const perProcess = new Map<number, number>();
      for (const l of lines) perProcess.set(l.pid, (perProcess.get(l.pid) ?? 0) + 1);
      expect(Math.max(...perProcess.values()), id).toBe(1);
    }
    expect(damageLines.some((l) => l.job_id === 'hist' && String(l.file).includes('damaged'))).toBe(true);

    // Status and the job list show the damage beside the healthy jobs.
    const status = await api(s, 'GET', '/api/status');
    expect(status.status).toBe(200);
    expect(status.body.jobs).toBe(HEALTHY.length);
    const reported = (
      status.body.damaged as Array<{ job_id: string; kind: string; file: string; error: string }>
    )
      .map((d) => `${d.job_id}:${d.kind}`)
      .sort();
    expect(reported).toEqual([
      'corrupt:job',
      'hist:history',
      'poisoned:job',
      'truncated:job',
      'unreadable:job',
    ]);
    const poisonedReport = status.body.damaged.find((d: { job_id: string }) => d.job_id === 'poisoned');
    expect(poisonedReport.error).toContain('target.body');
    const list = await api(s, 'GET', '/api/jobs');
    expect(list.body.jobs.map((j: { id: string }) => j.id)).toEqual(HEALTHY);
    expect(list.body.damaged).toHaveLength(5);
    const cliList = await cli(s, ['jobs', 'list']);
    expect(cliList.code, cliList.stderr).toBe(0);
    expect(cliList.stdout).toContain('DAMAGED (5)');
    for (const id of DAMAGED_JOBS) expect(cliList.stdout).toMatch(new RegExp(`^${id}\\s+job\\s`, 'm'));

    // A create with a damaged id never overwrites it.
    const create = await api(s, 'POST', '/api/jobs', JSON.stringify(every4s(s.recorder.url, 'truncated')));
    expect(create.status).toBe(409);
    expect(create.body.error).toBe('job_damaged');
    expect(await readFile(jobFile('truncated'), 'utf8')).toBe(
      truncated.slice(0, Math.floor(truncated.length / 2)),
    );

    // Deleted through the API and the CLI: the bytes are moved aside, not destroyed.
    const removed = await api(s, 'DELETE', '/api/jobs/corrupt');
    expect(removed.status).toBe(200);
    expect(await readFile(removed.body.moved_to, 'utf8')).toBe('this is not JSON {');
    const cliRm = await cli(s, ['jobs', 'rm', 'unreadable']);
    expect(cliRm.code, cliRm.stderr).toBe(0);
    const movedDir = /moved to (\S+)\)/.exec(cliRm.stdout)?.[1];
    expect(movedDir).toBeDefined();
    expect((await stat(movedDir!)).isDirectory()).toBe(true);
    await expect(stat(jobFile('unreadable'))).rejects.toMatchObject({ code: 'ENOENT' });
    const after = await api(s, 'GET', '/api/status');
    expect(after.body.damaged.map((d: { job_id: string }) => d.job_id).sort()).toEqual([
      'hist',
      'poisoned',
      'truncated',
    ]);
    // Deleting a damaged job cancels the arm NAS held for it.
    await s.waitFor('a cancel for the deleted damaged job', () =>
      s.nas
        .provisions()
        .some((p) => p.kind === 'cancel' && (p.body as { job_id?: string }).job_id === 'corrupt'),
    );
  }, 90_000);
});

describe('e2e: a job body nested 2,000 levels deep', () => {
  it('is refused with 400 naming the field and the limit, stores nothing, and the other jobs go on', async () => {
    const s = await startStack({
      jobs: (recorder) => [every4s(recorder, 'alpha')],
      env: { CHRONOS_ADMIN_TOKEN: TOKEN },
    });
    await s.wake();
    for (const depth of [2_000, 3_500]) {
      const body = `{"id":"deep-${depth}","schedule":"every 1h","target":{"type":"http","url":"http://127.0.0.1:9/","body":${deepJson(depth)}}}`;
      const res = await api(s, 'POST', '/api/jobs', body);
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body).toMatchObject({
        error: 'validation_failed',
        problems: [{ path: 'target.body', message: expect.stringContaining('64') }],
      });
    }
    expect(await readdir(join(s.dataDir, 'jobs'))).toEqual(['alpha.json']);
    const list = await api(s, 'GET', '/api/jobs');
    expect(list.body).toMatchObject({ jobs: [{ id: 'alpha' }], damaged: [] });
    await s.waitFor('alpha fired twice', () => s.recorder.hitsFor('alpha').length >= 2, 20_000);
    expect(s.nas.armed().map((a) => a.job_id)).toEqual(['alpha']);
  });
});
