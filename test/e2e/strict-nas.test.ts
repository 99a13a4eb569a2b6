import { createServer, request as httpRequest, type Server } from 'node:http';
import { describe, expect, it } from 'vitest';
import { e2eStacks, freePort, type Stack } from '../helpers/e2e.js';

const startStack = e2eStacks();
const ADMIN_TOKEN = 'strict-admin-token';

interface StatusReply {
  armed: number;
  desired: number;
  last_fire_at: string | null;
  unconfirmed: Array<{ job_id: string; fire_at: string; reason: string }>;
  jobs_last_fire_at: Record<string, string | null>;
}

async function status(s: Stack): Promise<StatusReply> {
  const res = await fetch(`${s.url}/api/status`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as StatusReply;
}

function hop1Calls(s: Stack, kind: 'provision' | 'cancel' | 'list', jobId?: string) {
  return s.nas
    .provisions()
    .filter((p) => p.kind === kind)
    .filter((p) => jobId === undefined || (p.body as { job_id?: string } | undefined)?.job_id === jobId);
}

/**
 * A relay between NAS and the wake proxy that answers 502 to every delivery of one occurrence (while
 * `failFireAt` names it): NAS retries it and gives up, as it would behind a broken load balancer.
 */
interface FlakyRelay {
  url: string;
  target: string;
  failFireAt: string | null;
  failed: number;
  close(): Promise<void>;
}

async function startFlakyRelay(): Promise<FlakyRelay> {
  const relay: FlakyRelay = {
    url: '',
    target: '',
    failFireAt: null,
    failed: 0,
    close: async () => {},
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      let fireAt: unknown;
      try {
        fireAt = (JSON.parse(body.toString('utf8')) as { fire_at?: unknown }).fire_at;
      } catch {
        fireAt = undefined;
      }
      if (req.method === 'POST' && relay.failFireAt !== null && fireAt === relay.failFireAt) {
        relay.failed += 1;
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end('bad gateway');
        return;
      }
      const target = new URL(relay.target);
      const out = httpRequest(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      out.on('error', () => {
        res.writeHead(502);
        res.end();
      });
      out.end(body);
    });
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  relay.url = `http://127.0.0.1:${port}`;
  relay.close = () =>
    new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    });
  return relay;
}

/*
 * Each scenario turns on the strict switches it is about (docs/emulator.md), so a failure names the NAS
 * behaviour that broke it; the loop scenarios (full loop, duplicates, ...) run under all of them at once.
 */
