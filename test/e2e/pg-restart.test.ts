import { afterAll, describe, expect, it, type TestContext } from 'vitest';
import { END_WRITE_RETRY_MSG } from '../../src/run/runner.js';
import { removeBundleSnapshot } from '../helpers/e2e.js';
import { type PostgresServer, startPostgres } from '../helpers/postgres.js';
import { type ReplicaSet, startReplicaSet } from '../helpers/replicas.js';

/*
 * The database stopped and started while NAS keeps delivering (docs/deploy-postgres.md, "When the database
 * is unreachable"): a private PostgreSQL server (stopping the shared one would cut other test files off),
 * one Chronos process (dist/serve.js) that is never restarted, the emulator retrying what it refuses.
 */

afterAll(removeBundleSnapshot);

/**
 * A private server and one Chronos process on it, both removed when the test ends (hooks of the test
 * itself: the tests run side by side, each on its own server).
 */
async function startOnPrivateServer(
  label: string,
  onTestFinished: TestContext['onTestFinished'],
): Promise<{ server: PostgresServer; s: ReplicaSet }> {
  const server = await startPostgres({ label });
  onTestFinished(() => server.destroy());
  const url = await server.createDatabase(label.replace('-', '_'));
  const s = await startReplicaSet({ databaseUrl: url, count: 1 });
  onTestFinished(() => s.close());
  return { server, s };
}

const JOBS = ['s1', 's2', 's3'];

