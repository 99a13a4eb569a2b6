import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { removeBundleSnapshot } from '../helpers/e2e.js';
import { freshDatabase } from '../helpers/pg-test.js';
import { type ReplicaSet, type RunSummary, startReplicaSet } from '../helpers/replicas.js';

/*
 * Two Chronos processes (dist/serve.js) on one PostgreSQL database behind a round-robin proxy, the NAS
 * emulator delivering every fire twice (and retrying refusals) to that proxy: docs/deploy-postgres.md,
 * "How the replicas cooperate".
 */

const open: ReplicaSet[] = [];
afterEach(async () => {
  for (const set of open.splice(0)) await set.close();
});
afterAll(removeBundleSnapshot);

async function replicaSet(options: Parameters<typeof startReplicaSet>[0]): Promise<ReplicaSet> {
  const set = await startReplicaSet(options);
  open.push(set);
  return set;
}

/** fire_at → how many runs the history holds for it. */
function runsPerOccurrence(runs: RunSummary[]): Map<number, number> {
  const counts = new Map<number, number>();
  for (const run of runs) counts.set(run.fire_at, (counts.get(run.fire_at) ?? 0) + 1);
  return counts;
}

/**
 * A job every 3 s on two replicas, each delivery duplicated and spread over both: asserts one run per
 * occurrence and returns, per occurrence that ran and per instant provisioned at NAS, how many there were.
 */
async function tickOverTwoReplicas(database: string) {
  // Each occurrence is delivered twice: a cycle of three spreads first deliveries and duplicates over both.
  const s = await replicaSet({
    databaseUrl: await freshDatabase(database),
    faults: { duplicateDelivery: true },
    order: [0, 1, 1],
  });
  const [a, b] = s.replicas as [ReplicaSet['replicas'][0], ReplicaSet['replicas'][0]];
  const created = await s.admin(a, 'POST', '/api/jobs', {
    id: 'tick',
    schedule: 'every 3s',
    target: { type: 'http', url: `${s.recorder.url}/hit/tick` },
  });
  expect(created.status).toBe(201);

  const OCCURRENCES = 5;
  await s.waitFor(
    `${OCCURRENCES} occurrences run`,
    async () =>
      new Set((await s.runs('tick')).filter((r) => r.status === 'succeeded').map((r) => r.fire_at)).size >=
      OCCURRENCES,
    40_000,
  );
  // Each occurrence's duplicate delivery has been answered too (it follows the first within moments).
  const firstFires = () =>
    s.nas.deliveries().filter((d) => d.job_id === 'tick' && !d.duplicate && d.status === 202);
  await s.waitFor('the duplicate of every accepted delivery answered', () => {
    const dups = s.nas.deliveries().filter((d) => d.job_id === 'tick' && d.duplicate);
    return firstFires().every((f) => dups.some((d) => d.fire_at === f.fire_at && d.status !== 0));
  });

  const runs = await s.runs('tick');
  const perOccurrence = runsPerOccurrence(runs);
  expect(
    [...perOccurrence.values()].every((n) => n === 1),
    JSON.stringify([...perOccurrence]),
  ).toBe(true);
  const hits = s.recorder.hitsFor('tick').map((h) => h.fireAt);
  expect(new Set(hits).size).toBe(hits.length);
  // Every duplicate was refused as one, whichever replica it reached.
  for (const d of s.nas.deliveries().filter((x) => x.job_id === 'tick' && x.duplicate && x.status !== 0))
    expect(d.body).toEqual({ status: 'duplicate' });

  // Both replicas answered deliveries, and each accepted some occurrence.
  const fires = s.proxy.routed().filter((r) => r.path === '/api/cron/fire');
  expect(new Set(fires.map((f) => f.backend))).toEqual(new Set([0, 1]));
  const routing = JSON.stringify(fires.map((f) => `${f.backend}:${f.status}`));
  expect(a.logsWith('fire accepted').length, routing).toBeGreaterThan(0);
  expect(b.logsWith('fire accepted').length, routing).toBeGreaterThan(0);

  // Each instant was provisioned at NAS once: the replicas never re-armed (or fought over) one.
  const provisioned = s.nas
    .provisions()
    .filter((p) => p.kind === 'provision' && p.status === 200)
    .map((p) => p.body as { job_id: string; fire_at: string })
    .filter((body) => body.job_id === 'tick')
    .map((body) => Date.parse(body.fire_at));
  const perInstant = new Map<number, number>();
  for (const at of provisioned) perInstant.set(at, (perInstant.get(at) ?? 0) + 1);
  // Per replica, how many instants of the job it provisioned (its 'armed at NAS' steps, logged at debug).
  const armedBy = [a, b].map((r) => r.logsWith('armed at NAS').filter((l) => l['job_id'] === 'tick').length);
  return { perOccurrence, perInstant, armedBy };
}

// The first two tests judge the same run from two sides; it is run once (by whichever test comes first)
// and its figures are shared, which halves the file's longest part.
let ticked: ReturnType<typeof tickOverTwoReplicas> | undefined;
const tickedOverTwoReplicas = () => {
  ticked ??= tickOverTwoReplicas('replicas');
  return ticked;
};

