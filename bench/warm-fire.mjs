// Warm fire: one running Chronos; the latency a fire adds over /healthz on the same keep-alive
// connection (verify + durable claim + 202), then duplicate deliveries per second with 32 in flight (after
// one untimed duplicate per job), and a check that no duplicate started a run. The file store and
// PostgreSQL, one after the other.
//
// Usage: npm run build && node bench/warm-fire.mjs [--store file|postgres]  (default: both)
//   BENCH_WARM_FIRES=1000        accepted fires (one per job)
//   BENCH_DUPLICATE_SECONDS=10   duration of the timed duplicate phase (per build); 3 s until 2026-11-28
//                                evening, a window in which one-off work after the first deliveries
//                                (docs/performance.md) weighed more than it does on a steady stream
//   BENCH_COMPARE_DIST=DIR       also measure DIR/serve.js (another build, e.g. main's), interleaved with this build fire by fire; prints this / compare
//   BENCH_COMPARE_RUN_MSG='run finished'   for a compare build older than the 'job ran' line
//   BENCH_WARM_LOG_LEVEL=info    the servers' LOG_LEVEL: info (production's; the end of each fire's reconcile
//                                is read from GET /api/status) or debug (read from its debug line, as before)
//   BENCH_WARM_LEDGER_ROWS=0     settled rows each job holds before its fire (up to the retention, 200): a job
//                                that has run that often, read by every fire and duplicate
//   BENCH_COMPARE_LOG_LEVEL=debug  the compare build's LOG_LEVEL (default: BENCH_WARM_LOG_LEVEL); with
//                                BENCH_COMPARE_DIST=<a copy of this dist/> it weighs the log level alone
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Pool } from 'undici';
import { isMain, ms, summarise, table, writeResult } from './lib/common.mjs';
import { benchPostgres } from './lib/postgres.mjs';
import { startChronosServer } from './lib/server-fixture.mjs';

const FIRE_PATH = '/api/cron/fire';

/**
 * CPU time (ms, user + system) the process has used, from /proc (Linux): a duplicate's CPU cost moves far
 * less with the machine's load than its wall-clock rate does. Undefined where /proc is missing.
 */
async function cpuMs(pid) {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command (which may hold spaces) start after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}
/** USER_HZ: 100 on every Linux this runs on (getconf CLK_TCK). */
const CLOCK_TICKS_PER_SECOND = 100;

async function send(pool, { method, path, body, headers }) {
  const started = performance.now();
  const res = await pool.request({ method, path, body, headers });
  const text = await res.body.text();
  return { status: res.statusCode, text, ms: performance.now() - started };
}

/** A build to measure: this tree's dist/ (the candidate) or another one (BENCH_COMPARE_DIST). */
function builds(logLevel) {
  const compare = process.env.BENCH_COMPARE_DIST;
  return [
    { build: 'this', dist: undefined, logLevel },
    ...(compare
      ? [
          {
            build: 'compare',
            dist: pathToFileURL(`${resolve(compare)}/`),
            runMessage: process.env.BENCH_COMPARE_RUN_MSG,
            logLevel: process.env.BENCH_COMPARE_LOG_LEVEL ?? logLevel,
          },
        ]
      : []),
  ];
}

/**
 * One store's figures for each build: fire overhead over /healthz, duplicates per second, runs started by
 * duplicates. With two builds, both servers run at once and take turns fire by fire (and in half-second
 * slices of the duplicate phase), so load on a shared machine hits them alike and their ratio means
 * something even when the absolute figures do not.
 */
