// Runs INSIDE the Chronos image (scripts/image-test.sh imports it there as a data: URL),
// as the image's user, from its WORKDIR. Starts the server the way the image's CMD does, first once
// with NODE_DEBUG_NATIVE=COMPILE_CACHE to record what Node's compile cache did, then alternately with
// and without the cache to time spawn -> /healthz answered. Prints one JSON object on stdout.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';

const ROUNDS = Number(process.env.PROBE_ROUNDS ?? 7);
const PORT = 18_181;
const START_DEADLINE_MS = 20_000;

async function healthy() {
  try {
    return (await fetch(`http://127.0.0.1:${PORT}/healthz`)).ok;
  } catch {
    return false;
  }
}

async function startOnce({ cache, debug }) {
  const dataDir = mkdtempSync('/tmp/chronos-probe-');
  const env = {
    ...process.env,
    CHRONOS_PROVIDER: 'builtin',
    CHRONOS_DATA_DIR: dataDir,
    HOST: '127.0.0.1',
    PORT: String(PORT),
    LOG_LEVEL: 'warn',
  };
  if (!cache) delete env.NODE_COMPILE_CACHE;
  if (debug) env.NODE_DEBUG_NATIVE = 'COMPILE_CACHE';
  const started = performance.now();
  const child = spawn(process.execPath, ['dist/serve.js'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk) => {
    stderr += chunk;
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const deadline = Date.now() + START_DEADLINE_MS;
  while (!(await healthy())) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}:\n${stderr}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`no /healthz within ${START_DEADLINE_MS} ms:\n${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  const ms = performance.now() - started;
  child.kill('SIGTERM');
  const exit = await exited;
  rmSync(dataDir, { recursive: true, force: true });
  return { ms, exit, stderr };
}

/** What NODE_DEBUG_NATIVE=COMPILE_CACHE reported: the directory used, modules found in it, modules not. */
function cacheReport(stderr) {
  const lines = stderr.split('\n').filter((line) => line.startsWith('[compile cache]'));
  const dir = lines.map((l) => /resolved path .* -> (\S+)/.exec(l)?.[1]).find(Boolean) ?? null;
  const modules = new Set();
  const accepted = new Set();
  for (const line of lines) {
    const url = /for (?:ESM|CommonJS) (file:\/\/\S+?)(?:\.\.\.| was |$)/.exec(line)?.[1];
    if (!url) continue;
    modules.add(url);
    if (/ was accepted/.test(line)) accepted.add(url);
  }
  return {
    dir,
    problems: lines.filter((l) => /cannot|permission denied|failed/i.test(l)),
    accepted: [...accepted].sort(),
    notAccepted: [...modules].filter((m) => !accepted.has(m)).sort(),
  };
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.floor(sorted.length / 2)] * 10) / 10;
};

const debugRun = await startOnce({ cache: true, debug: true });
const timings = { cache: [], noCache: [] };
for (let round = 0; round < ROUNDS; round += 1) {
  // Interleaved, so that load on the machine affects both sides alike.
  timings.cache.push((await startOnce({ cache: true, debug: false })).ms);
  timings.noCache.push((await startOnce({ cache: false, debug: false })).ms);
}
process.stdout.write(
  `${JSON.stringify({
    uid: process.getuid(),
    node: process.version,
    compileCache: process.env.NODE_COMPILE_CACHE ?? null,
    debugExit: debugRun.exit,
    cache: cacheReport(debugRun.stderr),
    medianMs: { cache: median(timings.cache), noCache: median(timings.noCache) },
    rounds: ROUNDS,
  })}\n`,
);