// Each test starts its own stack (and relay): they run side by side.
describe.concurrent('e2e against the strict NAS behaviours', () => {
  it('the row NAS removes after a delivery takes the next arm with it: Chronos notices and re-arms', async (ctx) => {
    const s = await startStack(
      {
        faults: { rememberKeys: true, removeRowOnDelivery: true },
        env: { CHRONOS_ADMIN_TOKEN: ADMIN_TOKEN },
        jobs: (recorder) => [
          { id: 'tick', schedule: 'every 8s', target: { type: 'http', url: `${recorder}/hit/tick` } },
        ],
      },
      ctx,
    );
    await s.wake();
    await s.waitFor('three runs', () => s.recorder.hitsFor('tick').length >= 3, 30_000);

    const fireAts = s.recorder.hitsFor('tick').map((h) => Date.parse(h.fireAt));
    expect(new Set(fireAts).size).toBe(fireAts.length);
    for (let i = 1; i < fireAts.length; i++)
      expect(fireAts[i]! - fireAts[i - 1]!, s.transcript()).toBe(8_000);
    // NAS did remove rows holding the next arm (provisioned while the delivery was finishing)...
    const removedNextArms = s.nas.rowRemovals().filter((r) => r.removed_fire_at !== null);
    expect(removedNextArms.length, s.transcript()).toBeGreaterThanOrEqual(1);
    // ...and each time Chronos saw it in its confirming list and armed again before sleeping.
    expect(s.logsWith('NAS list does not confirm the arm').length).toBeGreaterThanOrEqual(1);
    expect(s.logsWith('idle and every job armed; exiting').length).toBeGreaterThanOrEqual(2);
    const runs = await s.runs('tick');
    for (const at of fireAts)
      expect(runs.filter((r) => r.fire_at === at).map((r) => r.trigger)).toEqual(['nas']);
  }, 60_000);

  it('a delivery NAS gives up on: the awake process runs the occurrence once, then arms and confirms the next', async (ctx) => {
    const relay = await startFlakyRelay();
    try {
      const s = await startStack(
        {
          faults: { rememberKeys: true, removeRowOnDelivery: true, deliveryAttempts: 4 },
          // Awake for good: this is the process that must notice a fire that never comes.
          idleExitSeconds: 0,
          env: { CHRONOS_ADMIN_TOKEN: ADMIN_TOKEN, CHRONOS_CALLBACK_URL: relay.url },
          jobs: (recorder) => [
            { id: 'tock', schedule: 'every 10s', target: { type: 'http', url: `${recorder}/hit/tock` } },
          ],
        },
        ctx,
      );
      relay.target = s.url;
      await s.wake();
      await s.waitFor('tock armed', () => s.nas.armed().some((a) => a.job_id === 'tock'));
      const first = s.nas.armed().find((a) => a.job_id === 'tock')!.fire_at;
      relay.failFireAt = first;
      const firstAt = Date.parse(first);

      await s.waitFor(
        'NAS to give up',
        () => s.nas.consumedKeys().some((k) => k.dedup_key === `tock:${first}` && k.outcome === 'given_up'),
        20_000,
      );
      expect(relay.failed).toBe(4);
      await s.waitFor(
        'the given-up occurrence to run',
        async () => (await s.runs('tock')).some((r) => r.fire_at === firstAt && r.status === 'succeeded'),
        20_000,
      );
      const nextAt = firstAt + 10_000;
      await s.waitFor(
        'the next occurrence delivered and run',
        async () => (await s.runs('tock')).some((r) => r.fire_at === nextAt && r.status === 'succeeded'),
        20_000,
      );
      await s.waitFor('the arm after it confirmed', async () => {
        const st = await status(s);
        return st.desired === 1 && st.unconfirmed.length === 0;
      });

      const runs = await s.runs('tock');
      expect(runs.filter((r) => r.fire_at === firstAt).map((r) => r.trigger)).toEqual(['misfire']);
      expect(runs.filter((r) => r.fire_at === nextAt).map((r) => r.trigger)).toEqual(['nas']);
      expect(s.recorder.hitsFor('tock').filter((h) => Date.parse(h.fireAt) === firstAt)).toHaveLength(1);
      // The consumed key was never provisioned again.
      const provisioned = hop1Calls(s, 'provision', 'tock').map(
        (p) => (p.body as { fire_at: string }).fire_at,
      );
      expect(provisioned.filter((at) => at === first)).toHaveLength(1);
      expect(s.nas.armed().map((a) => Date.parse(a.fire_at))).toEqual([nextAt + 10_000]);
    } finally {
      await relay.close();
    }
  }, 60_000);

  it('empty provision replies count as arms: the process confirms them and sleeps', async (ctx) => {
    const s = await startStack(
      {
        faults: { emptyProvisionReply: true },
        jobs: (recorder) => [
          { id: 'quiet', schedule: 'every 1h', target: { type: 'http', url: `${recorder}/hit/quiet` } },
        ],
      },
      ctx,
    );
    await s.wake();
    await s.waitFor('the process to sleep', () => s.proxy.starts()[0]?.exitCode === 0, 15_000);
    const provisions = hop1Calls(s, 'provision', 'quiet');
    expect(provisions).toHaveLength(1);
    expect(provisions[0]).toMatchObject({ status: 200 });
    expect(s.logsWith('NAS provision failed')).toHaveLength(0);
  }, 60_000);

  it('a list with malformed items: nothing is cancelled on their account, the job stays unconfirmed and awake', async (ctx) => {
    const s = await startStack(
      {
        faults: { listQuirks: true, junkListItems: true, malformedListJobs: ['beta'] },
        env: { CHRONOS_ADMIN_TOKEN: ADMIN_TOKEN },
        jobs: (recorder) => [
          { id: 'alpha', schedule: 'every 1h', target: { type: 'http', url: `${recorder}/hit/alpha` } },
          { id: 'beta', schedule: 'every 2h', target: { type: 'http', url: `${recorder}/hit/beta` } },
        ],
      },
      ctx,
    );
    await s.wake();
    await s.waitFor('both armed', () => s.nas.armed().length === 2);
    await s.waitFor('beta reported unconfirmed', async () => {
      const st = await status(s);
      return st.unconfirmed.some((u) => u.job_id === 'beta' && /unreadable/.test(u.reason));
    });
    const st = await status(s);
    expect(st.unconfirmed.map((u) => u.job_id)).toEqual(['beta']);
    // Never asleep while beta is unconfirmed, and no cancel for beta or for the junk items' job ids.
    expect(s.proxy.starts()[0]?.exitedAt).toBeUndefined();
    expect(hop1Calls(s, 'cancel')).toHaveLength(0);

    // NAS's list reads cleanly again: the next confirming list (with backoff) lets the process sleep.
    s.nas.faults.malformedListJobs = [];
    await s.waitFor('the process to sleep', () => s.proxy.starts()[0]?.exitCode === 0, 20_000);
    expect(hop1Calls(s, 'cancel')).toHaveLength(0);
    expect(
      s.nas
        .armed()
        .map((a) => a.job_id)
        .sort(),
    ).toEqual(['alpha', 'beta']);
  }, 60_000);
});
