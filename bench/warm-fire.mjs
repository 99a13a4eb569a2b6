// Warm fire (docs/performance.md): one running Chronos; the latency a fire adds over /healthz on the same
// keep-alive connection (verify + durable claim + 202), then duplicate deliveries per second with
// 32 in flight, and a check that no duplicate started a run.
//
// Usage: npm run build && node bench/warm-fire.mjs
//   BENCH_WARM_FIRES=2000        accepted fires (one per job)
//   BENCH_DUPLICATE_SECONDS=3    duration of the duplicate phase
import { Pool } from 'undici';
import { isMain, ms, summarise, table, writeResult } from './lib/common.mjs';
import { startChronosServer } from './lib/server-fixture.mjs';

const FIRE_PATH = '/api/cron/fire';

async function send(pool, { method, path, body, headers }) {
  const started = performance.now();
  const res = await pool.request({ method, path, body, headers });
  const text = await res.body.text();
  return { status: res.statusCode, text, ms: performance.now() - started };
}

export async function run({
  log = console.log,
  fires = Number(process.env.BENCH_WARM_FIRES ?? 2000),
  duplicateSeconds = Number(process.env.BENCH_DUPLICATE_SECONDS ?? 3),
  concurrency = 32,
} = {}) {
  const server = await startChronosServer({ jobs: fires });
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
    const perSecond = duplicates / elapsed;
    // A run caused by a duplicate would log "job ran" within milliseconds (its target answers at once);
    // give it a generous window.
    await new Promise((r) => setTimeout(r, 500));
    const extraRuns = server.runs() - runsBefore;

    log(
      `warm fire (ms), ${fires} fires on one keep-alive connection, each after a /healthz on the same connection`,
    );
    log(
      table([
        ['request', 'median', 'p90', 'p99', 'max'],
        ['GET /healthz', ms(healthz.median, 3), ms(healthz.p90, 3), ms(healthz.p99, 3), ms(healthz.max, 3)],
        ['POST fire (202)', ms(fire.median, 3), ms(fire.p90, 3), ms(fire.p99, 3), ms(fire.max, 3)],
        ['overhead', ms(overhead.median, 3), '', ms(overhead.p99, 3), ''],
      ]),
    );
    log(
      `duplicates: ${duplicates} in ${elapsed.toFixed(2)} s with ${concurrency} in flight = ${Math.round(perSecond)}/s; ` +
        `runs started by duplicates: ${extraRuns}` +
        (others.size ? `; other answers: ${JSON.stringify(Object.fromEntries(others))}` : ''),
    );
    const pass = {
      overhead: overhead.median <= 2,
      duplicates: perSecond >= 5000,
      no_duplicate_runs: extraRuns === 0,
    };
    log(
      `targets: overhead median <= 2 ms ${pass.overhead ? 'met' : 'NOT met'}; duplicates >= 5000/s ${pass.duplicates ? 'met' : 'NOT met'}; ` +
        `no run from a duplicate ${pass.no_duplicate_runs ? 'met' : 'NOT met'}`,
    );
    const result = {
      benchmark: 'warm-fire',
      target: 'fire overhead over /healthz <= 2 ms median; duplicates >= 5,000/s; no duplicate starts a run',
      pass: pass.overhead && pass.duplicates && pass.no_duplicate_runs,
      checks: pass,
      node: process.version,
      measured_at: new Date().toISOString(),
      fires,
      healthz_ms: healthz,
      fire_ms: fire,
      overhead_ms: overhead,
      duplicates: {
        count: duplicates,
        seconds: elapsed,
        per_second: perSecond,
        concurrency,
        other_answers: Object.fromEntries(others),
        runs_started: extraRuns,
      },
    };
    await writeResult('warm-fire', result);
    return result;
  } finally {
    await serial.close();
    await parallel.close();
    await server.close();
  }
}

if (isMain(import.meta)) await run();
