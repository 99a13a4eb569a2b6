// Claim latency against job count (docs/performance.md: at 10,000 jobs within 2x of 10 jobs).
// A claim rewrites only its own job's file, so its cost should not depend on how many jobs exist.
// Usage: npm run build && node bench/claim-scaling.mjs
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { importInternals } from './lib/common.mjs';

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

async function setUp(lib, n) {
  const dir = await mkdtemp(join(tmpdir(), `chronos-bench-claim-${n}-`));
  const store = await lib.FileStore.open({ dir });
  const started = performance.now();
  for (let i = 0; i < n; i++) await store.createJob(makeJob(`job-${i}`));
  return { n, dir, store, setupMs: performance.now() - started, pick: picker(n), samples: [] };
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
  return elapsed;
}

/**
 * All sizes are set up first, then claimed round-robin (one claim on each size per round), so disk
 * and CPU drift on a shared machine hits every size alike instead of whichever ran last.
 */
async function measureAll(lib) {
  const subjects = [];
  try {
    for (const n of SIZES) subjects.push(await setUp(lib, n));
    const owner = lib.currentOwner();
    for (let i = 0; i < WARMUP + CLAIMS; i++) {
      for (const subject of subjects) {
        const elapsed = await claimOnce(lib, subject, owner, i);
        if (i >= WARMUP) subject.samples.push(elapsed);
      }
    }
    return subjects.map(({ n, setupMs, samples }) => {
      samples.sort((a, b) => a - b);
      return {
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
      await rm(dir, { recursive: true, force: true });
    }
  }
}

export async function run({ log = console.log } = {}) {
  // CHRONOS_BENCH_ENTRY: another build to compare (a module exporting the same three names).
  const entry = process.env.CHRONOS_BENCH_ENTRY;
  const lib = entry ? await import(entry) : await importInternals();
  if (!lib.FileStore || !lib.claimOccurrence || !lib.currentOwner) {
    throw new Error(`${entry} must export FileStore, claimOccurrence and currentOwner`);
  }
  const rows = await measureAll(lib);
  const base = rows[0].median_ms;
  for (const row of rows) row.median_ratio_to_10 = row.median_ms / base;
  const fmt = (ms) => ms.toFixed(3).padStart(8);
  log('claim latency (ms), FileStore, one claim at a time on random jobs, sizes interleaved');
  log('    jobs  claims   median      p90      p99  median/median@10');
  for (const r of rows) {
    log(
      `${String(r.jobs).padStart(8)} ${String(r.claims).padStart(7)} ${fmt(r.median_ms)} ${fmt(r.p90_ms)} ${fmt(r.p99_ms)}  ${r.median_ratio_to_10.toFixed(2)}x`,
    );
  }
  const last = rows.at(-1);
  const result = {
    benchmark: 'claim-scaling',
    target: 'median claim latency at 10,000 jobs <= 2x the median at 10 jobs',
    pass: last.median_ratio_to_10 <= 2,
    node: process.version,
    measured_at: new Date().toISOString(),
    rows,
  };
  const outDir = new URL('./results/', import.meta.url);
  await mkdir(outDir, { recursive: true });
  await writeFile(new URL('claim-scaling.json', outDir), `${JSON.stringify(result, null, 2)}\n`);
  log(`target (10k median <= 2x 10 median): ${result.pass ? 'met' : 'NOT met'}`);
  return result;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await run();
}
