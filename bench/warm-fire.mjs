// Warm fire: one running Chronos; the latency a fire adds over /healthz on the same keep-alive
// connection (verify + durable claim + 202), then duplicate deliveries per second with 32 in flight,
// and a check that no duplicate started a run. The file store and PostgreSQL, one after the other.
//
// Usage: npm run build && node bench/warm-fire.mjs [--store file|postgres]  (default: both)
//   BENCH_WARM_FIRES=2000        accepted fires (one per job)
//   BENCH_DUPLICATE_SECONDS=3    duration of the duplicate phase
import { Pool } from 'undici';
import { isMain, ms, summarise, table, writeResult } from './lib/common.mjs';
import { benchPostgres } from './lib/postgres.mjs';
import { startChronosServer } from './lib/server-fixture.mjs';

const FIRE_PATH = '/api/cron/fire';

async function send(pool, { method, path, body, headers }) {
  const started = performance.now();
  const res = await pool.request({ method, path, body, headers });
  const text = await res.body.text();
  return { status: res.statusCode, text, ms: performance.now() - started };
}

/** One store's figures: fire overhead over /healthz, duplicates per second, runs started by duplicates. */
async function measure({ store, fires, duplicateSeconds, concurrency }) {
  const server = await startChronosServer({ jobs: fires, store });
  const serial = new Pool(server.url, { connections: 1 });
  const parallel = new Pool(server.url, { connections: concurrency });
  try {
    const health = { method: 'GET', path: '/healthz' };
    for (let i = 0; i < 50; i++) await send(serial, health);

    // Alternate healthz and fire on one connection so drift hits both alike. Each fire is sent once the
    // previous one's run has finished: the figure is what one fire costs a warm, otherwise idle process
    // (verify + durable claim + 202), not how long it queues behind the previous fire's run bookkeeping.
    const fireMs = [];
    const healthMs = [];
    for (let i = 0; i < fires; i++) {
      await server.freshToken(i);
      healthMs.push((await send(serial, health)).ms);
      const res = await send(serial, { method: 'POST', path: FIRE_PATH, ...server.fire(i) });
      if (res.status !== 202) throw new Error(`fire ${i} answered ${res.status}: ${res.text}`);
      fireMs.push(res.ms);
      await server.waitUntil(() => server.runs() > i, 10_000, `run ${i} to finish`, 1);
    }
    const fire = summarise(fireMs);
    const healthz = summarise(healthMs);
    const overhead = { median: fire.median - healthz.median, p99: fire.p99 - healthz.p99 };

    // Let the accepted fires' runs end before counting what duplicates might add.
    await server.waitUntil(() => server.runs() >= fires, 60_000, `${fires} runs to end`);
    const runsBefore = server.runs();
    await server.mintTokens();

    let duplicates = 0;
    const others = new Map();
    const deadline = performance.now() + duplicateSeconds * 1000;
    const started = performance.now();
    let next = 0;
    const worker = async () => {
      while (performance.now() < deadline) {
        const i = next++ % fires;
        const res = await parallel.request({ method: 'POST', path: FIRE_PATH, ...server.fire(i) });
        const text = await res.body.text();
        if (res.statusCode === 200 && text.includes('"duplicate"')) duplicates += 1;
        else others.set(`${res.statusCode} ${text}`, (others.get(`${res.statusCode} ${text}`) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const elapsed = (performance.now() - started) / 1000;
    // A run caused by a duplicate would log "job ran" within milliseconds (its target answers at once);
    // give it a generous window.
    await new Promise((r) => setTimeout(r, 500));
    return {
      store,
      healthz_ms: healthz,
      fire_ms: fire,
      overhead_ms: overhead,
      duplicates: {
        count: duplicates,
        seconds: elapsed,
        per_second: duplicates / elapsed,
        concurrency,
        other_answers: Object.fromEntries(others),
        runs_started: server.runs() - runsBefore,
      },
    };
  } finally {
    await serial.close();
    await parallel.close();
    await server.close();
  }
}

/** Targets per store: the file store's own, and PostgreSQL's (a network round trip per claim). */
const TARGETS = {
  file: { overheadMs: 2, duplicatesPerSecond: 5000 },
  postgres: { overheadMs: 3, duplicatesPerSecond: 3000 },
};

/** `--store file|postgres` (or BENCH_STORE) measures one store; the default is both, side by side. */
function storesToMeasure(argv = process.argv) {
  const at = argv.indexOf('--store');
  const chosen = at >= 0 ? argv[at + 1] : process.env.BENCH_STORE;
  if (chosen === undefined || chosen === 'both') return ['file', 'postgres'];
  if (chosen !== 'file' && chosen !== 'postgres') throw new Error('--store must be file, postgres or both');
  return [chosen];
}

export async function run({
  log = console.log,
  fires = Number(process.env.BENCH_WARM_FIRES ?? 2000),
  duplicateSeconds = Number(process.env.BENCH_DUPLICATE_SECONDS ?? 3),
  concurrency = 32,
  stores = storesToMeasure(),
} = {}) {
  const measured = [];
  for (const store of stores) measured.push(await measure({ store, fires, duplicateSeconds, concurrency }));
  if (stores.includes('postgres')) await (await benchPostgres()).close();

  log(
    `warm fire (ms), ${fires} fires on one keep-alive connection, each after a /healthz on the same connection`,
  );
  const rows = [['store', 'request', 'median', 'p90', 'p99', 'max']];
  for (const m of measured) {
    const { healthz_ms: h, fire_ms: f, overhead_ms: o } = m;
    rows.push([m.store, 'GET /healthz', ms(h.median, 3), ms(h.p90, 3), ms(h.p99, 3), ms(h.max, 3)]);
    rows.push([m.store, 'POST fire (202)', ms(f.median, 3), ms(f.p90, 3), ms(f.p99, 3), ms(f.max, 3)]);
    rows.push([m.store, 'overhead', ms(o.median, 3), '', ms(o.p99, 3), '']);
  }
  log(table(rows));
  const file = measured.find((m) => m.store === 'file');
  const checks = {};
  for (const m of measured) {
    const d = m.duplicates;
    const ratio =
      file && m !== file
        ? ` (${(d.per_second / file.duplicates.per_second).toFixed(2)}x the file store)`
        : '';
    log(
      `${m.store}: duplicates ${d.count} in ${d.seconds.toFixed(2)} s with ${d.concurrency} in flight = ${Math.round(d.per_second)}/s${ratio}; ` +
        `runs started by duplicates: ${d.runs_started}` +
        (Object.keys(d.other_answers).length ? `; other answers: ${JSON.stringify(d.other_answers)}` : ''),
    );
    if (file && m !== file)
      log(
        `${m.store}: fire overhead median ${(m.overhead_ms.median / file.overhead_ms.median).toFixed(2)}x the file store's`,
      );
    const target = TARGETS[m.store];
    checks[`${m.store}_overhead`] = m.overhead_ms.median <= target.overheadMs;
    checks[`${m.store}_duplicates`] = d.per_second >= target.duplicatesPerSecond;
    checks[`${m.store}_no_duplicate_runs`] = d.runs_started === 0;
  }
  log(
    `targets (file: overhead <= 2 ms, >= 5000 duplicates/s; postgres: <= 3 ms, >= 3000/s; no run from a duplicate): ${Object.entries(
      checks,
    )
      .map(([name, ok]) => `${name} ${ok ? 'met' : 'NOT met'}`)
      .join('; ')}`,
  );
  const result = {
    benchmark: 'warm-fire',
    target:
      'fire overhead over /healthz <= 2 ms median (PostgreSQL: 3 ms); duplicates >= 5,000/s (PostgreSQL: 3,000/s); no duplicate starts a run',
    pass: Object.values(checks).every(Boolean),
    checks,
    node: process.version,
    measured_at: new Date().toISOString(),
    fires,
    stores: measured,
  };
  await writeResult('warm-fire', result);
  return result;
}

if (isMain(import.meta)) await run();
