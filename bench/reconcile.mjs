// Reconcile (docs/performance.md): 10 / 100 / 1,000 / 10,000 jobs against the in-process emulator. Cold: the
// start-up reconcile of a fresh process (NAS list, then one provision per job). Warm: a second
// reconcile with nothing changed, which must make no NAS call.
//
// Usage: npm run build && node bench/reconcile.mjs
//   BENCH_RECONCILE_SIZES=10,100,1000,10000
import { chronosEnv, importInternals, isMain, ms, quietEmulator, table, writeResult } from './lib/common.mjs';
import { removeDir, seedStore, startInProcess } from './lib/in-process.mjs';

const spec = (i) => ({
  id: `job-${i}`,
  schedule: 'every 1h',
  target: { type: 'http', url: 'http://127.0.0.1:9/hook' },
});

async function measure(lib, jobs) {
  const seedStarted = performance.now();
  const dir = await seedStore(lib, jobs, spec);
  const seedMs = performance.now() - seedStarted;
  const emulator = await quietEmulator();
  let running;
  try {
    const started = performance.now();
    running = await startInProcess(chronosEnv(emulator, dir, { LOG_LEVEL: 'silent' }));
    // The start-up reconcile runs after listening; its summary appears when it is done.
    while (running.provider().status().lastReconcile === null) await new Promise((r) => setTimeout(r, 5));
    const wallMs = performance.now() - started;
    const cold = running.provider().status().lastReconcile;
    const coldCalls = emulator.provisions().length;
    const armed = emulator.armed().length;

    const before = emulator.provisions().length;
    const warmStarted = performance.now();
    const warm = await running.provider().reconcile();
    const warmMs = performance.now() - warmStarted;
    const warmCalls = emulator.provisions().length - before;
    return {
      jobs,
      seed_ms: seedMs,
      cold_ms: cold.durationMs,
      cold_wall_ms: wallMs,
      cold_nas_calls: coldCalls,
      armed_at_nas: armed,
      cold_summary: { armed: cold.armed, unchanged: cold.unchanged, failed: cold.failed },
      warm_ms: warmMs,
      warm_nas_calls: warmCalls,
      warm_summary: { armed: warm.armed, unchanged: warm.unchanged, failed: warm.failed },
    };
  } finally {
    await running?.shutdown('bench done');
    await emulator.close();
    await removeDir(dir);
  }
}

export async function run({ log = console.log } = {}) {
  const sizes = (process.env.BENCH_RECONCILE_SIZES ?? '10,100,1000,10000').split(',').map(Number);
  const lib = await importInternals();
  // Loads the lazily imported NAS client once, so the first size does not pay the module load.
  await measure(lib, 1);
  const rows = [];
  for (const jobs of sizes) rows.push(await measure(lib, jobs));
  log('reconcile against the in-process emulator (chronos provider, 8 NAS calls in flight)');
  log(
    table([
      ['jobs', 'cold ms', 'start→done ms', 'NAS calls', 'armed', 'warm ms', 'warm NAS calls'],
      ...rows.map((r) => [
        r.jobs,
        ms(r.cold_ms, 0),
        ms(r.cold_wall_ms, 0),
        r.cold_nas_calls,
        r.armed_at_nas,
        ms(r.warm_ms, 1),
        r.warm_nas_calls,
      ]),
    ]),
  );
  const thousand = rows.find((r) => r.jobs === 1000);
  const checks = {
    thousand_within_2s: thousand ? thousand.cold_ms <= 2000 : null,
    warm_zero_calls: rows.every((r) => r.warm_nas_calls === 0),
    all_armed: rows.every((r) => r.armed_at_nas === r.jobs),
  };
  const pass = checks.thousand_within_2s !== false && checks.warm_zero_calls && checks.all_armed;
  log(
    `targets: 1,000 jobs <= 2 s ${checks.thousand_within_2s ? 'met' : 'NOT met'}; nothing-changed reconcile = 0 NAS calls ` +
      `${checks.warm_zero_calls ? 'met' : 'NOT met'}`,
  );
  const result = {
    benchmark: 'reconcile',
    target: 'cold reconcile of 1,000 jobs <= 2 s; a reconcile with nothing changed makes 0 NAS calls',
    pass,
    checks,
    node: process.version,
    measured_at: new Date().toISOString(),
    rows,
  };
  await writeResult('reconcile', result);
  return result;
}

if (isMain(import.meta)) await run();
