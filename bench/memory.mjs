// Memory (docs/performance.md): RSS of a spawned production Chronos after 10,000 fires (every job's
// occurrence accepted once, the rest duplicates) against a minimal bundled Fastify app
// (bench/baselines/fastify-minimal.mjs) after 10,000 requests, same Node, same run. RSS after start, after
// the traffic and after 5 s idle, read from /proc/<pid>/status. Target: Chronos <= 1.3x the baseline.
//
// Usage: npm run build && node bench/memory.mjs
//   BENCH_MEMORY_JOBS=1000    accepted fires (one per job); the rest of the 10,000 are duplicates
//   BENCH_NODE=/path/to/node  Node binary for both servers (this script re-runs itself under it)
//   BENCH_COMPILE_CACHE=1     both servers with a NODE_COMPILE_CACHE written first by a normally exiting
//                             start of each, as the image build does (Node 22+); with NODE_ENV=production
//                             (always set) that is the image's runtime environment
//   BENCH_MEMORY_BREAKDOWN=1  both servers preload bench/lib/memory-probe.mjs, and each moment's row
//                             is followed by V8's heap spaces (committed / used) and external memory
//   BENCH_MEMORY_SETTINGS=image   Chronos runs with the image's runtime settings, read from the Dockerfile:
//                             the CMD's node flags and the ENV's MALLOC_ARENA_MAX (the default); `none`:
//                             Node's defaults, to weigh the settings themselves. The baseline always runs
//                             with defaults.
// Every moment also prints RSS split into anonymous memory (heap, malloc) and file-backed pages (the
// node binary's text), from /proc/<pid>/status.
// Variants, applied to Chronos only unless BENCH_MEMORY_VARIANT_BASELINE=1:
//   BENCH_MEMORY_NODE_OPTIONS='--max-semi-space-size=2'   NODE_OPTIONS
//   BENCH_MEMORY_ENV='MALLOC_TRIM_THRESHOLD_=65536'   extra environment (space-separated K=V)
//   BENCH_SERVER_NODE_ARGS='--optimize-for-size'       node flags NODE_OPTIONS refuses
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Pool } from 'undici';
import {
  bundleFastifyBaseline,
  childEnv,
  distDir,
  isMain,
  parseEnv,
  table,
  writeResult,
} from './lib/common.mjs';
import { spawnServer, stop } from './lib/processes.mjs';
import { startChronosServer } from './lib/server-fixture.mjs';

const TOTAL_REQUESTS = 10_000;
const IN_FLIGHT = 8;
const IDLE_MS = 5000;
const TARGET_RATIO = 1.3;

const PROBE = fileURLToPath(new URL('./lib/memory-probe.mjs', import.meta.url));
const MiB = 1024 * 1024;

