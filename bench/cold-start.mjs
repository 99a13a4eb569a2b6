// Cold start (docs/performance.md): spawn the production build → listening → first fire answered 202 → job started,
// against baselines spawned in the same run, interleaved: `node -e 0`, a raw node:http server, and a
// minimal Fastify app bundled with the production esbuild options.
//
// With PostgreSQL (`chronos postgres`: the same bundle with CHRONOS_DATABASE_URL on a loopback server the
// benchmark starts), beside the file store in the same interleaved rounds; target <= 1.3x the file store.
//
// Usage: npm run build && node bench/cold-start.mjs [--store file|postgres]  (default: both)
//   BENCH_COLD_SPAWNS=25      measured spawns per command (after 2 discarded warm-up rounds)
//   BENCH_NODE=/path/to/node  Node binary for every spawned command (default: this one)
//   BENCH_COMPILE_CACHE=1     give candidate and Fastify baseline a NODE_COMPILE_CACHE, generated
//                             first by one normally-exiting start of each (Node 22+)
//   BENCH_COMPARE_DIST=DIR    also spawn DIR/serve.js (another build, e.g. main's) interleaved with this
//                             one, and report this build over that one: a change's effect in one run
//   BENCH_COLD_DUE_AHEAD_MS=0 the cold-start job falls due this long after its spawn is prepared
//   BENCH_COMPARE_NODE_ARGS='--max-semi-space-size=4'   also spawn this build with these node flags,
//                             interleaved, and report flags / none (the image's flags: docs/performance.md)
//   BENCH_COMPARE_ENV='MALLOC_ARENA_MAX=2'   the same with this extra environment (space-separated K=V),
//                             alone or with BENCH_COMPARE_NODE_ARGS
import { spawn } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  bundleFastifyBaseline,
  childEnv,
  chronosEnv,
  distDir,
  importInternals,
  isMain,
  ms,
  parseEnv,
  quietEmulator,
  summarise,
  table,
  writeResult,
} from './lib/common.mjs';
import { benchPostgres, postgresModules } from './lib/postgres.mjs';
import { chronosPort, post, spawnServer, startRecorder, stop } from './lib/processes.mjs';

/** `--store file|postgres` (or BENCH_STORE): `postgres` adds the PostgreSQL subject; the default is both. */
function withPostgres(argv = process.argv) {
  const at = argv.indexOf('--store');
  const chosen = at >= 0 ? argv[at + 1] : process.env.BENCH_STORE;
  return chosen === undefined || chosen === 'both' || chosen === 'postgres';
}

const JOB_ID = 'cold-start';
/**
 * BENCH_COLD_DUE_AHEAD_MS: the job falls due this long after its data dir is made (default 0: due now).
 * On a heavily loaded machine the bench's own fire can reach Chronos after the start-up reconcile has
 * already claimed an occurrence that is due (answered `duplicate`); a few seconds ahead keeps the fire
 * the one that claims it (an early delivery within the allowed skew is claimed and run at once).
 */
const DUE_AHEAD_MS = Number(process.env.BENCH_COLD_DUE_AHEAD_MS ?? 0);

const plainPort = (line) => /^listening (\d+)$/.exec(line)?.[1];

async function makeTemplate(lib, emulator, dir) {
  const store = await lib.FileStore.open({ dir });
  const now = Date.now();
  const job = lib.buildJob(
    { id: JOB_ID, schedule: 'every 1h', target: { type: 'http', url: 'http://127.0.0.1:9/placeholder' } },
    { now, defaultTimezone: 'UTC', allowCommands: false, source: 'api' },
  );
  await store.createJob(job);
  await store.close();
  // The production situation after the first fire: the key set is cached, a cold process fetches nothing.
  await writeFile(join(dir, 'jwks-cache.json'), JSON.stringify({ fetched_at: now, jwks: emulator.jwks() }));
}

/** A fresh data dir per spawn (the claim is consumed), with the job due now and pointing at this spawn's path. */
async function prepareDataDir(lib, template, dir, hookUrl) {
  await cp(template, dir, { recursive: true });
  const store = await lib.FileStore.open({ dir });
  const dueAt = Date.now() + DUE_AHEAD_MS;
  await store.updateJob(JOB_ID, (job) => ({
    ...job,
    next_run_at: dueAt,
    target: { ...job.target, url: hookUrl },
  }));
  await store.close();
  return dueAt;
}

/**
 * CPU time (user + system, every thread) a process has used so far, in ms: unlike wall time, it hardly
 * moves with the load other processes put on the machine. Clock ticks of 10 ms (USER_HZ 100 on Linux).
 */
