import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildJob } from '../../../src/jobs/build.js';
import { PostgresStore } from '../../../src/store/postgres/postgres-store.js';
import { e2eStacks, iso } from '../../helpers/e2e.js';
import { type PostgresServer, startPostgres } from '../../helpers/postgres.js';

const startStack = e2eStacks();
const ADMIN_TOKEN = 'postgres-e2e-admin-token';

describe('e2e: Chronos on PostgreSQL (dist/serve.js, a private server stopped and started)', () => {
  let server: PostgresServer;
  beforeAll(async () => {
    server = await startPostgres({ label: 'serve' });
  });
  afterAll(async () => {
    await server.destroy();
  });

  it('listens with the database down, answers fires and admin calls 503, then runs once it is reachable', async () => {
    const url = await server.createDatabase('serve_unreachable');
    const s = await startStack({
      jobs: [],
      idleExitSeconds: 0,
      env: { CHRONOS_DATABASE_URL: url, CHRONOS_ADMIN_TOKEN: ADMIN_TOKEN },
    });
    const seeded = await PostgresStore.open({ url });
    const job = buildJob(
      { id: 'tick', schedule: 'every 4s', target: { type: 'http', url: `${s.recorder.url}/hit/tick` } },
      { now: Date.now(), defaultTimezone: 'UTC', allowCommands: false, source: 'api' },
    );
    await seeded.createJob(job);
    await seeded.close();
    await server.stop();

    await s.wake();
    await s.waitFor('a failed connection attempt logged', () =>
      s.logs().some((l) => l.code === 'store_unavailable' && l.msg.startsWith('database not reachable')),
    );
    const direct = `http://${s.direct.host}:${s.direct.port}`;
    const token = await s.nas.mintFireToken({ sub: 'tick' });
    const fire = await fetch(`${direct}/api/cron/fire`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ job_id: 'tick', fire_at: iso(job.next_run_at!) }),
    });
    expect(fire.status).toBe(503);
    expect(fire.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(await fire.json()).toMatchObject({ error: 'claim_failed' });
    const jobs = await fetch(`${direct}/api/jobs`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(jobs.status).toBe(503);
    expect(jobs.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(await jobs.json()).toMatchObject({ error: 'store_unavailable' });
    expect(s.recorder.hitsFor('tick')).toHaveLength(0);

    await server.start();
    await s.waitFor('the database connected', () => s.logsWith('database connected').length === 1, 30_000);
    // Reconcile arms the job at NAS once the store is reachable; NAS then delivers and the job runs.
    await s.waitFor('a run of tick', () => s.recorder.hitsFor('tick').length >= 1, 20_000);
    const store = await PostgresStore.open({ url });
    try {
      await s.waitFor('the run recorded in the database', async () =>
        (await store.listRuns('tick')).some((r) => r.status === 'succeeded'),
      );
    } finally {
      await store.close();
    }
    // One process the whole time: it never had to restart to recover.
    expect(s.proxy.starts()).toHaveLength(1);
  }, 90_000);
});
