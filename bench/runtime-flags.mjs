// Runtime flags, side by side (docs/performance.md, Memory): what a set of node/V8 flags costs a warm fire.
// Two spawned production Chronos processes, one with the flags and one without, get their fires
// interleaved (healthz then fire on one, then the other; the order alternates), each fire sent once the
// previous one's run has ended, as in warm-fire. Reports each one's fire overhead over /healthz and the
// ratio, plus both processes' RSS at the end. Cold start with the same flags: bench/cold-start.mjs with
// BENCH_COMPARE_NODE_ARGS.
//
// Usage: npm run build && BENCH_FLAGS='--max-semi-space-size=4' node bench/runtime-flags.mjs
//   BENCH_FLAGS               the node flags to weigh
//   BENCH_FLAGS_ENV='MALLOC_ARENA_MAX=2'   extra environment to weigh (space-separated K=V); one of the
//                             two is required
//   BENCH_FLAGS_FIRES=300     accepted fires per process (the jobs fall due 30 s after start, when the
//                             process would claim the rest itself: keep it short on a loaded machine)
//   BENCH_NODE=/path/to/node  Node binary for both (this script re-runs itself under it)
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { Pool } from 'undici';
import { isMain, ms, parseEnv, summarise, table, writeResult } from './lib/common.mjs';
import { startChronosServer } from './lib/server-fixture.mjs';

async function rssMiB(pid) {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]) / 1024;
}

async function timed(pool, request) {
  const started = performance.now();
  const res = await pool.request(request);
  const text = await res.body.text();
  return { status: res.statusCode, text, ms: performance.now() - started };
}

export async function run({
  log = console.log,
  flags = (process.env.BENCH_FLAGS ?? '').split(' ').filter(Boolean),
  flagEnv = parseEnv(process.env.BENCH_FLAGS_ENV),
  fires = Number(process.env.BENCH_FLAGS_FIRES ?? 300),
} = {}) {
  if (flags.length === 0 && Object.keys(flagEnv).length === 0)
    throw new Error('set BENCH_FLAGS (node flags) and/or BENCH_FLAGS_ENV (environment) to compare');
  const subjects = [];
  try {
    for (const [name, nodeArgs, env] of [
      ['default', [], {}],
      ['flags', flags, flagEnv],
    ]) {
      const server = await startChronosServer({
        jobs: fires,
        env: { NODE_ENV: 'production', ...env },
        nodeArgs,
      });
      subjects.push({ name, server, pool: new Pool(server.url, { connections: 1 }), fire: [], health: [] });
    }
    const health = { method: 'GET', path: '/healthz' };
    for (const s of subjects) for (let i = 0; i < 50; i++) await timed(s.pool, health);
    for (let i = 0; i < fires; i++) {
      const order = i % 2 === 0 ? subjects : [...subjects].reverse();
      for (const s of order) {
        await s.server.freshToken(i);
        s.health.push((await timed(s.pool, health)).ms);
        const res = await timed(s.pool, { method: 'POST', path: '/api/cron/fire', ...s.server.fire(i) });
        if (res.status !== 202) throw new Error(`${s.name}: fire ${i} answered ${res.status}: ${res.text}`);
        s.fire.push(res.ms);
        await s.server.waitUntil(() => s.server.runs() > i, 10_000, `run ${i} to finish`, 1);
      }
    }
    const rows = [['process', 'healthz p50', 'fire p50', 'overhead p50', 'fire p99', 'RSS MiB']];
    const figures = {};
    for (const s of subjects) {
      const h = summarise(s.health);
      const f = summarise(s.fire);
      const rss = await rssMiB(s.server.pid);
      figures[s.name] = { healthz_ms: h, fire_ms: f, overhead_ms: f.median - h.median, rss_mib: rss };
      rows.push([
        s.name,
        ms(h.median, 3),
        ms(f.median, 3),
        ms(f.median - h.median, 3),
        ms(f.p99, 2),
        ms(rss),
      ]);
    }
    const ratio = figures.flags.overhead_ms / figures.default.overhead_ms;
    const fireRatio = figures.flags.fire_ms.median / figures.default.fire_ms.median;
    const variant = [...flags, ...Object.entries(flagEnv).map(([k, v]) => `${k}=${v}`)].join(' ');
    log(`runtime flags ${variant}: ${fires} fires each, interleaved, node ${process.version}`);
    log(table(rows));
    log(
      `flags / default: fire overhead ${ratio.toFixed(3)}x, fire median ${fireRatio.toFixed(3)}x, ` +
        `RSS ${(figures.flags.rss_mib / figures.default.rss_mib).toFixed(2)}x`,
    );
    const result = {
      benchmark: 'runtime-flags',
      flags,
      env: flagEnv,
      node: process.version,
      measured_at: new Date().toISOString(),
      fires,
      overhead_ratio: ratio,
      fire_ratio: fireRatio,
      figures,
    };
    await writeResult('runtime-flags', result);
    return result;
  } finally {
    for (const s of subjects) {
      await s.pool.close();
      await s.server.close();
    }
  }
}

if (isMain(import.meta)) {
  const node = process.env.BENCH_NODE;
  if (node && node !== process.execPath) {
    const { status } = spawnSync(node, process.argv.slice(1), { stdio: 'inherit' });
    process.exit(status ?? 1);
  }
  await run();
}
