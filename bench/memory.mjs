// Memory (docs/performance.md): RSS of a spawned production Chronos after start, after 10,000 fires (every job's
// occurrence accepted once, the rest duplicates), and after idling 5 s. Read from /proc/<pid>/status.
//
// Usage: npm run build && node bench/memory.mjs
//   BENCH_MEMORY_JOBS=1000    accepted fires (one per job); the rest of the 10,000 are duplicates
//   BENCH_MEMORY_NODE_OPTIONS='--max-semi-space-size=2'   NODE_OPTIONS for the spawned server
//   BENCH_MEMORY_ENV='MALLOC_TRIM_THRESHOLD_=65536'   extra environment for the server (space-separated K=V)
//   BENCH_SERVER_NODE_ARGS='--optimize-for-size'       node flags NODE_OPTIONS refuses (read by the fixture)
//   BENCH_NODE=/path/to/node  Node binary for the server (and this script, which re-runs itself under it)
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { Pool } from 'undici';
import { isMain, table, writeResult } from './lib/common.mjs';
import { startChronosServer } from './lib/server-fixture.mjs';

const TOTAL_FIRES = 10_000;

function parseEnv(text) {
  return Object.fromEntries(
    text
      .split(' ')
      .filter(Boolean)
      .map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]),
  );
}

async function rssMiB(pid) {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]);
  return kb / 1024;
}

export async function run({
  log = console.log,
  jobs = Number(process.env.BENCH_MEMORY_JOBS ?? 1000),
  nodeOptions = process.env.BENCH_MEMORY_NODE_OPTIONS ?? '',
  extraEnv = parseEnv(process.env.BENCH_MEMORY_ENV ?? ''),
} = {}) {
  const env = { ...extraEnv, ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}) };
  const server = await startChronosServer({ jobs, env });
  const pool = new Pool(server.url, { connections: 8 });
  try {
    const afterStart = await rssMiB(server.pid);
    const answers = new Map();
    let next = 0;
    const worker = async () => {
      while (next < TOTAL_FIRES) {
        const i = next++;
        // First pass accepts each job's occurrence; later passes re-send them (duplicates).
        const res = await pool.request({ method: 'POST', path: '/api/cron/fire', ...server.fire(i % jobs) });
        await res.body.text();
        answers.set(res.statusCode, (answers.get(res.statusCode) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    await server.waitUntil(() => server.runs() >= jobs, 60_000, 'the accepted runs to end');
    const afterFires = await rssMiB(server.pid);
    await new Promise((r) => setTimeout(r, 5000));
    const afterIdle = await rssMiB(server.pid);

    const serverArgs = process.env.BENCH_SERVER_NODE_ARGS ?? '';
    const variant = [
      nodeOptions && `NODE_OPTIONS=${nodeOptions}`,
      serverArgs && `node args ${serverArgs}`,
      ...Object.entries(extraEnv).map(([k, v]) => `${k}=${v}`),
    ].filter(Boolean);
    log(
      `memory (RSS, MiB) of a spawned Chronos, node ${process.version}, ${jobs} jobs${variant.length ? `, ${variant.join(', ')}` : ''}`,
    );
    log(
      table([
        ['moment', 'RSS MiB'],
        ['after start (reconciled)', afterStart.toFixed(1)],
        [`after ${TOTAL_FIRES} fires`, afterFires.toFixed(1)],
        ['after 5 s idle', afterIdle.toFixed(1)],
      ]),
    );
    log(`answers: ${JSON.stringify(Object.fromEntries(answers))}`);
    // 75 MB as in docs/performance.md (decimal megabytes); MiB shown above.
    const pass = afterFires * 1.048576 <= 75;
    log(`target (RSS <= 75 MB after 10,000 fires): ${pass ? 'met' : 'NOT met'}`);
    const result = {
      benchmark: 'memory',
      target: 'RSS <= 75 MB after 10,000 fires',
      pass,
      node: process.version,
      measured_at: new Date().toISOString(),
      jobs,
      node_options: nodeOptions || null,
      server_node_args: serverArgs || null,
      env: extraEnv,
      fires: TOTAL_FIRES,
      answers: Object.fromEntries(answers),
      rss_mib: { after_start: afterStart, after_fires: afterFires, after_idle: afterIdle },
    };
    await writeResult(variant.length ? 'memory-variant' : 'memory', result);
    return result;
  } finally {
    await pool.close();
    await server.close();
  }
}

if (isMain(import.meta)) {
  const node = process.env.BENCH_NODE;
  // The server fixture spawns process.execPath, so the simplest way to measure another Node is to be it.
  if (node && node !== process.execPath) {
    const { status } = spawnSync(node, process.argv.slice(1), { stdio: 'inherit' });
    process.exit(status ?? 1);
  }
  await run();
}
