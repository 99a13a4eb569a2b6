// Claim latency against job count (at 10,000 jobs within 2x of 10 jobs), for the file store and PostgreSQL
// side by side in the same run. A claim rewrites only its own job's file (or rows), so its cost should
// not depend on how many jobs exist. PostgreSQL target: median <= 2 ms on loopback, flat in job count.
// Usage: npm run build && node bench/claim-scaling.mjs [--store file|postgres]  (default: both)
//   BENCH_PG_LOCKED=1  also measures PostgreSQL claims that ignore the lock-free read as a basis (every claim
//                      takes the row-lock transaction, as before the compare-and-set), interleaved, as the
//                      same-run baseline of that change
//   BENCH_COMPARE_SRC=DIR  also measures the PostgresStore of another checkout's src/ (e.g. main's, from
//                      `git archive`), interleaved, as `pg-compare`: this store / that store in the same run
//   BENCH_CLAIM_SETTLE=0   leaves every claim `claimed` (as before 2026-11-28 evening); by default each claim's
//                      row is settled `finished` right after it (not timed), as its run's end would, so a job's
//                      ledger holds settled rows up to the retention, as in production
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { importInternals } from './lib/common.mjs';
import { benchPostgres, postgresModules, postgresStoreOf } from './lib/postgres.mjs';

const SIZES = [10, 1_000, 10_000];
const CLAIMS = 400;
const WARMUP = 30;
const T0 = Date.parse('2026-01-01T00:00:00Z');

function makeJob(id) {
  return {
    id,
    name: id,
    schedule: 'every 1m',
    timezone: 'UTC',
    target: { type: 'http', url: 'https://example.com/hook', method: 'POST', headers: {} },
    enabled: true,
    state: 'scheduled',
    repeat: { times: null, completed: 0 },
    retry: null,
    concurrency: 'forbid',
    misfire: { policy: 'run_once', grace_seconds: 300 },
    timeout_seconds: 600,
    anchor_at: T0,
    next_run_at: T0 + 60_000,
    retry_at: null,
    retry_attempt: 0,
    last_run_at: null,
    last_status: null,
    last_error: null,
    failure_streak: 0,
    source: 'api',
    created_at: T0,
    updated_at: T0,
  };
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Deterministic job picks so every size sees the same access pattern. */
function picker(n, seed = 12345) {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x % n;
  };
}

async function setUp(lib, kind, n) {
  if (kind === 'postgres' || kind === 'pg-locked' || kind === 'pg-compare') {
    const pg = await benchPostgres();
    const PostgresStore =
      kind === 'pg-compare'
        ? await postgresStoreOf(process.env.BENCH_COMPARE_SRC)
        : (await postgresModules()).PostgresStore;
    const opened = await PostgresStore.open({ url: await pg.database(`claim_${n}`) });
    const started = performance.now();
    for (let i = 0; i < n; i++) await opened.createJob(makeJob(`job-${i}`));
    let store = opened;
    if (kind === 'pg-locked') {
      // The same store with the claim's basis dropped: every claim decides under the row lock.
      store = Object.create(opened);
      store.transact = (id, fn, options) => opened.transact(id, fn, { ...options, basis: undefined });
      store.close = () => opened.close();
    }
    return { kind, n, store, setupMs: performance.now() - started, pick: picker(n), samples: [] };
  }
  const dir = await mkdtemp(join(tmpdir(), `chronos-bench-claim-${n}-`));
  const store = await lib.FileStore.open({ dir });
  const started = performance.now();
  for (let i = 0; i < n; i++) await store.createJob(makeJob(`job-${i}`));
  return { kind, n, dir, store, setupMs: performance.now() - started, pick: picker(n), samples: [] };
}

async function claimOnce(lib, subject, owner, i) {
  const jobId = `job-${subject.pick()}`;
  const fireAt = T0 + (i + 1) * 60_000;
  const started = performance.now();
  const result = await lib.claimOccurrence(subject.store, {
    job_id: jobId,
    fire_at: fireAt,
    run_id: `run-${i}`,
    trigger: 'nas',
    owner,
    now: Date.now(),
    ttl_ms: 600_000,
    advance: (job) => ({ ...job, next_run_at: fireAt + 60_000 }),
  });
  const elapsed = performance.now() - started;
  if (result.outcome !== 'claimed') throw new Error(`claim ${jobId}@${fireAt}: ${result.outcome}`);
  if (process.env.BENCH_CLAIM_SETTLE !== '0') {
    await subject.store.transact(jobId, (view) => {
      const row = view.entry(fireAt);
      return row ? { ledger: [{ ...row, status: 'finished' }], result: undefined } : { result: undefined };
    });
  }
  return elapsed;
}

/**
 * All sizes of every store are set up first, then claimed round-robin (one claim on each per round), so
 * disk and CPU drift on a shared machine hits every size and store alike instead of whichever ran last.
 */
async function measureAll(lib, kinds) {
  const subjects = [];
  try {
    for (const kind of kinds) for (const n of SIZES) subjects.push(await setUp(lib, kind, n));
    const owner = lib.currentOwner();
    for (let i = 0; i < WARMUP + CLAIMS; i++) {
      for (const subject of subjects) {
        const elapsed = await claimOnce(lib, subject, owner, i);
        if (i >= WARMUP) subject.samples.push(elapsed);
      }
    }
    return subjects.map(({ kind, n, setupMs, samples }) => {
      samples.sort((a, b) => a - b);
      return {
        store: kind,
        jobs: n,
        claims: samples.length,
        setup_ms: Math.round(setupMs),
        median_ms: percentile(samples, 50),
        p90_ms: percentile(samples, 90),
        p99_ms: percentile(samples, 99),
      };
    });
  } finally {
    for (const { store, dir } of subjects) {
      await store.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    }
  }
}