/** RSS, its anonymous and file-backed parts, and (with the probe preloaded) V8's own figures, in MiB. */
async function sample(pid, probeFile) {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1]) / 1024;
  const rss = { rss: field('VmRSS'), anon: field('RssAnon'), file: field('RssFile') };
  if (!probeFile) return rss;
  await unlink(probeFile).catch(() => {});
  process.kill(pid, 'SIGUSR2');
  const deadline = performance.now() + 10_000;
  for (;;) {
    const text = await readFile(probeFile, 'utf8').catch(() => undefined);
    if (text !== undefined) {
      const { spaces, usage } = JSON.parse(text);
      const space = (name) => ({ size: spaces[name].size / MiB, used: spaces[name].used / MiB });
      const old = ['old_space', 'large_object_space', 'trusted_space', 'trusted_large_object_space']
        .filter((name) => spaces[name])
        .map(space)
        .reduce((a, b) => ({ size: a.size + b.size, used: a.used + b.used }), { size: 0, used: 0 });
      const code = ['code_space', 'code_large_object_space'].filter((n) => spaces[n]).map(space);
      return {
        ...rss,
        young: space('new_space'),
        old,
        code: code.reduce((a, b) => ({ size: a.size + b.size, used: a.used + b.used }), { size: 0, used: 0 }),
        heapTotal: usage.heapTotal / MiB,
        external: usage.external / MiB,
      };
    }
    if (performance.now() > deadline) throw new Error(`no memory probe answer from ${pid}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** TOTAL_REQUESTS posts, IN_FLIGHT at a time on keep-alive connections; counts of each status. */
async function send(url, request) {
  const pool = new Pool(url, { connections: IN_FLIGHT });
  const answers = new Map();
  let next = 0;
  try {
    const worker = async () => {
      while (next < TOTAL_REQUESTS) {
        const i = next++;
        const res = await pool.request({ method: 'POST', path: '/api/cron/fire', ...(await request(i)) });
        await res.body.text();
        answers.set(res.statusCode, (answers.get(res.statusCode) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  } finally {
    await pool.close();
  }
  return Object.fromEntries(answers);
}

async function measureChronos(jobs, env, chronosArgs, probe) {
  const nodeArgs = [...chronosArgs, ...(probe ? [`--import=${PROBE}`] : [])];
  const probeEnv = probe ? { BENCH_MEMORY_PROBE_FILE: probe } : {};
  const server = await startChronosServer({ jobs, env: { ...env, ...probeEnv }, nodeArgs });
  try {
    const afterStart = await sample(server.pid, probe);
    // First pass accepts each job's occurrence; later passes re-send them (duplicates).
    // Fire tokens live about two minutes; on a loaded machine the fires take longer than that.
    const answers = await send(server.url, async (i) => {
      await server.freshToken(i % jobs);
      return server.fire(i % jobs);
    });
    // Read as soon as the last answer is in, as for the baseline; the accepted runs (started after each
    // 202) may still be going, and are read again once they have all ended.
    const afterTraffic = await sample(server.pid, probe);
    await server.waitUntil(() => server.runs() >= jobs, 60_000, 'the accepted runs to end');
    const afterRuns = await sample(server.pid, probe);
    await new Promise((r) => setTimeout(r, IDLE_MS));
    return { afterStart, afterTraffic, afterRuns, afterIdle: await sample(server.pid, probe), answers };
  } finally {
    await server.close();
  }
}

const plainPort = (line) => /^listening (\d+)$/.exec(line)?.[1];

async function measureFastify(fastifyJs, env, nodeArgs, signal = 'SIGKILL', probe = undefined) {
  const args = [...nodeArgs, ...(probe ? [`--import=${PROBE}`] : []), fastifyJs];
  const probeEnv = probe ? { BENCH_MEMORY_PROBE_FILE: probe } : {};
  const proc = spawnServer(process.execPath, args, childEnv({ ...env, ...probeEnv }), plainPort);
  try {
    const { port } = await proc.listening;
    const pid = proc.child.pid;
    const afterStart = await sample(pid, probe);
    // The body and headers of a fire, so both servers parse the same bytes.
    const body = JSON.stringify({ job_id: 'job-1', fire_at: new Date().toISOString() });
    const headers = { authorization: `Bearer ${'x'.repeat(600)}`, 'content-type': 'application/json' };
    const answers = await send(`http://127.0.0.1:${port}`, () => ({ body, headers }));
    const afterTraffic = await sample(pid, probe);
    await new Promise((r) => setTimeout(r, IDLE_MS));
    return {
      afterStart,
      afterTraffic,
      afterRuns: afterTraffic,
      afterIdle: await sample(pid, probe),
      answers,
    };
  } finally {
    await stop(proc, signal);
  }
}

/**
 * The runtime settings the image gives the server (Dockerfile): the node flags of its CMD (between `node`
 * and the entry file) and the malloc variables of its ENV. Read rather than copied, so the bench follows
 * the image.
 */
export async function imageSettings() {
  const dockerfile = await readFile(new URL('../Dockerfile', import.meta.url), 'utf8');
  const cmd = /^CMD (\[.*\])\s*$/m.exec(dockerfile.split(/^FROM /m).at(-1) ?? '')?.[1];
  const argv = cmd ? JSON.parse(cmd) : [];
  if (argv[0] !== 'node') throw new Error(`the Dockerfile's last CMD does not start node: ${cmd}`);
  const nodeArgs = argv.slice(1, -1);
  const env = Object.fromEntries(
    dockerfile
      .split('\n')
      .filter((line) => !line.trimStart().startsWith('#'))
      .flatMap((line) => [...line.matchAll(/\b(MALLOC_[A-Z_]+)=([^\s\\]+)/g)])
      .map((m) => [m[1], m[2]]),
  );
  return { nodeArgs, env };
}

