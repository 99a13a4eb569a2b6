// Runs every benchmark in one process, one after another (`npm run bench` builds first).
// Each writes bench/results/<name>.json; this prints their tables and a summary of the targets.
//   BENCH_NODE=/path/to/node   memory is measured under that Node too (with a compile cache, as the image
//                              runs): its target is judged on the image's Node (24), and reported on this one
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { isMain } from './lib/common.mjs';

const BENCHES = [
  'cold-start',
  'warm-fire',
  'reconcile',
  'claim-scaling',
  'builtin-timer',
  'memory',
  'awake',
  'suite',
];

/** The memory bench under another Node binary: it re-runs itself there (bench/memory.mjs). */
function memoryUnder(node, log) {
  log(`\n=== memory (${node}, compile cache) ===`);
  const script = fileURLToPath(new URL('./memory.mjs', import.meta.url));
  const { status } = spawnSync(process.execPath, [script], {
    stdio: 'inherit',
    env: { ...process.env, BENCH_NODE: node, BENCH_COMPILE_CACHE: '1' },
  });
  if (status !== 0) return Promise.resolve({ pass: false });
  return readFile(new URL('./results/memory-compile-cache.json', import.meta.url), 'utf8').then(JSON.parse);
}

export async function runAll({ log = console.log, only = process.argv.slice(2) } = {}) {
  const started = performance.now();
  const summary = [];
  for (const name of BENCHES) {
    if (only.length > 0 && !only.includes(name)) continue;
    log(`\n=== ${name} ===`);
    const benchStarted = performance.now();
    const { run } = await import(`./${name}.mjs`);
    const result = await run({ log });
    summary.push({ name, pass: result.pass, seconds: (performance.now() - benchStarted) / 1000 });
    const other = process.env.BENCH_NODE;
    if (name === 'memory' && other && other !== process.execPath) {
      const otherStarted = performance.now();
      const { pass, node } = await memoryUnder(other, log);
      summary.push({
        name: `memory ${node ?? other}`,
        pass,
        seconds: (performance.now() - otherStarted) / 1000,
      });
    }
  }
  log(`\n=== summary (${((performance.now() - started) / 1000).toFixed(0)} s) ===`);
  for (const s of summary)
    log(`${s.name.padEnd(14)} ${s.pass ? 'met    ' : 'NOT met'}  ${s.seconds.toFixed(0)} s`);
  return summary;
}

if (isMain(import.meta)) await runAll();