async function measure({ store, fires, duplicateSeconds, concurrency, logLevel, ledgerRows }) {
  const subjects = [];
  try {
    for (const { build, dist, runMessage, logLevel: level } of builds(logLevel)) {
      if (level !== 'info' && level !== 'debug')
        throw new Error('a LOG_LEVEL for warm-fire is info or debug');
      const server = await startChronosServer({
        jobs: fires,
        store,
        dist,
        runMessage,
        env: { LOG_LEVEL: level },
        adminApi: level !== 'debug',
        ledgerRows,
      });
      subjects.push({
        build,
        logLevel: level,
        server,
        serial: new Pool(server.url, { connections: 1 }),
        parallel: new Pool(server.url, { connections: concurrency }),
        fireMs: [],
        healthMs: [],
        duplicates: 0,
        elapsed: 0,
        cpuMs: 0,
        others: new Map(),
      });
    }
    const health = { method: 'GET', path: '/healthz' };
    for (const s of subjects) for (let i = 0; i < 50; i++) await send(s.serial, health);
    const turns = (i) => (i % 2 === 0 ? subjects : [...subjects].reverse());

    // Alternate healthz and fire on one connection so drift hits both alike. Each fire goes into an idle
    // process: sent once the previous fire's run has ended AND the reconcile pass every fire asks for
    // after its run (debounced, O(jobs)) is done. The figure is what one fire costs a warm, otherwise idle
    // process (verify + durable claim + 202), not how long it waits behind the previous fire's work.
    for (let i = 0; i < fires; i++) {
      for (const s of turns(i)) {
        await s.server.freshToken(i);
        s.healthMs.push((await send(s.serial, health)).ms);
        const res = await send(s.serial, { method: 'POST', path: FIRE_PATH, ...s.server.fire(i) });
        if (res.status !== 202) throw new Error(`${s.build}: fire ${i} answered ${res.status}: ${res.text}`);
        s.fireMs.push(res.ms);
        await s.server.waitUntil(() => s.server.runs() > i, 10_000, `run ${i} to finish`, 1);
        // At debug a pass that changed nothing logs a line; at info only /api/status tells (polled more
        // slowly: each poll reads every job, and would compete with the pass it waits for).
        if (s.logLevel === 'debug')
          await s.server.waitUntil(
            s.server.reconciledSinceLastRun,
            10_000,
            `the reconcile after run ${i}`,
            1,
          );
        else
          await s.server.waitUntil(
            s.server.reconciledSinceLastRunByStatus,
            10_000,
            `the reconcile after run ${i}`,
            10,
          );
      }
    }
    for (const s of subjects) {
      s.runsBefore = s.server.runs();
      await s.server.mintTokens();
      // One untimed duplicate per job first: the timed phase measures a warm process answering duplicates,
      // not the first signature check of each token just minted (a relay re-sending a delivery re-sends its
      // token, verified when it was first delivered) nor the JIT compiling the duplicate path.
      let next = 0;
      const warmer = async () => {
        for (let i = next++; i < fires; i = next++) {
          const res = await s.parallel.request({ method: 'POST', path: FIRE_PATH, ...s.server.fire(i) });
          const text = await res.body.text();
          if (res.statusCode !== 200 || !text.includes('"duplicate"'))
            throw new Error(`${s.build}: warm-up duplicate of fire ${i} answered ${res.statusCode}: ${text}`);
        }
      };
      await Promise.all(Array.from({ length: concurrency }, warmer));
    }

    // Every accepted fire re-sent, 32 in flight; with two builds, in alternating half-second slices.
    const slice = subjects.length > 1 ? 0.5 : duplicateSeconds;
    for (let round = 0; round * slice < duplicateSeconds; round++) {
      for (const s of turns(round)) {
        const deadline = performance.now() + slice * 1000;
        const cpuBefore = await cpuMs(s.server.pid);
        const started = performance.now();
        let next = 0;
        const worker = async () => {
          while (performance.now() < deadline) {
            const i = next++ % fires;
            const res = await s.parallel.request({ method: 'POST', path: FIRE_PATH, ...s.server.fire(i) });
            const text = await res.body.text();
            if (res.statusCode === 200 && text.includes('"duplicate"')) s.duplicates += 1;
            else
              s.others.set(`${res.statusCode} ${text}`, (s.others.get(`${res.statusCode} ${text}`) ?? 0) + 1);
          }
        };
        await Promise.all(Array.from({ length: concurrency }, worker));
        s.elapsed += (performance.now() - started) / 1000;
        s.cpuMs += ((await cpuMs(s.server.pid)) ?? Number.NaN) - (cpuBefore ?? Number.NaN);
      }
    }
    // A run caused by a duplicate would log "job ran" within milliseconds (its target answers at once);
    // give it a generous window.
    await new Promise((r) => setTimeout(r, 500));
    return subjects.map((s) => {
      const fire = summarise(s.fireMs);
      const healthz = summarise(s.healthMs);
      return {
        store,
        build: s.build,
        log_level: s.logLevel,
        healthz_ms: healthz,
        fire_ms: fire,
        overhead_ms: { median: fire.median - healthz.median, p99: fire.p99 - healthz.p99 },
        duplicates: {
          count: s.duplicates,
          seconds: s.elapsed,
          per_second: s.duplicates / s.elapsed,
          // Server CPU per duplicate answered (NaN without /proc); includes the NAS lists and reconciles the
          // deliveries cause, as in production.
          cpu_ms_per_duplicate: s.cpuMs / s.duplicates,
          concurrency,
          other_answers: Object.fromEntries(s.others),
          runs_started: s.server.runs() - s.runsBefore,
        },
      };
    });
  } finally {
    for (const s of subjects) {
      await s.serial.close();
      await s.parallel.close();
      await s.server.close();
    }
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
  fires = Number(process.env.BENCH_WARM_FIRES ?? 1000),
  duplicateSeconds = Number(process.env.BENCH_DUPLICATE_SECONDS ?? 10),
  concurrency = 32,
  stores = storesToMeasure(),
  logLevel = process.env.BENCH_WARM_LOG_LEVEL ?? 'info',
  ledgerRows = Number(process.env.BENCH_WARM_LEDGER_ROWS ?? 0),
} = {}) {
  if (logLevel !== 'info' && logLevel !== 'debug')
    throw new Error('BENCH_WARM_LOG_LEVEL must be info or debug');
  const measured = [];
  for (const store of stores)
    measured.push(...(await measure({ store, fires, duplicateSeconds, concurrency, logLevel, ledgerRows })));
  if (stores.includes('postgres')) await (await benchPostgres()).close();

  const label = (m) => (m.build === 'this' ? m.store : `${m.store} (compare)`);
  log(
    `warm fire (ms), ${fires} fires on one keep-alive connection, each after a /healthz on the same connection, ` +
      "each into an idle process (the previous fire's run and reconcile done); " +
      `servers at LOG_LEVEL=${logLevel}; ${ledgerRows} settled ledger rows per job before its fire`,
  );
  const rows = [['store', 'request', 'median', 'p90', 'p99', 'max']];
  for (const m of measured) {
    const { healthz_ms: h, fire_ms: f, overhead_ms: o } = m;
    rows.push([label(m), 'GET /healthz', ms(h.median, 3), ms(h.p90, 3), ms(h.p99, 3), ms(h.max, 3)]);
    rows.push([label(m), 'POST fire (202)', ms(f.median, 3), ms(f.p90, 3), ms(f.p99, 3), ms(f.max, 3)]);
    rows.push([label(m), 'overhead', ms(o.median, 3), '', ms(o.p99, 3), '']);
  }
  log(table(rows));
  const file = measured.find((m) => m.store === 'file' && m.build === 'this');
  const checks = {};
  const ratios = {};
  for (const m of measured) {
    const d = m.duplicates;
    const ratio =
      file && m !== file && m.build === 'this'
        ? ` (${(d.per_second / file.duplicates.per_second).toFixed(2)}x the file store)`
        : '';
    log(
      `${label(m)}: duplicates ${d.count} in ${d.seconds.toFixed(2)} s with ${d.concurrency} in flight = ${Math.round(d.per_second)}/s${ratio}, ` +
        `server CPU ${d.cpu_ms_per_duplicate.toFixed(3)} ms per duplicate; ` +
        `runs started by duplicates: ${d.runs_started}` +
        (Object.keys(d.other_answers).length ? `; other answers: ${JSON.stringify(d.other_answers)}` : ''),
    );
    if (m.build !== 'this') continue;
    if (file && m !== file)
      log(
        `${m.store}: fire overhead median ${(m.overhead_ms.median / file.overhead_ms.median).toFixed(2)}x the file store's`,
      );
    const compare = measured.find((c) => c.store === m.store && c.build === 'compare');
    if (compare) {
      ratios[m.store] = {
        fire_median: m.fire_ms.median / compare.fire_ms.median,
        overhead_median: m.overhead_ms.median / compare.overhead_ms.median,
        duplicates_per_second: d.per_second / compare.duplicates.per_second,
        cpu_per_duplicate: d.cpu_ms_per_duplicate / compare.duplicates.cpu_ms_per_duplicate,
      };
      const r = ratios[m.store];
      log(
        `${m.store}: this / compare (${process.env.BENCH_COMPARE_DIST}): fire median ${r.fire_median.toFixed(2)}x, ` +
          `overhead median ${r.overhead_median.toFixed(2)}x, duplicates/s ${r.duplicates_per_second.toFixed(2)}x, ` +
          `server CPU per duplicate ${r.cpu_per_duplicate.toFixed(2)}x`,
      );
    }
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
    log_level: logLevel,
    ledger_rows: ledgerRows,
    ...(process.env.BENCH_COMPARE_DIST ? { compare_dist: process.env.BENCH_COMPARE_DIST, ratios } : {}),
    stores: measured,
  };
  await writeResult('warm-fire', result);
  return result;
}

if (isMain(import.meta)) await run();
