// Runs every benchmark in one process, one after another (`npm run bench` builds first).
// Each writes bench/results/<name>.json; this prints their tables and a summary of the targets.
import { isMain } from './lib/common.mjs';

const BENCHES = ['cold-start', 'warm-fire', 'reconcile', 'claim-scaling', 'builtin-timer', 'memory', 'awake'];

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
  }
  log(`\n=== summary (${((performance.now() - started) / 1000).toFixed(0)} s) ===`);
  for (const s of summary)
    log(`${s.name.padEnd(14)} ${s.pass ? 'met    ' : 'NOT met'}  ${s.seconds.toFixed(0)} s`);
  return summary;
}

if (isMain(import.meta)) await runAll();
