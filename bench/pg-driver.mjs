// Which PostgreSQL driver for the PostgreSQL store: `postgres` (porsager) or `pg` (node-postgres), by
// measurement, in one run: cold import cost against a `node -e 0` baseline, connect + first query, and
// the latency of a claim-shaped transaction (lock the job row, read its ledger row, insert the claim,
// update the job, commit).
//
// Usage: BENCH_DATABASE_URL=postgres://user@127.0.0.1:5432/db node bench/pg-driver.mjs
//   BENCH_DRIVER_DIR=/some/dir   where both drivers are installed (default: this repository); only the
//                                chosen one is a dependency, so install the other there to compare
//   BENCH_IMPORTS=15             cold imports per candidate (interleaved with the baseline)
//   BENCH_CLAIMS=2000            claims per driver
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { childEnv, ms, summarise } from './lib/common.mjs';

const url = process.env.BENCH_DATABASE_URL;
if (!url) {
  console.error('BENCH_DATABASE_URL is required (a database this benchmark may create tables in)');
  process.exit(2);
}
const driverDir = process.env.BENCH_DRIVER_DIR ?? new URL('..', import.meta.url).pathname;
const IMPORTS = Number(process.env.BENCH_IMPORTS ?? 15);
const CLAIMS = Number(process.env.BENCH_CLAIMS ?? 2000);
const requireFrom = createRequire(join(driverDir, 'package.json'));

function entryOf(name) {
  return pathToFileURL(requireFrom.resolve(name)).href;
}

function spawnMs(code) {
  const start = process.hrtime.bigint();
  const res = spawnSync(process.execPath, ['--input-type=module', '-e', code], { env: childEnv() });
  if (res.status !== 0) throw new Error(res.stderr.toString());
  return Number(process.hrtime.bigint() - start) / 1e6;
}

function importCost() {
  const samples = { baseline: [], postgres: [], pg: [] };
  const code = {
    baseline: '0',
    postgres: `await import(${JSON.stringify(entryOf('postgres'))})`,
    pg: `await import(${JSON.stringify(entryOf('pg'))})`,
  };
  for (let i = 0; i < IMPORTS + 2; i++) {
    for (const name of Object.keys(samples)) {
      const t = spawnMs(code[name]);
      if (i >= 2) samples[name].push(t);
    }
  }
  const base = summarise(samples.baseline).median;
  return Object.fromEntries(
    Object.entries(samples).map(([name, s]) => {
      const median = summarise(s).median;
      return [name, { median_ms: ms(median), ratio: Number((median / base).toFixed(2)) }];
    }),
  );
}

const SETUP = `
  DROP TABLE IF EXISTS bench_ledger; DROP TABLE IF EXISTS bench_jobs;
  CREATE TABLE bench_jobs (id text PRIMARY KEY, doc jsonb NOT NULL);
  CREATE TABLE bench_ledger (job_id text NOT NULL, fire_at bigint NOT NULL, status text NOT NULL,
    run_id text NOT NULL, PRIMARY KEY (job_id, fire_at));
  INSERT INTO bench_jobs SELECT 'job-' || i, jsonb_build_object('id', 'job-' || i, 'n', 0)
    FROM generate_series(1, 100) i;`;

async function benchPostgres() {
  const { default: postgres } = await import(entryOf('postgres'));
  const t0 = performance.now();
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  await sql`select 1`;
  const connect = performance.now() - t0;
  await sql.unsafe(SETUP);
  const samples = [];
  for (let i = 0; i < CLAIMS; i++) {
    const id = `job-${(i % 100) + 1}`;
    const start = performance.now();
    await sql.begin(async (tx) => {
      // Pipelined: both reads go out together, then the two writes together.
      const [[job], [row]] = await Promise.all([
        tx`select doc from bench_jobs where id = ${id} for update`,
        tx`select status from bench_ledger where job_id = ${id} and fire_at = ${i}`,
      ]);
      if (!job || row) throw new Error('unexpected state');
      await Promise.all([
        tx`insert into bench_ledger values (${id}, ${i}, 'claimed', ${`r${i}`})`,
        tx`update bench_jobs set doc = ${{ ...job.doc, n: i }} where id = ${id}`,
      ]);
    });
    samples.push(performance.now() - start);
  }
  await sql.end();
  return { connect_first_query_ms: ms(connect, 2), claim: summarise(samples) };
}

async function benchPg() {
  const { default: pg } = await import(entryOf('pg'));
  const t0 = performance.now();
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query('select 1');
  const connect = performance.now() - t0;
  await client.query(SETUP);
  const samples = [];
  for (let i = 0; i < CLAIMS; i++) {
    const id = `job-${(i % 100) + 1}`;
    const start = performance.now();
    await client.query('begin');
    try {
      const job = (await client.query('select doc from bench_jobs where id = $1 for update', [id])).rows[0];
      const row = (
        await client.query('select status from bench_ledger where job_id = $1 and fire_at = $2', [id, i])
      ).rows[0];
      if (!job || row) throw new Error('unexpected state');
      await client.query('insert into bench_ledger values ($1, $2, $3, $4)', [id, i, 'claimed', `r${i}`]);
      await client.query('update bench_jobs set doc = $1 where id = $2', [{ ...job.doc, n: i }, id]);
      await client.query('commit');
    } catch (err) {
      await client.query('rollback');
      throw err;
    }
    samples.push(performance.now() - start);
  }
  await client.end();
  return { connect_first_query_ms: ms(connect, 2), claim: summarise(samples) };
}

const round = (s) => Object.fromEntries(Object.entries(s).map(([k, v]) => [k, k === 'n' ? v : ms(v, 3)]));
const imports = importCost();
// Alternate the order so neither driver always runs on a warmer server.
const pgFirst = await benchPg();
const postgresResult = await benchPostgres();
const pgSecond = await benchPg();
console.log(
  JSON.stringify(
    {
      node: process.version,
      imports,
      postgres: { ...postgresResult, claim: round(postgresResult.claim) },
      pg: [pgFirst, pgSecond].map((r) => ({ ...r, claim: round(r.claim) })),
    },
    null,
    2,
  ),
);
