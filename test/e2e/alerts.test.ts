import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunView } from '../../src/jobs/view.js';
import { type Receiver, startReceiver } from '../alerts/receiver.js';
import { e2eStacks, idleExits } from '../helpers/e2e.js';

const startStack = e2eStacks();
const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const TOKEN = 'e2e-admin-token-for-alerts';

/** The job's target: answers 500 while `failing`, 200 after. */
async function startTarget(): Promise<{
  url: string;
  failing: boolean;
  hits: number;
  close(): Promise<void>;
}> {
  const state = {
    url: '',
    failing: true,
    hits: 0,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      state.hits += 1;
      res.writeHead(state.failing ? 500 : 200, { 'content-type': 'text/plain' });
      res.end(state.failing ? 'backup volume is full' : 'backed up');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return state;
}

let receiver: Receiver | undefined;
let target: Awaited<ReturnType<typeof startTarget>> | undefined;
afterEach(async () => {
  await receiver?.close();
  await target?.close();
  receiver = undefined;
  target = undefined;
});

describe('e2e: failure alerts from the production bundle, NAS emulator in front', () => {
  it('a job failing past its retries sends exactly one signed failed, then exactly one recovered', async () => {
    receiver = await startReceiver(SECRET);
    target = await startTarget();
    const t = target;
    const s = await startStack({
      // Seeded as if created 10 s ago: the first occurrence is 5 s away rather than 15, still room for the
      // process to start and arm it first.
      seededAt: Date.now() - 10_000,
      jobs: () => [
        {
          id: 'backup',
          schedule: 'every 15s',
          target: { type: 'http', url: `${t.url}/backup` },
          retry: { max_attempts: 2, backoff_seconds: 1 },
        },
      ],
      env: {
        CHRONOS_NOTIFY_URL: `${receiver.url}/alerts`,
        CHRONOS_NOTIFY_SECRET: SECRET,
        CHRONOS_ADMIN_TOKEN: TOKEN,
      },
    });
    const r = receiver;
    const finished = async (status: string) =>
      (await s.runs('backup')).filter((run) => run.status === status && run.finished_at !== null);
    const runNow = async () => {
      const reply = await fetch(`${s.url}/api/jobs/backup/run`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      expect(reply.status, s.transcript()).toBe(202);
    };

    await s.wake();
    // Attempt 1 fails (a retry follows: no alert), the retry fails too: the job is failing. (Every 15 s
    // leaves the 1 s retry room before the next occurrence even when a woken process starts slowly.)
    await s.waitFor('the failed alert', () => r.received().length >= 1, 45_000);
    const [failed] = r.received();
    expect(failed?.refusal, s.transcript()).toBeUndefined();
    expect(failed?.payload).toMatchObject({
      type: 'job.failed',
      data: { job: { id: 'backup' }, run: { attempt: 2, status: 'failed', error: 'HTTP 500' } },
    });
    const failedRun = (failed!.payload as { data: { run: { id: string; output_excerpt: string } } }).data.run;
    expect(failedRun.output_excerpt).toBe('backup volume is full');

    // The next occurrence fails through its retry as well: still one alert.
    await s.waitFor(
      'a second failing occurrence',
      async () => (await finished('failed')).length >= 4,
      45_000,
    );
    t.failing = false;
    await runNow();
    await s.waitFor('the recovered alert', () => r.received().length >= 2, 30_000);
    await runNow();
    await s.waitFor('a later success', async () => (await finished('succeeded')).length >= 2, 30_000);
    // A process exits idle only once every alert is settled: after the next idle exit, nothing is unsent.
    const exitsBefore = idleExits(s.proxy);
    await s.waitFor('an idle exit', () => idleExits(s.proxy) > exitsBefore, 30_000);
    const types = r.received().map((hit) => (hit.payload as { type: string } | undefined)?.type);
    expect(types, s.transcript()).toEqual(['job.failed', 'job.recovered']);
    expect(r.received().every((hit) => hit.refusal === undefined)).toBe(true);
    expect(new Set(r.received().map((hit) => hit.headers['webhook-id'])).size).toBe(2);

    // The run history shows each alert with its delivery state (the admin API's run view).
    const reply = await fetch(`${s.url}/api/jobs/backup/runs?limit=50`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    const { runs } = (await reply.json()) as { runs: RunView[] };
    const alerts = runs.flatMap((run) => run.alerts.map((a) => ({ run: run.run_id, ...a })));
    expect(alerts.map((a) => [a.event, a.state, a.attempts])).toEqual([
      ['recovered', 'sent', 1],
      ['failed', 'sent', 1],
    ]);
    expect(alerts.find((a) => a.event === 'failed')?.run).toBe(failedRun.id);
    expect(alerts[0]?.destination).toBe(`${r.url}/alerts`);
  }, 180_000);
});