async function cpuMs(pid) {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces, so split after its closing parenthesis).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

export async function run({ log = console.log, spawns = Number(process.env.BENCH_COLD_SPAWNS ?? 25) } = {}) {
  const node = process.env.BENCH_NODE ?? process.execPath;
  const lib = await importInternals();
  const work = await mkdtemp(join(tmpdir(), 'chronos-bench-cold-'));
  const emulator = await quietEmulator();
  const recorder = await startRecorder();
  const serveJs = fileURLToPath(new URL('serve.js', await distDir()));
  // A private copy, like distDir(): the other build may be rebuilt while this runs.
  const compareJs = process.env.BENCH_COMPARE_DIST
    ? await cp(process.env.BENCH_COMPARE_DIST, join(work, 'compare-dist'), { recursive: true }).then(() =>
        join(work, 'compare-dist', 'serve.js'),
      )
    : undefined;
  const rawJs = fileURLToPath(new URL('./baselines/raw-http.mjs', import.meta.url));
  const nodeVersion = await new Promise((resolve) => {
    const c = spawn(node, ['--version'], { env: childEnv() });
    let out = '';
    c.stdout.on('data', (d) => {
      out += d;
    });
    c.on('exit', () => resolve(out.trim()));
  });
  const cacheDir = process.env.BENCH_COMPILE_CACHE ? join(work, 'compile-cache') : undefined;
  const cacheEnv = cacheDir ? { NODE_COMPILE_CACHE: cacheDir } : {};
  try {
    const fastifyJs = await bundleFastifyBaseline(work);
    const template = join(work, 'template');
    await makeTemplate(lib, emulator, template);
    const fireBody = (dueAt) => JSON.stringify({ job_id: JOB_ID, fire_at: new Date(dueAt).toISOString() });
    let spawnNo = 0;
    // PostgreSQL: one database, kept open here; each spawn gets its own job, due now.
    const pg = withPostgres() ? await benchPostgres() : undefined;
    const pgUrl = pg ? await pg.database('cold') : undefined;
    const pgStore = pgUrl ? await (await postgresModules()).PostgresStore.open({ url: pgUrl }) : undefined;
    const jwksDir = join(work, 'jwks-only');
    await cp(join(template, 'jwks-cache.json'), join(jwksDir, 'jwks-cache.json'));

    const subjects = {
      'node -e 0': async () => {
        const started = performance.now();
        const child = spawn(node, ['-e', '0'], { env: childEnv(), stdio: 'ignore' });
        await new Promise((r) => child.once('exit', r));
        return { ready: performance.now() - started };
      },
      'raw node:http': async () => {
        const proc = spawnServer(node, [rawJs], childEnv(), plainPort);
        try {
          const { port } = await proc.listening;
          const res = await post(`http://127.0.0.1:${port}/api/cron/fire`, '{}');
          if (res.status !== 202) throw new Error(`raw http answered ${res.status}`);
          return { ready: res.at - proc.started };
        } finally {
          await stop(proc);
        }
      },
      'fastify bundled': async (signal) => {
        const proc = spawnServer(node, [fastifyJs], childEnv(cacheEnv), plainPort);
        try {
          const { port } = await proc.listening;
          const res = await post(`http://127.0.0.1:${port}/api/cron/fire`, '{}');
          if (res.status !== 202) throw new Error(`fastify baseline answered ${res.status}`);
          return { ready: res.at - proc.started };
        } finally {
          await stop(proc, signal);
        }
      },
      chronos: (signal) => spawnChronos(serveJs, signal),
      ...(pgStore
        ? {
            'chronos postgres': async (signal) => {
              const n = ++spawnNo;
              const jobId = `cold-${n}`;
              const dir = join(work, `data-${n}`);
              await cp(jwksDir, dir, { recursive: true });
              const path = `/hook/${n}`;
              const dueAt = Date.now();
              const job = lib.buildJob(
                { id: jobId, schedule: 'every 1h', target: { type: 'http', url: `${recorder.url}${path}` } },
                { now: dueAt, defaultTimezone: 'UTC', allowCommands: false, source: 'api' },
              );
              await pgStore.createJob({ ...job, next_run_at: dueAt });
              const token = await emulator.mintFireToken({ sub: jobId });
              const proc = spawnServer(
                node,
                [serveJs],
                childEnv({ ...chronosEnv(emulator, dir), ...cacheEnv, CHRONOS_DATABASE_URL: pgUrl }),
                chronosPort,
              );
              try {
                const { port, at: listenAt } = await proc.listening;
                const res = await post(
                  `http://127.0.0.1:${port}/api/cron/fire`,
                  JSON.stringify({ job_id: jobId, fire_at: new Date(dueAt).toISOString() }),
                  { authorization: `Bearer ${token}` },
                );
                if (res.status !== 202)
                  throw new Error(`chronos (postgres) answered ${res.status}: ${res.text}\n${proc.output()}`);
                return { listen: listenAt - proc.started, ready: res.at - proc.started };
              } finally {
                await stop(proc, signal);
                await rm(dir, { recursive: true, force: true });
                // The next spawn's start-up reconcile must not see this job (it would arm and list it).
                await pgStore.removeJob(jobId);
              }
            },
          }
        : {}),
    };
    if (compareJs) subjects['chronos (compare)'] = (signal) => spawnChronos(compareJs, signal);
    const flagArgs = (process.env.BENCH_COMPARE_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const flagEnv = parseEnv(process.env.BENCH_COMPARE_ENV);
    const withFlags = flagArgs.length > 0 || Object.keys(flagEnv).length > 0;
    if (withFlags) subjects['chronos (flags)'] = (signal) => spawnChronos(serveJs, signal, flagArgs, flagEnv);

    async function spawnChronos(entry, signal, nodeArgs = [], extraEnv = {}) {
      const n = ++spawnNo;
      const dir = join(work, `data-${n}`);
      const path = `/hook/${n}`;
      const dueAt = await prepareDataDir(lib, template, dir, `${recorder.url}${path}`);
      const token = await emulator.mintFireToken({ sub: JOB_ID });
      const reached = recorder.expect(path, 5_000);
      let runStarted;
      const runStartedAt = new Promise((resolve) => {
        runStarted = resolve;
      });
      // 'run started' is a step of the fire, logged at debug (the fire's info line comes at its end).
      const proc = spawnServer(
        node,
        [...nodeArgs, entry],
        childEnv({ ...chronosEnv(emulator, dir, { LOG_LEVEL: 'debug' }), ...cacheEnv, ...extraEnv }),
        chronosPort,
        (line, at) => {
          if (line.includes('"msg":"run started"')) runStarted(at);
        },
      );
      try {
        const { port, at: listenAt } = await proc.listening;
        const res = await post(`http://127.0.0.1:${port}/api/cron/fire`, fireBody(dueAt), {
          authorization: `Bearer ${token}`,
        });
        const cpu = await cpuMs(proc.child.pid);
        if (res.status !== 202)
          throw new Error(`chronos answered ${res.status}: ${res.text}\n${proc.output()}`);
        const timeout = new Promise((r) => setTimeout(() => r(null), 5_000));
        const startedAt = await Promise.race([runStartedAt, timeout]);
        if (startedAt === null)
          throw new Error(`the run did not start within 5 s of the fire:\n${proc.output()}`);
        const reachedAt = await reached;
        return {
          listen: listenAt - proc.started,
          ready: res.at - proc.started,
          cpu,
          runStarted: startedAt - proc.started,
          // null when the run failed before its request left (see the run's log line).
          targetReached: reachedAt === null ? null : reachedAt - proc.started,
        };
      } finally {
        await stop(proc, signal);
        await rm(dir, { recursive: true, force: true });
      }
    }

    if (cacheDir) {
      // Generate the cache as the image build does: one start that exits normally.
      await subjects['fastify bundled']('SIGTERM');
      await subjects.chronos('SIGTERM');
      if (compareJs) await subjects['chronos (compare)']('SIGTERM');
      if (withFlags) await subjects['chronos (flags)']('SIGTERM');
    }

    const names = Object.keys(subjects);
    const samples = Object.fromEntries(
      names.map((n) => [
        n,
        { ready: [], listen: [], cpu: [], runStarted: [], targetReached: [], targetMissed: 0 },
      ]),
    );
    const warmup = 2;
    for (let round = 0; round < warmup + spawns; round++) {
      // Rotate the order so no command always runs right after the same neighbour.
      const order = names.map((_, i) => names[(i + round) % names.length]);
      for (const name of order) {
        const m = await subjects[name]();
        if (round < warmup) continue;
        for (const [k, v] of Object.entries(m)) {
          if (v === null) samples[name].targetMissed += 1;
          else samples[name][k].push(v);
        }
      }
    }

    const stats = Object.fromEntries(
      names.map((n) => [
        n,
        {
          ready: summarise(samples[n].ready),
          listen: samples[n].listen.length ? summarise(samples[n].listen) : null,
          cpu: samples[n].cpu.length ? summarise(samples[n].cpu) : null,
          run_started: samples[n].runStarted.length ? summarise(samples[n].runStarted) : null,
          target_reached: samples[n].targetReached.length ? summarise(samples[n].targetReached) : null,
          target_missed: samples[n].targetMissed,
        },
      ]),
    );
    const candidate = stats.chronos.ready.median;
    const ratios = {
      chronos_over_fastify: candidate / stats['fastify bundled'].ready.median,
      chronos_over_raw_http: candidate / stats['raw node:http'].ready.median,
      ...(compareJs ? { chronos_over_compare: candidate / stats['chronos (compare)'].ready.median } : {}),
      ...(withFlags
        ? {
            flags_over_chronos: stats['chronos (flags)'].ready.median / candidate,
            flags_over_chronos_cpu: stats['chronos (flags)'].cpu.median / stats.chronos.cpu.median,
          }
        : {}),
      ...(stats['chronos postgres']
        ? { postgres_over_file: stats['chronos postgres'].ready.median / candidate }
        : {}),
    };

    log(
      `cold start (ms), ${spawns} spawns each, interleaved; node ${nodeVersion}${cacheDir ? ', compile cache' : ''}`,
    );
    log(
      table([
        ['command', 'measure', 'median', 'p90', 'min', 'max'],
        ...names.flatMap((n) => {
          const rows = [];
          const label = n === 'node -e 0' ? 'spawn → exit' : 'spawn → 202';
          rows.push([
            n,
            label,
            ms(stats[n].ready.median),
            ms(stats[n].ready.p90),
            ms(stats[n].ready.min),
            ms(stats[n].ready.max),
          ]);
          if (stats[n].listen) {
            const l = stats[n].listen;
            rows.push(['', 'spawn → listening', ms(l.median), ms(l.p90), ms(l.min), ms(l.max)]);
          }
          if (stats[n].cpu) {
            const c = stats[n].cpu;
            rows.push(['', 'CPU to 202', ms(c.median), ms(c.p90), ms(c.min), ms(c.max)]);
          }
          if (stats[n].run_started) {
            const j = stats[n].run_started;
            rows.push(['', 'spawn → run started', ms(j.median), ms(j.p90), ms(j.min), ms(j.max)]);
          }
          if (stats[n].target_reached) {
            const j = stats[n].target_reached;
            rows.push(['', 'spawn → target hit', ms(j.median), ms(j.p90), ms(j.min), ms(j.max)]);
          }
          return rows;
        }),
      ]),
    );
    if (stats.chronos.target_missed > 0) {
      log(`warning: ${stats.chronos.target_missed} runs never reached the http target (see the run log)`);
    }
    if (compareJs) {
      log(
        `chronos / chronos (compare: ${process.env.BENCH_COMPARE_DIST}) = ${ratios.chronos_over_compare.toFixed(3)}x (spawn → 202 medians)`,
      );
    }
    if (withFlags) {
      const variant = [...flagArgs, ...Object.entries(flagEnv).map(([k, v]) => `${k}=${v}`)].join(' ');
      log(
        `chronos (flags: ${variant}) / chronos = ${ratios.flags_over_chronos.toFixed(3)}x (spawn → 202 medians), ` +
          `${ratios.flags_over_chronos_cpu.toFixed(3)}x (CPU to 202 medians)`,
      );
    }
    const postgresPass = ratios.postgres_over_file === undefined || ratios.postgres_over_file <= 1.3;
    const pass = ratios.chronos_over_fastify <= 1.5 && ratios.chronos_over_raw_http <= 3 && postgresPass;
    log(
      `chronos / fastify bundled = ${ratios.chronos_over_fastify.toFixed(2)}x (target <= 1.5x); ` +
        `chronos / raw node:http = ${ratios.chronos_over_raw_http.toFixed(2)}x (target <= 3x)` +
        (ratios.postgres_over_file === undefined
          ? ''
          : `; chronos postgres / chronos (file) = ${ratios.postgres_over_file.toFixed(2)}x (target <= 1.3x)`) +
        `: ${pass ? 'met' : 'NOT met'}`,
    );
    const result = {
      benchmark: 'cold-start',
      target:
        'spawn → 202 median <= 1.5x minimal bundled Fastify and <= 3x raw node:http; with PostgreSQL <= 1.3x the file store',
      pass,
      node: nodeVersion,
      compile_cache: Boolean(cacheDir),
      spawns,
      measured_at: new Date().toISOString(),
      stats,
      ratios,
    };
    await writeResult(cacheDir ? 'cold-start-compile-cache' : 'cold-start', result);
    return result;
  } finally {
    await recorder.close();
    await emulator.close();
    await rm(work, { recursive: true, force: true });
    if (withPostgres()) await (await benchPostgres()).close();
  }
}

if (isMain(import.meta)) await run();
