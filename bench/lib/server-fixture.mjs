// A spawned production Chronos (chronos provider, in-process emulator) with N jobs due now, one fire
// token per job minted ahead, for the warm-fire and memory benchmarks.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { childEnv, chronosEnv, distDir, importDist, importInternals } from './common.mjs';
import { benchPostgres, postgresModules } from './postgres.mjs';
import { chronosPort, spawnServer, startRecorder, stop } from './processes.mjs';

/** With `adminApi`: what the benchmark presents to `GET /api/status`. */
const ADMIN_TOKEN = 'bench-admin-token-0123456789abcdef';

/**
 * Jobs are `every 1h` with next_run_at set to one shared instant 30 s after start, so each job's
 * first fire carries fire_at == next_run_at (accepted) and a re-send of it is a duplicate.
 * `store: 'postgres'` keeps them in a new database on the benchmarks' PostgreSQL server (CHRONOS_DATABASE_URL).
 * `dist`: the directory (URL) of another build whose serve.js is spawned instead of this tree's.
 * `runMessage`: the log line that ends a fire's work ('job ran'; an older build's 'run finished').
 * `adminApi`: switch the admin API on (CHRONOS_ADMIN_TOKEN) for `reconciledSinceLastRunByStatus`.
 * `ledgerRows`: settled rows each job's ledger holds already (hourly occurrences before the due one), as
 * for a job that has run that often; at most the ledger retention (200) stay.
 */
