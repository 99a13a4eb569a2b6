// Runs INSIDE the Chronos image (scripts/image-test.sh imports it there as a data: URL),
// as the image's user, from its WORKDIR. Starts the server the way the image's CMD does, first once
// with NODE_DEBUG_NATIVE=COMPILE_CACHE to record what Node's compile cache did, then alternately with
// and without the cache, measuring spawn -> "chronos listening" in wall time and in CPU time the
// server used (the latter barely moves with the machine's load). It waits for the log line rather
// than polling /healthz, so that the probe takes no CPU from the start it measures; /healthz is then
// asked once. Prints one JSON object on stdout.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';

const ROUNDS = Number(process.env.PROBE_ROUNDS ?? 7);
const PORT = 18_181;
const START_DEADLINE_MS = 20_000;

/**
 * CPU time a live process has used so far, all its threads: the first field of each thread's
 * /proc/<pid>/task/<tid>/schedstat, in nanoseconds (/proc/<pid>/stat counts in 10 ms ticks, too
 * coarse for a start of a few hundred milliseconds).
 */
function cpuMs(pid) {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return ns / 1e6;
}

async function startOnce({ cache, debug }) {
  const dataDir = mkdtempSync('/tmp/chronos-probe-');
  const env = {
    ...process.env,
    CHRONOS_PROVIDER: 'builtin',
    CHRONOS_DATA_DIR: dataDir,
    HOST: '127.0.0.1',
    PORT: String(PORT),
    LOG_LEVEL: 'info',
  };
  if (!cache) delete env.NODE_COMPILE_CACHE;
  if (debug) env.NODE_DEBUG_NATIVE = 'COMPILE_CACHE';
  const started = performance.now();
  const child = spawn(process.execPath, ['dist/serve.js'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk) => {
    stderr += chunk;
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const listening = new Promise((resolve, reject) => {
    let pending = '';
    child.stdout.setEncoding('utf8').on('data', (chunk) => {
      pending += chunk;
      if (/"msg":"chronos listening"/.test(pending)) {
        resolve({ ms: performance.now() - started, cpu: cpuMs(child.pid) });
        child.stdout.resume();
      }
    });
    child.on('exit', (code) => reject(new Error(`server exited with ${code} before listening:\n${stderr}`)));
    setTimeout(
      () => reject(new Error(`not listening within ${START_DEADLINE_MS} ms:\n${stderr}`)),
      START_DEADLINE_MS,
    ).unref();
  });
  const { ms, cpu } = await listening.catch((err) => {
    child.kill('SIGKILL');
    throw err;
  });
  const health = await fetch(`http://127.0.0.1:${PORT}/healthz`);
  if (!health.ok) throw new Error(`/healthz answered ${health.status}`);
  child.kill('SIGTERM');
  const exit = await exited;
  rmSync(dataDir, { recursive: true, force: true });
  return { ms, cpu, exit, stderr };
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
  timings.cache.push(await startOnce({ cache: true, debug: false }));
  timings.noCache.push(await startOnce({ cache: false, debug: false }));
}
process.stdout.write(
  `${JSON.stringify({
    uid: process.getuid(),
    node: process.version,
    compileCache: process.env.NODE_COMPILE_CACHE ?? null,
    debugExit: debugRun.exit,
    cache: cacheReport(debugRun.stderr),
    // spawn -> "chronos listening": wall time, and CPU time used by the server.
    medianMs: {
      cache: median(timings.cache.map((t) => t.ms)),
      noCache: median(timings.noCache.map((t) => t.ms)),
    },
    medianCpuMs: {
      cache: median(timings.cache.map((t) => t.cpu)),
      noCache: median(timings.noCache.map((t) => t.cpu)),
    },
    rounds: ROUNDS,
  })}\n`,
);