/** Writes the compile cache the way the Dockerfile does: a normal start and exit, then every chunk imported. */
async function warmCompileCache(fastifyJs, { baselineEnv, baselineArgs, chronosEnv, chronosArgs }) {
  // Each with the flags it is measured with: the cache is keyed by them.
  await measureFastify(fastifyJs, baselineEnv, baselineArgs, 'SIGTERM').catch((err) => {
    throw new Error(`warming the baseline's compile cache: ${err.message}`);
  });
  const server = await startChronosServer({ jobs: 1, env: chronosEnv, nodeArgs: chronosArgs });
  await server.close({ normal: true });
  const chunks = fileURLToPath(new URL('chunks/', await distDir()));
  const imports = (await readdir(chunks))
    .filter((f) => f.endsWith('.js'))
    .map((f) => `await import(${JSON.stringify(pathToFileURL(join(chunks, f)).href)});`)
    .join('');
  const { status, stderr } = spawnSync(
    process.execPath,
    [...chronosArgs, '--input-type=module', '-e', imports],
    {
      env: childEnv(chronosEnv),
    },
  );
  if (status !== 0) throw new Error(`importing the chunks for the compile cache failed: ${stderr}`);
}

export async function run({
  log = console.log,
  jobs = Number(process.env.BENCH_MEMORY_JOBS ?? 1000),
  nodeOptions = process.env.BENCH_MEMORY_NODE_OPTIONS ?? '',
  extraEnv = parseEnv(process.env.BENCH_MEMORY_ENV ?? ''),
  compileCache = Boolean(process.env.BENCH_COMPILE_CACHE),
  variantOnBaseline = Boolean(process.env.BENCH_MEMORY_VARIANT_BASELINE),
  breakdown = Boolean(process.env.BENCH_MEMORY_BREAKDOWN),
  settings = process.env.BENCH_MEMORY_SETTINGS ?? 'image',
} = {}) {
  if (settings !== 'image' && settings !== 'none')
    throw new Error(`BENCH_MEMORY_SETTINGS must be image or none, not ${settings}`);
  const image = settings === 'image' ? await imageSettings() : { nodeArgs: [], env: {} };
  const work = await mkdtemp(join(tmpdir(), 'chronos-bench-memory-'));
  try {
    const fastifyJs = await bundleFastifyBaseline(work);
    // The image's runtime environment (Dockerfile): NODE_ENV=production and a compile cache.
    const cacheEnv = compileCache ? { NODE_COMPILE_CACHE: join(work, 'compile-cache') } : {};
    const imageEnv = { NODE_ENV: 'production', ...cacheEnv };
    const variantEnv = { ...extraEnv, ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}) };
    const serverArgs = process.env.BENCH_SERVER_NODE_ARGS ?? '';
    const chronosEnv = { ...imageEnv, ...image.env, ...variantEnv };
    const baselineEnv = variantOnBaseline ? chronosEnv : imageEnv;
    const baselineArgs = variantOnBaseline ? serverArgs.split(' ').filter(Boolean) : [];
    const chronosArgs = [...image.nodeArgs, ...serverArgs.split(' ').filter(Boolean)];
    if (compileCache)
      await warmCompileCache(fastifyJs, { baselineEnv, baselineArgs, chronosEnv, chronosArgs });

    const probe = (name) => (breakdown ? join(work, `${name}.probe.json`) : undefined);
    const chronos = await measureChronos(jobs, chronosEnv, chronosArgs, probe('chronos'));
    const baseline = await measureFastify(fastifyJs, baselineEnv, baselineArgs, 'SIGKILL', probe('fastify'));
    // Chronos once its accepted runs have ended (at or after its last answer): the fires' whole work.
    const ratio = chronos.afterRuns.rss / baseline.afterTraffic.rss;

    const imageLabel = [...image.nodeArgs, ...Object.entries(image.env).map(([k, v]) => `${k}=${v}`)];
    const variant = [
      nodeOptions && `NODE_OPTIONS=${nodeOptions}`,
      serverArgs && `node args ${serverArgs}`,
      ...Object.entries(extraEnv).map(([k, v]) => `${k}=${v}`),
    ].filter(Boolean);
    log(
      `memory (RSS, MiB), node ${process.version}${compileCache ? ', compile cache' : ''}, NODE_ENV=production; ` +
        `chronos: ${jobs} jobs, ${TOTAL_REQUESTS} fires, ` +
        `${settings === 'image' ? `the image's settings (${imageLabel.join(' ')})` : "Node's defaults"}` +
        `${variant.length ? `, ${variant.join(', ')}` : ''}; ` +
        `fastify: ${TOTAL_REQUESTS} requests${variantOnBaseline && variant.length ? ', same variant' : ', defaults'}`,
    );
    const f = (v) => v.toFixed(1);
    const parts = (m) =>
      `${f(m.anon)} + ${f(m.file)}` +
      (m.young
        ? `; young ${f(m.young.size)}/${f(m.young.used)}, old ${f(m.old.size)}/${f(m.old.used)}, ` +
          `code ${f(m.code.size)}/${f(m.code.used)}, external ${f(m.external)}`
        : '');
    const moments = [
      ['after start', 'afterStart', 'afterStart'],
      [`after ${TOTAL_REQUESTS} requests`, 'afterTraffic', 'afterTraffic'],
      ['after the runs (ratio)', 'afterRuns', 'afterTraffic'],
      [`after ${IDLE_MS / 1000} s idle`, 'afterIdle', 'afterIdle'],
    ];
    log(
      table([
        ['moment', 'chronos', 'fastify minimal', 'ratio'],
        ...moments.map(([label, c, b]) => [
          label,
          f(chronos[c].rss),
          f(baseline[b].rss),
          (chronos[c].rss / baseline[b].rss).toFixed(2),
        ]),
      ]),
    );
    log(
      'RSS = anonymous + file-backed' +
        (breakdown ? '; V8 spaces committed/used (old: old, large-object and trusted spaces)' : ''),
    );
    for (const [label, c, b] of moments) {
      log(`  ${label}: chronos ${parts(chronos[c])}; fastify ${parts(baseline[b])}`);
    }
    log(`answers: chronos ${JSON.stringify(chronos.answers)}, fastify ${JSON.stringify(baseline.answers)}`);
    // Anything but one accepted fire per job and duplicates (an expired token's 401; occurrences the
    // process claimed itself because the run outlasted their instant) would measure other work.
    const valid = chronos.answers['202'] === jobs && chronos.answers['200'] === TOTAL_REQUESTS - jobs;
    if (!valid) log(`warning: expected ${jobs} answers 202 and the rest 200; this run does not count`);
    const pass = ratio <= TARGET_RATIO && valid;
    log(
      `target (chronos RSS after ${TOTAL_REQUESTS} fires <= ${TARGET_RATIO}x fastify minimal after ${TOTAL_REQUESTS} requests): ` +
        `${ratio.toFixed(2)}x, ${pass ? 'met' : 'NOT met'}`,
    );
    const result = {
      benchmark: 'memory',
      target: `RSS after ${TOTAL_REQUESTS} fires <= ${TARGET_RATIO}x a minimal bundled Fastify app after ${TOTAL_REQUESTS} requests`,
      pass,
      valid,
      ratio,
      node: process.version,
      measured_at: new Date().toISOString(),
      compile_cache: compileCache,
      jobs,
      settings,
      image_settings: image,
      node_options: nodeOptions || null,
      server_node_args: serverArgs || null,
      env: extraEnv,
      variant_on_baseline: variantOnBaseline,
      requests: TOTAL_REQUESTS,
      chronos_rss_mib: chronos,
      fastify_rss_mib: baseline,
    };
    const name = `memory${settings === 'none' ? '-defaults' : ''}${variant.length ? '-variant' : ''}${compileCache ? '-compile-cache' : ''}`;
    await writeResult(name, result);
    return result;
  } finally {
    await rm(work, { recursive: true, force: true });
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