export async function startChronosServer({
  jobs,
  env = {},
  store: kind = 'file',
  onLine = () => {},
  dist,
  runMessage = 'job ran',
  adminApi = false,
  ledgerRows = 0,
  // BENCH_SERVER_NODE_ARGS: extra node flags for the server, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  nodeArgs = process.env.BENCH_SERVER_NODE_ARGS?.split(' ').filter(Boolean) ?? [],
}) {
  const lib = await importInternals();
  const work = await mkdtemp(join(tmpdir(), 'chronos-bench-server-'));
  // NAS holds every arm and never delivers it (its timers never fire): Chronos must not find a due
  // occurrence missing at NAS and claim it itself before the benchmark's own fires.
  const { startEmulator } = await importDist('emulator.js');
  const emulator = await startEmulator({
    clock: { now: () => Date.now(), setTimeout: () => ({ unref() {} }), clearTimeout() {} },
  });
  const recorder = await startRecorder();
  const dataDir = join(work, 'data');
  let storeEnv = {};
  let store;
  if (kind === 'postgres') {
    const databaseUrl = await (await benchPostgres()).database('server');
    store = await (await postgresModules()).PostgresStore.open({ url: databaseUrl });
    storeEnv = { CHRONOS_DATABASE_URL: databaseUrl };
  } else {
    store = await lib.FileStore.open({ dir: dataDir });
  }
  // Due in 30 s: armed at NAS by the start-up reconcile (not claimed as overdue), and within the window in
  // which a fire may arrive early (60 s), so every first fire is accepted.
  const dueAt = Date.now() + 30_000;
  const ids = [];
  for (let i = 0; i < jobs; i++) {
    const job = lib.buildJob(
      { id: `job-${i}`, schedule: 'every 1h', target: { type: 'http', url: `${recorder.url}/hook/${i}` } },
      { now: Date.now(), defaultTimezone: 'UTC', allowCommands: false, source: 'api' },
    );
    await store.createJob({ ...job, next_run_at: dueAt });
    if (ledgerRows > 0) {
      const rows = Array.from({ length: ledgerRows }, (_, k) => {
        const at = dueAt - (k + 1) * 3_600_000;
        return {
          job_id: job.id,
          fire_at: at,
          status: 'finished',
          trigger: 'nas',
          run_id: `earlier-${k}`,
          owner: { boot_id: 'an-earlier-process', pid: 1, host: 'bench' },
          claimed_at: at,
          expires_at: at + 600_000,
        };
      });
      await store.transact(job.id, () => ({ ledger: rows, result: undefined }));
    }
    ids.push(job.id);
  }
  await store.close();
  await mkdir(dataDir, { recursive: true });
  await writeFile(
    join(dataDir, 'jwks-cache.json'),
    JSON.stringify({ fetched_at: Date.now(), jwks: emulator.jwks() }),
  );
  // Fire tokens live about two minutes: minted ahead, and again whenever the benchmark asks (a slow machine
  // can take longer than that over all the fires).
  const tokens = [];
  const mintedAt = [];
  const mint = async (i) => {
    tokens[i] = await emulator.mintFireToken({ sub: `job-${i}` });
    mintedAt[i] = Date.now();
  };
  for (let i = 0; i < jobs; i++) await mint(i);
  const fireAt = new Date(dueAt).toISOString();

  // Counted from each fire's one info line ('job ran'), written once its run has ended.
  let runs = 0;
  // When the server logged the last of them (its own clock, the line's `time`).
  let lastRunLoggedAt = 0;
  let reconciles = 0;
  // Reconcile passes logged (a pass that changed nothing is a debug line) by the time the last run ended.
  let reconcilesAtLastRun = 0;
  const serveJs = fileURLToPath(new URL('serve.js', dist ?? (await distDir())));
  const proc = spawnServer(
    process.execPath,
    [...nodeArgs, serveJs],
    childEnv({
      ...chronosEnv(emulator, dataDir),
      CHRONOS_FIRE_RATE_LIMIT: '1000000',
      ...(adminApi ? { CHRONOS_ADMIN_TOKEN: ADMIN_TOKEN } : {}),
      ...storeEnv,
      ...env,
    }),
    chronosPort,
    (line) => {
      onLine(line);
      if (line.includes(`"msg":"${runMessage}"`)) {
        runs += 1;
        lastRunLoggedAt = Date.parse(/"time":"([^"]+)"/.exec(line)?.[1] ?? '') || Date.now();
        reconcilesAtLastRun = reconciles;
      } else if (line.includes('"msg":"reconcile: ')) reconciles += 1;
    },
  );
  const { port } = await proc.listening;
  const waitUntil = async (predicate, timeoutMs, what, pollMs = 20) => {
    const deadline = performance.now() + timeoutMs;
    while (!(await predicate())) {
      if (performance.now() > deadline)
        throw new Error(`timed out waiting for ${what}\n${proc.output().slice(-4000)}`);
      await new Promise((r) => setTimeout(r, pollMs));
    }
  };
  // The start-up reconcile arms every job at the emulator; measuring during it would measure it.
  await waitUntil(() => reconciles > 0, 120_000, 'the start-up reconcile');

  // Its own connection, so that status polls never share the measured keep-alive connection.
  const statusPool = new Pool(`http://127.0.0.1:${port}`, { connections: 1 });

  return {
    url: `http://127.0.0.1:${port}`,
    pid: proc.child.pid,
    ids,
    /** The request for job i's due occurrence (accepted the first time, a duplicate afterwards). */
    fire(i) {
      return {
        body: JSON.stringify({ job_id: ids[i], fire_at: fireAt }),
        headers: { authorization: `Bearer ${tokens[i]}`, 'content-type': 'application/json' },
      };
    },
    /** Runs that have ended (each fire's 'job ran' line). */
    runs: () => runs,
    /**
     * A reconcile pass has ended since the last run did: the pass each fire asks for once its run is over
     * (debounced) is done, so the process is idle again. Needs LOG_LEVEL=debug (an unchanged pass is a
     * debug line).
     */
    reconciledSinceLastRun: () => reconciles > reconcilesAtLastRun,
    /**
     * The same, asked of `GET /api/status` (its `last_reconcile.at`, when the latest pass ended), so that the
     * server can run at the production log level: a pass that changed nothing writes no info line. The pass
     * a run asks for is debounced (50 ms) after the run's line, so one ending after that line is it.
     */
    async reconciledSinceLastRunByStatus() {
      const res = await statusPool.request({
        method: 'GET',
        path: '/api/status',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      const body = await res.body.json();
      if (res.statusCode !== 200)
        throw new Error(`/api/status answered ${res.statusCode}: ${JSON.stringify(body)}`);
      const at = body.last_reconcile?.at;
      return typeof at === 'string' && Date.parse(at) > lastRunLoggedAt;
    },
    /** Re-mints job i's token when it is older than a minute (outside any timed request). */
    async freshToken(i) {
      if (Date.now() - mintedAt[i] > 60_000) await mint(i);
    },
    /** Re-mints every token. */
    async mintTokens() {
      for (let i = 0; i < jobs; i++) await mint(i);
    },
    waitUntil,
    output: proc.output,
    /** `normal`: SIGTERM and a drained exit, e.g. to let Node write its compile cache. */
    async close({ normal = false } = {}) {
      // SIGTERM when profiling: --cpu-prof writes its file only on a normal exit.
      await statusPool.close();
      await stop(proc, normal || process.env.BENCH_SERVER_NODE_ARGS ? 'SIGTERM' : 'SIGKILL');
      await recorder.close();
      await emulator.close();
      await rm(work, { recursive: true, force: true });
    },
  };
}
