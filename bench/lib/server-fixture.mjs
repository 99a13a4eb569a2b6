// A spawned production Chronos (chronos provider, in-process emulator) with N jobs due now, one fire
// token per job minted ahead, for the warm-fire and memory benchmarks.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { childEnv, chronosEnv, distDir, importInternals, quietEmulator } from './common.mjs';
import { chronosPort, spawnServer, startRecorder, stop } from './processes.mjs';

/**
 * Jobs are `every 1h` with next_run_at set to one shared instant just before start, so each job's
 * first fire carries fire_at == next_run_at (accepted) and a re-send of it is a duplicate.
 */
export async function startChronosServer({ jobs, env = {} }) {
  const lib = await importInternals();
  const work = await mkdtemp(join(tmpdir(), 'chronos-bench-server-'));
  const emulator = await quietEmulator();
  const recorder = await startRecorder();
  const dataDir = join(work, 'data');
  const store = await lib.FileStore.open({ dir: dataDir });
  const dueAt = Date.now();
  const ids = [];
  for (let i = 0; i < jobs; i++) {
    const job = lib.buildJob(
      { id: `job-${i}`, schedule: 'every 1h', target: { type: 'http', url: `${recorder.url}/hook/${i}` } },
      { now: dueAt, defaultTimezone: 'UTC', allowCommands: false, source: 'api' },
    );
    await store.createJob({ ...job, next_run_at: dueAt });
    ids.push(job.id);
  }
  await store.close();
  await writeFile(
    join(dataDir, 'jwks-cache.json'),
    JSON.stringify({ fetched_at: dueAt, jwks: emulator.jwks() }),
  );
  const tokens = [];
  for (let i = 0; i < jobs; i++) tokens.push(await emulator.mintFireToken({ sub: `job-${i}` }));
  const fireAt = new Date(dueAt).toISOString();

  // Counted from each fire's one info line ('job ran'), written once its run has ended.
  let runs = 0;
  let reconciles = 0;
  const serveJs = fileURLToPath(new URL('serve.js', await distDir()));
  const proc = spawnServer(
    process.execPath,
    // BENCH_SERVER_NODE_ARGS: extra node flags for the server, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
    [...(process.env.BENCH_SERVER_NODE_ARGS?.split(' ').filter(Boolean) ?? []), serveJs],
    childEnv({ ...chronosEnv(emulator, dataDir), CHRONOS_FIRE_RATE_LIMIT: '1000000', ...env }),
    chronosPort,
    (line) => {
      if (line.includes('"msg":"job ran"')) runs += 1;
      else if (line.includes('"msg":"reconcile: ')) reconciles += 1;
    },
  );
  const { port } = await proc.listening;
  const waitUntil = async (predicate, timeoutMs, what, pollMs = 20) => {
    const deadline = performance.now() + timeoutMs;
    while (!predicate()) {
      if (performance.now() > deadline)
        throw new Error(`timed out waiting for ${what}\n${proc.output().slice(-4000)}`);
      await new Promise((r) => setTimeout(r, pollMs));
    }
  };
  // The start-up reconcile arms every job at the emulator; measuring during it would measure it.
  await waitUntil(() => reconciles > 0, 120_000, 'the start-up reconcile');

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
    waitUntil,
    output: proc.output,
    async close() {
      // SIGTERM when profiling: --cpu-prof writes its file only on a normal exit.
      await stop(proc, process.env.BENCH_SERVER_NODE_ARGS ? 'SIGTERM' : 'SIGKILL');
      await recorder.close();
      await emulator.close();
      await rm(work, { recursive: true, force: true });
    },
  };
}