// One test after the other: side by side (two PostgreSQL servers restarting beside the other e2e files),
// a clean run saw an admin read refused after the restart.
describe('e2e: PostgreSQL stopped and started during a stream of fires', () => {
  it('runs every accepted occurrence once; refused ones are retried by NAS and then run', async ({
    onTestFinished,
  }) => {
    const { server, s } = await startOnPrivateServer('restart', onTestFinished);
    const [chronos] = s.replicas as [ReplicaSet['replicas'][0]];
    for (const id of JOBS) {
      const created = await s.admin(chronos, 'POST', '/api/jobs', {
        id,
        schedule: 'every 4s',
        target: { type: 'http', url: `${s.recorder.url}/hit/${id}` },
      });
      expect(created.status).toBe(201);
    }
    const accepted = () => s.nas.deliveries().filter((d) => d.status === 202);
    await s.waitFor('a few occurrences accepted before the stop', () => accepted().length >= 4, 30_000);
    // Stopped while NAS holds every job's next occurrence, at least 1.5 s ahead: those deliveries then
    // come while the database is down (an arm that fails while it is down leaves nothing to deliver).
    await s.waitFor(
      'every job armed ahead',
      () =>
        JOBS.every((id) =>
          s.nas.armed().some((arm) => arm.job_id === id && Date.parse(arm.fire_at) - Date.now() >= 1_500),
        ),
      30_000,
    );

    const stoppedAt = Date.now();
    await server.stop();
    // Fires keep coming while the database is down: they are refused with 503 and a Retry-After.
    await s.waitFor(
      'fires refused while the database is down',
      () => s.nas.deliveries().filter((d) => d.status === 503 && Date.parse(d.at) >= stoppedAt).length >= 2,
      30_000,
    );
    // What NAS sees: 503 with a Retry-After (checked on one fire sent by hand: the emulator keeps no headers).
    const token = await s.nas.mintFireToken({ sub: 's1' });
    const manual = await fetch(`${chronos.url}/api/cron/fire`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ job_id: 's1', fire_at: new Date(Date.now() + 600_000).toISOString() }),
    });
    expect(manual.status).toBe(503);
    expect(Number(manual.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await manual.json()).toMatchObject({ error: 'claim_failed' });

    const startedAt = Date.now();
    await server.start();

    // Every occurrence refused while the database was down is delivered again and then runs.
    const refused = () =>
      s.nas
        .deliveries()
        .filter((d) => d.status === 503)
        .map((d) => `${d.job_id}@${Date.parse(d.fire_at)}`);
    // What ran is what reached the target; each is recorded `succeeded`, a run that ended while the
    // database was down included (its end is written once the database is back).
    const ran = async () => new Set(s.recorder.hits().map((h) => `${h.job}@${Date.parse(h.fireAt)}`));
    await s.waitFor(
      'every refused occurrence run after the restart',
      async () => {
        const done = await ran();
        return refused().every((key) => done.has(key));
      },
      60_000,
    );
    // And the schedule goes on: an occurrence after the restart is accepted and runs.
    await s.waitFor(
      'an occurrence due after the restart accepted',
      () => accepted().some((d) => Date.parse(d.fire_at) > startedAt + 2_000),
      30_000,
    );
    await s.waitFor('every accepted occurrence run', async () => {
      const done = await ran();
      return accepted().every((d) => done.has(`${d.job_id}@${Date.parse(d.fire_at)}`));
    });

    const succeeded = async () => {
      const keys = new Set<string>();
      for (const id of JOBS)
        for (const run of await s.runs(id)) if (run.status === 'succeeded') keys.add(`${id}@${run.fire_at}`);
      return keys;
    };
    await s.waitFor('every occurrence that ran recorded succeeded', async () => {
      // Soon after the restart a read can still be refused (503 store_unavailable, a statement that
      // timed out on the recovering server): not known yet, asked again. A store that never comes back
      // fails the wait.
      const recorded = await succeeded().catch((err: Error) => {
        if (err.message.includes(': 503 ')) return undefined;
        throw err;
      });
      const done = await ran();
      return recorded !== undefined && [...done].every((key) => recorded.has(key));
    });
    for (const d of s.nas.deliveries().filter((x) => x.status === 503))
      expect(d.body).toMatchObject({ error: 'claim_failed' });
    // Exactly once: one accepted delivery, one run record and one target call per occurrence.
    for (const id of JOBS) {
      const runs = await s.runs(id);
      const perOccurrence = new Map<number, number>();
      for (const run of runs) perOccurrence.set(run.fire_at, (perOccurrence.get(run.fire_at) ?? 0) + 1);
      expect(
        [...perOccurrence.entries()].filter(([, n]) => n > 1),
        `${id} runs`,
      ).toEqual([]);
      const hits = s.recorder.hitsFor(id).map((h) => h.fireAt);
      expect(new Set(hits).size, `${id} target calls`).toBe(hits.length);
      const acceptedKeys = accepted()
        .filter((d) => d.job_id === id)
        .map((d) => d.fire_at);
      expect(new Set(acceptedKeys).size, `${id} accepted deliveries`).toBe(acceptedKeys.length);
    }
    // The process that lived through the outage is the one that started: no restart of its own.
    expect(chronos.exited()).toBeUndefined();
  }, 150_000);

  it('a run that ends while the database is down is recorded succeeded once it is back, never interrupted', async ({
    onTestFinished,
  }) => {
    const { server, s } = await startOnPrivateServer('restart-end', onTestFinished);
    const [chronos] = s.replicas as [ReplicaSet['replicas'][0]];
    expect(
      (
        await s.admin(chronos, 'POST', '/api/jobs', {
          id: 'slow',
          schedule: 'every 5s',
          target: { type: 'http', url: `${s.recorder.url}/hang-once/slow` },
        })
      ).status,
    ).toBe(201);
    // The first run is held at its target: it is in progress when the database stops.
    await s.waitFor(
      'the first run to reach its target',
      () => s.recorder.hitsFor('slow').length >= 1,
      30_000,
    );
    const fireAt = Date.parse(s.recorder.hitsFor('slow')[0]!.fireAt);

    const stoppedAt = Date.now();
    await server.stop();
    s.recorder.releaseHung();
    await s.waitFor('the run end refused and retried', () =>
      chronos.logs().some((l) => l.msg === END_WRITE_RETRY_MSG && l['what'] === 'record run end'),
    );
    // Down until the next occurrence's fire is refused too (its end is retried with backoff meanwhile).
    await s.waitFor(
      'a fire refused while the database is down',
      () => s.nas.deliveries().some((d) => d.status === 503 && Date.parse(d.at) >= stoppedAt),
      30_000,
    );
    await server.start();

    await s.waitFor(
      'the run recorded succeeded',
      async () => (await s.runs('slow')).some((r) => r.fire_at === fireAt && r.status === 'succeeded'),
      30_000,
    );
    const runs = (await s.runs('slow')).filter((r) => r.fire_at === fireAt);
    expect(runs.map((r) => r.status)).toEqual(['succeeded']);
    expect(chronos.logsWith('record run end: written once the store was back')).toHaveLength(1);
    expect(chronos.logs().some((l) => String(l.msg).includes('gave up retrying'))).toBe(false);
    expect(chronos.logs().some((l) => l.msg === 'run interrupted by the end of its process')).toBe(false);
    expect(s.recorder.hitsFor('slow').filter((h) => Date.parse(h.fireAt) === fireAt)).toHaveLength(1);
  }, 120_000);
});