describe('e2e: two replicas on one PostgreSQL database', () => {
  it('runs each occurrence once, with duplicated deliveries spread over both', async () => {
    const { perOccurrence, perInstant } = await tickedOverTwoReplicas();
    // Every occurrence that ran had been armed (by one replica or the other) before it was delivered.
    for (const fireAt of perOccurrence.keys()) expect(perInstant.has(fireAt)).toBe(true);
  }, 120_000);

  // The replicas hand what NAS holds to each other with the arm lease (docs/architecture.md, "Replicas"):
  // neither provisions an instant the other had acknowledged.
  it('arms each next occurrence once', async () => {
    const { perInstant, armedBy } = await tickedOverTwoReplicas();
    expect([...perInstant.entries()].filter(([, n]) => n > 1)).toEqual([]);
    // Both replicas armed instants: the lease changed hands between arms, which is what is tested here.
    expect(
      armedBy.every((n) => n > 0),
      JSON.stringify(armedBy),
    ).toBe(true);
  }, 120_000);

  it('an admin write through one replica is seen through the other at once, and /api/status names each', async () => {
    const s = await replicaSet({ databaseUrl: await freshDatabase('replicas_admin') });
    const [a, b] = s.replicas as [ReplicaSet['replicas'][0], ReplicaSet['replicas'][0]];
    const spec = {
      id: 'report',
      schedule: '0 9 * * *',
      target: { type: 'http', url: `${s.recorder.url}/hit/report` },
    };

    expect((await s.admin(a, 'POST', '/api/jobs', spec)).status).toBe(201);
    expect((await s.admin(b, 'GET', '/api/jobs/report')).body).toMatchObject({
      id: 'report',
      state: 'scheduled',
    });
    expect((await s.admin(b, 'POST', '/api/jobs/report/pause')).status).toBe(200);
    expect((await s.admin(a, 'GET', '/api/jobs/report')).body).toMatchObject({ state: 'paused' });
    expect((await s.admin(a, 'PATCH', '/api/jobs/report', { schedule: '30 9 * * *' })).status).toBe(200);
    expect((await s.admin(b, 'GET', '/api/jobs/report')).body).toMatchObject({ schedule: '30 9 * * *' });
    expect((await s.admin(b, 'DELETE', '/api/jobs/report')).status).toBe(200);
    expect((await s.admin(a, 'GET', '/api/jobs/report')).status).toBe(404);

    const statusA = (await s.admin(a, 'GET', '/api/status')).body['replica'] as {
      pid: number;
      boot_id: string;
    };
    const statusB = (await s.admin(b, 'GET', '/api/status')).body['replica'] as {
      pid: number;
      boot_id: string;
    };
    expect(statusA.pid).toBe(a.pid());
    expect(statusB.pid).toBe(b.pid());
    expect(statusA.boot_id).not.toBe(statusB.boot_id);
  }, 60_000);

  it('kill -9 of the replica running a job: the other records it interrupted, never re-runs it, and the next occurrence fires', async () => {
    const s = await replicaSet({ databaseUrl: await freshDatabase('replicas_kill') });
    const [a] = s.replicas as [ReplicaSet['replicas'][0]];
    // The first call never answers: the run is in flight when its replica is killed.
    expect(
      (
        await s.admin(a, 'POST', '/api/jobs', {
          id: 'slow',
          schedule: 'every 4s',
          target: { type: 'http', url: `${s.recorder.url}/hang-once/slow` },
        })
      ).status,
    ).toBe(201);

    await s.waitFor(
      'the first run to reach its target',
      () => s.recorder.hitsFor('slow').length >= 1,
      20_000,
    );
    const killedFireAt = Date.parse(s.recorder.hitsFor('slow')[0]!.fireAt);
    const runner = s.replicas.find((r) =>
      r.logsWith('fire accepted').some((l) => Date.parse(String(l['fire_at'])) === killedFireAt),
    );
    expect(runner, 'the replica that accepted the hanging occurrence').toBeDefined();
    const survivor = s.replicas.find((r) => r !== runner)!;
    const nextFireAt = killedFireAt + 4_000;
    // Armed before the run started: the schedule survives the kill.
    await s.waitFor('the next occurrence armed', () =>
      s.nas.armed().some((x) => x.job_id === 'slow' && Date.parse(x.fire_at) === nextFireAt),
    );
    expect(Date.now()).toBeLessThan(nextFireAt);
    await runner!.kill('SIGKILL');

    await s.waitFor(
      'the next occurrence to run on the survivor',
      async () => (await s.runs('slow')).some((r) => r.fire_at === nextFireAt && r.status === 'succeeded'),
      30_000,
    );
    await s.waitFor(
      'the killed run recorded interrupted',
      async () =>
        (await s.runs('slow')).some((r) => r.fire_at === killedFireAt && r.status === 'interrupted'),
      30_000,
    );
    const runs = await s.runs('slow');
    expect(runs.filter((r) => r.fire_at === killedFireAt).map((r) => r.status)).toEqual(['interrupted']);
    expect(runs.filter((r) => r.fire_at === nextFireAt).map((r) => r.status)).toEqual(['succeeded']);
    // The killed occurrence reached its target once: nothing ran it again.
    expect(s.recorder.hitsFor('slow').filter((h) => Date.parse(h.fireAt) === killedFireAt)).toHaveLength(1);
    expect(
      survivor.logsWith('fire accepted').some((l) => Date.parse(String(l['fire_at'])) === nextFireAt),
    ).toBe(true);
  }, 120_000);
});
