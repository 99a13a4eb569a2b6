// Builtin timer accuracy (docs/performance.md): the in-process provider with the system clock fires jobs whose
// occurrences share the same instants; lateness = handler start − fire_at, p50 / p99 under 20 ms.
//
// Usage: npm run build && node bench/builtin-timer.mjs
//   BENCH_TIMER_TOGETHER=20   jobs due at the same instant; each second of the 10 s cycle has its own group
//   BENCH_TIMER_SECONDS=37    how long to let them fire (the default gives ~540 measured fires with 20 due together)
import { importDist, importInternals, isMain, ms, summarise, table, writeResult } from './lib/common.mjs';
import { removeDir, seedStore, startInProcess } from './lib/in-process.mjs';

export async function run({
  log = console.log,
  together = Number(process.env.BENCH_TIMER_TOGETHER ?? 20),
  seconds = Number(process.env.BENCH_TIMER_SECONDS ?? 37),
} = {}) {
  const lib = await importDist('index.js');
  const internals = await importInternals();
  const handlers = lib.createHandlerRegistry();
  const fires = [];
  handlers.register('probe', ({ fire_at, job }) => {
    fires.push({ job: job.id, fire_at, lateness: Date.now() - fire_at });
  });
  // Ten groups of `together` jobs, every 10 s, group g anchored g seconds after a whole second:
  // each second one group is due at exactly the same instant.
  const jobs = together * 10;
  const base = Math.ceil(Date.now() / 1000) * 1000 + 1000;
  const dir = await seedStore(internals, jobs, (i) => ({
    id: `timer-${i}`,
    schedule: `every 10s`,
    target: { type: 'handler', name: 'probe' },
  }));
  // buildJob anchors at creation; re-anchor each group on its own whole second.
  const store = await internals.FileStore.open({ dir });
  for (let i = 0; i < jobs; i++) {
    const anchor = base + (i % 10) * 1000;
    await store.updateJob(`timer-${i}`, (job) => ({
      ...job,
      anchor_at: anchor,
      next_run_at: anchor + 10_000,
    }));
  }
  await store.close();
  const running = await startInProcess({ CHRONOS_PROVIDER: 'builtin', CHRONOS_DATA_DIR: dir }, { handlers });
  try {
    // Fires due before the provider's first reconcile would be misfire catch-ups, not timer fires.
    const startAt = Date.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    await running.shutdown('bench done');
    const measured = fires.filter((f) => f.fire_at >= startAt + 1000);
    const lateness = summarise(measured.map((f) => f.lateness));
    const byInstant = new Map();
    for (const f of measured)
      byInstant.set(f.fire_at, Math.min(byInstant.get(f.fire_at) ?? Infinity, f.lateness));
    const instants = byInstant.size;
    // The first run of each instant shows the timer itself; the rest add the queue of claims before them.
    const first = summarise([...byInstant.values()]);
    log(
      `builtin timer lateness (ms): ${jobs} jobs, ${together} due at each whole second, ${instants} instants, system clock`,
    );
    log(
      table([
        ['runs', 'fires', 'p50', 'p90', 'p99', 'max'],
        ['all', lateness.n, ms(lateness.median), ms(lateness.p90), ms(lateness.p99), ms(lateness.max)],
        ['first of instant', first.n, ms(first.median), ms(first.p90), ms(first.p99), ms(first.max)],
      ]),
    );
    const pass = lateness.n >= 500 && lateness.p99 <= 20;
    log(`target (p99 <= 20 ms over >= 500 fires): ${pass ? 'met' : 'NOT met'}`);
    const result = {
      benchmark: 'builtin-timer',
      target: 'lateness p99 <= 20 ms over >= 500 fires, many due at the same instant',
      pass,
      node: process.version,
      measured_at: new Date().toISOString(),
      jobs,
      due_together: together,
      instants,
      lateness_ms: lateness,
      first_of_instant_lateness_ms: first,
    };
    await writeResult('builtin-timer', result);
    return result;
  } finally {
    await running.shutdown('bench done');
    await removeDir(dir);
  }
}

if (isMain(import.meta)) await run();
