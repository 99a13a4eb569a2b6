// Test suite time (docs/performance.md, "Test suite"): the inner loop `npm run test:unit` (target ≤ 30 s)
// and the whole `npm run check` (typecheck, lint and every test; target ≤ 150 s on a clean clone), each
// run once in this checkout, wall time beside the CPU time of everything it started, and the load
// average before and after (the targets are wall times: on a busy machine they say little).
//
// Usage: node bench/suite.mjs   (it is in `npm run bench` too)
//   BENCH_SUITE_ONLY=unit|check   run one of the two
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMain, table, writeResult } from './lib/common.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const COMMANDS = [
  { name: 'unit', script: 'test:unit', target: 30 },
  { name: 'check', script: 'check', target: 150 },
];

/**
 * Runs `npm run <script>` under bash, whose `times` then reports the CPU its children used. The command's
 * own output goes to `log` (bench/results/suite-<name>.log), to read when it failed.
 */
function timed(script, log) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(
      'bash',
      ['-c', `npm run --silent ${script} >"$1" 2>&1; rc=$?; times; exit $rc`, 'bash', log],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = (performance.now() - started) / 1000;
      // `times` prints the shell's own user/sys, then its children's: "1m2.345s 0m6.789s".
      const children = out.trim().split('\n').at(-1) ?? '';
      const cpu = [...children.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
      resolve({ ok: code === 0, seconds, user: cpu[0] ?? Number.NaN, sys: cpu[1] ?? Number.NaN });
    });
  });
}

export async function run({ log = console.log, only = process.env.BENCH_SUITE_ONLY } = {}) {
  const rows = [];
  for (const command of COMMANDS) {
    if (only && only !== command.name) continue;
    const loadBefore = loadavg()[0];
    const output = fileURLToPath(new URL(`./results/suite-${command.name}.log`, import.meta.url));
    await mkdir(dirname(output), { recursive: true });
    const result = await timed(command.script, output);
    if (!result.ok) log(`npm run ${command.script} failed: its output is in ${output}`);
    const loadAfter = loadavg()[0];
    rows.push({
      ...command,
      ...result,
      loadBefore,
      loadAfter,
      met: result.ok && result.seconds <= command.target,
    });
  }
  log(
    table([
      ['command', 'passed', 'wall', 'user + sys (CPU)', 'load before → after', 'target', 'met'],
      ...rows.map((r) => [
        `npm run ${r.script}`,
        r.ok ? 'yes' : 'NO',
        `${r.seconds.toFixed(1)} s`,
        `${r.user.toFixed(1)} + ${r.sys.toFixed(1)} s`,
        `${r.loadBefore.toFixed(1)} → ${r.loadAfter.toFixed(1)}`,
        `≤ ${r.target} s`,
        r.met ? 'yes' : 'NO',
      ]),
    ]),
  );
  const pass = rows.length > 0 && rows.every((r) => r.met);
  await writeResult('suite', { benchmark: 'suite', pass, measured_at: new Date().toISOString(), rows });
  return { pass };
}

if (isMain(import.meta)) await run();
