import { describe, expect, it } from 'vitest';
import { e2eStacks, iso, type Stack } from '../helpers/e2e.js';

/*
 * Awake only while there is work (docs/operations.md, "Awake time"): the production bundle behind the
 * emulator's wake proxy. The jobs are armed at NAS directly by the test, as a previous process would have
 * left them, so the first Chronos process of each test is woken by NAS's fire and nothing else.
 */

const startStack = e2eStacks();
const HOUR = 3_600_000;
const ADMIN_TOKEN = 'awake-admin-token-0123456789';

/** An `every 1h` job whose next occurrence is `inMs` from now (its grid anchored an hour earlier). */
function hourlyAnchor(inMs: number): number {
  return Date.now() - HOUR + inMs;
}

/** Arm the job's stored next occurrence at NAS, with the wake proxy as the callback, as Chronos would. */
async function armAtNas(s: Stack, jobId: string): Promise<number> {
  const job = await (await s.store()).getJob(jobId);
  const fireAt = job!.next_run_at!;
  const reply = await fetch(`${s.nas.url}/api/agent-cron/provision`, {
    method: 'POST',
    headers: { authorization: `Bearer ${s.nas.agentToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      job_id: jobId,
      fire_at: iso(fireAt),
      agent_callback_url: s.url,
      dedup_key: `${jobId}:${iso(fireAt)}`,
    }),
  });
  expect(reply.status).toBe(200);
  return fireAt;
}

function exitLines(s: Stack) {
  return s.logsWith('idle and every job armed; exiting');
}

/** At least `starts` processes were started, and every one has exited. */
function ended(s: Stack, starts: number): boolean {
  const all = s.proxy.starts();
  return all.length >= starts && all.every((start) => start.exitedAt !== undefined);
}

describe('e2e: awake only while there is work', () => {
  it('a fire-woken process exits once settled, well inside its idle window; a duplicate after exit wakes it and gets `duplicate`', async () => {
    const s = await startStack({
      idleExitSeconds: 60,
      seededAt: hourlyAnchor(3_000),
      jobs: (recorder) => [
        { id: 'hourly', schedule: 'every 1h', target: { type: 'http', url: `${recorder}/hit/hourly` } },
      ],
    });
    const fireAt = await armAtNas(s, 'hourly');

    // With a 60 s window, an exit within 30 s of the fire can only be the settled exit.
    await s.waitFor('the fire-woken process exited', () => ended(s, 1), 30_000);
    expect(s.proxy.starts()).toHaveLength(1);
    const [start] = s.proxy.starts();
    expect(start).toMatchObject({ exitCode: 0, signal: null });
    const runs = await s.runs('hourly');
    expect(runs.map((r) => [r.fire_at, r.status])).toEqual([[fireAt, 'succeeded']]);
    // The next occurrence is armed at NAS before the process stopped.
    expect(s.nas.armed().map((a) => [a.job_id, Date.parse(a.fire_at)])).toEqual([['hourly', fireAt + HOUR]]);
    expect(start!.exitedAt! - start!.startedAt).toBeLessThan(60_000);

    const [line] = exitLines(s);
    expect(line).toMatchObject({ wake_cause: 'fire', idle_ms: 0, awake_seconds: expect.any(Number) });
    const settledAt = Date.parse(String(line!['settled_at']));
    // Settled after the run's end was recorded, and not before its own process started.
    expect(settledAt).toBeGreaterThanOrEqual(runs[0]!.finished_at!);
    expect(settledAt).toBeGreaterThanOrEqual(start!.startedAt);
    expect(settledAt).toBeLessThanOrEqual(start!.exitedAt!);

    // A relay that delivers the same occurrence again after the exit: the process wakes and says duplicate.
    const token = await s.nas.mintFireToken({ sub: 'hourly' });
    const reply = await fetch(`${s.url}/api/cron/fire`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ job_id: 'hourly', fire_at: iso(fireAt) }),
    });
    expect(reply.status).toBe(200);
    expect(await reply.json()).toEqual({ status: 'duplicate' });
    expect(s.proxy.starts()).toHaveLength(2);
    await s.waitFor('the duplicate-woken process exited', () => ended(s, 2), 30_000);
    expect(s.proxy.starts()[1]).toMatchObject({ exitCode: 0, signal: null });
    expect(exitLines(s).map((l) => [l['wake_cause'], l['idle_ms']])).toEqual([
      ['fire', 0],
      ['fire', 0],
    ]);
    expect((await s.runs('hourly')).length).toBe(1);
    expect(s.recorder.hitsFor('hourly')).toHaveLength(1);
  });

  it('a fire-woken process with another occurrence due within the idle window stays up for it', async () => {
    const s = await startStack({
      idleExitSeconds: 8,
      seededAt: hourlyAnchor(2_000),
      jobs: (recorder) => [
        { id: 'first', schedule: 'every 1h', target: { type: 'http', url: `${recorder}/hit/first` } },
        { id: 'second', schedule: 'in 1h', target: { type: 'http', url: `${recorder}/hit/second` } },
      ],
    });
    await armAtNas(s, 'first');
    // `second` falls due 4 s after `first`, inside the 8 s window that follows the first run.
    const store = await s.store();
    const secondAt = (await store.getJob('first'))!.next_run_at! + 4_000;
    await store.updateJob('second', (job) => ({ ...job, next_run_at: secondAt }));
    await armAtNas(s, 'second');

    await s.waitFor(
      'both ran and the process exited',
      () => ended(s, 1) && s.recorder.hits().length === 2,
      40_000,
    );
    expect(s.proxy.starts()).toHaveLength(1);
    expect(s.proxy.starts()[0]).toMatchObject({ exitCode: 0, signal: null });
    const [line] = exitLines(s);
    // `second` was a one-shot: after its fire nothing is due, so the process did not wait out the window again.
    expect(line).toMatchObject({ wake_cause: 'fire', idle_ms: 0 });
  });

  it('a person keeps the full idle window, and /api/status reports the wake', async () => {
    const s = await startStack({
      idleExitSeconds: 3,
      env: { CHRONOS_ADMIN_TOKEN: ADMIN_TOKEN },
      jobs: (recorder) => [
        { id: 'daily', schedule: 'every 1d', target: { type: 'http', url: `${recorder}/hit/daily` } },
      ],
    });
    await armAtNas(s, 'daily');

    // Read until settled: right after start-up, work may still be in flight (the key set's refresh).
    type Status = { wake: Record<string, unknown>; startup_reconcile: string };
    const readStatus = async (): Promise<Status> => {
      const reply = await fetch(`${s.url}/api/status`, {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      expect(reply.status).toBe(200);
      return (await reply.json()) as Status;
    };
    let status = await readStatus();
    await s.waitFor('the status to report the wake settled', async () => {
      status = await readStatus();
      return status.wake['settled_at'] !== null;
    });
    expect(status.startup_reconcile).toBe('done');
    expect(status.wake).toMatchObject({
      cause: 'admin',
      awake_seconds: expect.any(Number),
      awake_because: expect.stringMatching(/a person used the admin API/),
    });
    const [start] = s.proxy.starts();
    expect(Date.parse(String(status.wake['woke_at']))).toBeGreaterThanOrEqual(start!.startedAt - 1_000);
    expect(Date.parse(String(status.wake['woke_at']))).toBeLessThanOrEqual(start!.readyAt!);
    // The window runs from the end of this read, after the process settled.
    const exitAt = Date.parse(String(status.wake['exit_at']));
    expect(exitAt - Date.parse(String(status.wake['settled_at']))).toBeGreaterThanOrEqual(3_000);

    await s.waitFor('the admin-woken process exited', () => ended(s, 1), 30_000);
    const [line] = exitLines(s);
    expect(line).toMatchObject({ wake_cause: 'admin', idle_ms: 3_000 });
    // It waited out the window after the status read was answered.
    expect(s.proxy.starts()[0]!.exitedAt! - start!.readyAt!).toBeGreaterThanOrEqual(3_000);
  });
});