/** `--store file|postgres` (or BENCH_STORE) measures one store; the default is both, side by side. */
function storesToMeasure(argv = process.argv) {
  const at = argv.indexOf('--store');
  const chosen = at >= 0 ? argv[at + 1] : process.env.BENCH_STORE;
  if (chosen === undefined || chosen === 'both') return ['file', 'postgres'];
  if (chosen !== 'file' && chosen !== 'postgres') throw new Error(`--store must be file, postgres or both`);
  return [chosen];
}

export async function run({ log = console.log } = {}) {
  // CHRONOS_BENCH_ENTRY: another build to compare (a module exporting the same three names).
  const entry = process.env.CHRONOS_BENCH_ENTRY;
  const lib = entry ? await import(entry) : await importInternals();
  if (!lib.FileStore || !lib.claimOccurrence || !lib.currentOwner) {
    throw new Error(`${entry} must export FileStore, claimOccurrence and currentOwner`);
  }
  const kinds = storesToMeasure();
  if (kinds.includes('postgres') && process.env.BENCH_PG_LOCKED === '1') kinds.push('pg-locked');
  if (kinds.includes('postgres') && process.env.BENCH_COMPARE_SRC) kinds.push('pg-compare');
  const rows = await measureAll(lib, kinds);
  for (const row of rows) {
    const base = rows.find((r) => r.store === row.store && r.jobs === SIZES[0]);
    row.median_ratio_to_10 = row.median_ms / base.median_ms;
    const file = rows.find((r) => r.store === 'file' && r.jobs === row.jobs);
    if (file) row.median_ratio_to_file = row.median_ms / file.median_ms;
    const locked = rows.find((r) => r.store === 'pg-locked' && r.jobs === row.jobs);
    if (locked && row.store === 'postgres') row.median_ratio_to_pg_locked = row.median_ms / locked.median_ms;
    const compare = rows.find((r) => r.store === 'pg-compare' && r.jobs === row.jobs);
    if (compare && row.store === 'postgres')
      row.median_ratio_to_pg_compare = row.median_ms / compare.median_ms;
  }
  const fmt = (ms) => ms.toFixed(3).padStart(8);
  log('claim latency (ms), one claim at a time on random jobs, sizes and stores interleaved');
  log('store        jobs  claims   median      p90      p99  median/median@10  median/file');
  for (const r of rows) {
    log(
      `${r.store.padEnd(8)} ${String(r.jobs).padStart(8)} ${String(r.claims).padStart(7)} ${fmt(r.median_ms)} ${fmt(r.p90_ms)} ${fmt(r.p99_ms)}  ${r.median_ratio_to_10.toFixed(2).padStart(15)}x  ${(r.median_ratio_to_file ?? 1).toFixed(2).padStart(10)}x`,
    );
  }
  for (const r of rows.filter((row) => row.median_ratio_to_pg_locked !== undefined))
    log(
      `postgres at ${r.jobs} jobs: median ${r.median_ratio_to_pg_locked.toFixed(2)}x the row-lock-only claim's (pg-locked)`,
    );
  for (const r of rows.filter((row) => row.median_ratio_to_pg_compare !== undefined))
    log(
      `postgres at ${r.jobs} jobs: median ${r.median_ratio_to_pg_compare.toFixed(2)}x pg-compare's (${process.env.BENCH_COMPARE_SRC})`,
    );
  const checks = {};
  for (const kind of kinds.filter((k) => k !== 'pg-locked' && k !== 'pg-compare')) {
    const last = rows.find((r) => r.store === kind && r.jobs === SIZES.at(-1));
    checks[`${kind}_flat`] = last.median_ratio_to_10 <= 2;
  }
  if (kinds.includes('postgres'))
    checks.postgres_median_2ms = rows.filter((r) => r.store === 'postgres').every((r) => r.median_ms <= 2);
  const result = {
    benchmark: 'claim-scaling',
    target:
      'median claim latency at 10,000 jobs <= 2x the median at 10 jobs (each store); PostgreSQL median <= 2 ms on loopback',
    pass: Object.values(checks).every(Boolean),
    checks,
    node: process.version,
    measured_at: new Date().toISOString(),
    settled: process.env.BENCH_CLAIM_SETTLE !== '0',
    ...(process.env.BENCH_COMPARE_SRC ? { compare_src: process.env.BENCH_COMPARE_SRC } : {}),
    rows,
  };
  if (kinds.includes('postgres')) await (await benchPostgres()).close();
  const outDir = new URL('./results/', import.meta.url);
  await mkdir(outDir, { recursive: true });
  await writeFile(new URL('claim-scaling.json', outDir), `${JSON.stringify(result, null, 2)}\n`);
  log(
    `targets: ${Object.entries(checks)
      .map(([name, ok]) => `${name} ${ok ? 'met' : 'NOT met'}`)
      .join('; ')}`,
  );
  return result;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await run();
}
