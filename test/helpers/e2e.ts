import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, type TestContext } from 'vitest';
import {
  type Emulator,
  type EmulatorOptions,
  type FaultSwitches,
  startEmulator,
  startWakeProxy,
  type WakeProxy,
} from '../../src/emulator/index.js';
import { buildJob } from '../../src/jobs/build.js';
import type { JobSpecInput, RunRecord } from '../../src/jobs/model.js';
import { FileStore } from '../../src/store/file-store.js';
import { freePort } from './ports.js';

/*
 * End-to-end harness: the NAS emulator (in-process), a wake proxy in front of the production bundle
 * (dist/serve.js, a real child process started on demand), and a loopback recorder that plays the job
 * targets. Everything talks over real loopback HTTP; the only shared state is the data directory.
 */

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** The bundle under test. Overridable so a private build can be used while others rebuild dist/. */
export const SERVE_JS = process.env.CHRONOS_E2E_SERVE_JS ?? join(REPO_ROOT, 'dist/serve.js');

let snapshot: Promise<string> | undefined;

/**
 * A private copy of the bundle, taken once per test file: in a shared working tree another `vitest` run
 * rebuilds dist/ (rm, then write) at any moment, and a process woken during that window would find
 * nothing to load. The copy is accepted only when dist/ listed the same files before and after it.
 */
export function bundleSnapshot(): Promise<string> {
  snapshot ??= (async () => {
    const source = dirname(SERVE_JS);
    const list = async (dir: string) => (await readdir(dir, { recursive: true })).sort().join('\n');
    const deadline = Date.now() + 30_000;
    for (;;) {
      const target = await mkdtemp(join(tmpdir(), 'chronos-e2e-dist-'));
      try {
        const before = await list(source);
        await cp(source, target, { recursive: true });
        if (
          before.includes(basename(SERVE_JS)) &&
          before === (await list(source)) &&
          before === (await list(target))
        ) {
          return join(target, basename(SERVE_JS));
        }
      } catch {
        // dist/ vanished while copying: a rebuild is under way.
      }
      await rm(target, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`no complete build at ${source}: run npm run build`);
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  return snapshot;
}

export async function removeBundleSnapshot(): Promise<void> {
  const taken = snapshot;
  snapshot = undefined;
  if (taken) await rm(dirname(await taken), { recursive: true, force: true });
}

export interface Hit {
  path: string;
  method: string;
  job: string;
  fireAt: string;
  run: string;
  at: number;
}

export interface Recorder {
  url: string;
  hits(): Hit[];
  /** Hits whose X-Chronos-Job is `job`. */
  hitsFor(job: string): Hit[];
  /** Answers 200 to the requests held open so far (a slow target finishing). */
  releaseHung(): void;
  close(): Promise<void>;
}

/**
 * Answers 200 to everything, except that the first request to a path starting with `/hang-once/` is held
 * open until `releaseHung()` (or close): the "slow target" a process can be killed in the middle of.
 */
export async function startRecorder(onHit: () => void = () => {}): Promise<Recorder> {
  const hits: Hit[] = [];
  const hung = new Set<string>();
  const held: ServerResponse[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => {
      const header = (name: string) => String(req.headers[name] ?? '');
      const path = req.url ?? '/';
      hits.push({
        path,
        method: req.method ?? '',
        job: header('x-chronos-job'),
        fireAt: header('x-chronos-fire-at'),
        run: header('x-chronos-run'),
        at: Date.now(),
      });
      onHit();
      if (path.startsWith('/hang-once/') && !hung.has(path)) {
        hung.add(path);
        held.push(res);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    hits: () => [...hits],
    hitsFor: (job) => hits.filter((h) => h.job === job),
    releaseHung() {
      for (const res of held.splice(0)) {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('ok');
      }
    },
    async close() {
      for (const res of held) res.destroy();
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
    },
  };
}

/** See ./ports.ts: a port that another process binds later. */
export { freePort };

/** One parsed pino line of a Chronos process. */
export interface ChronosLog {
  pid: number;
  level: number;
  msg: string;
  [field: string]: unknown;
}

export interface StackOptions {
  /**
   * Jobs written to the data dir (as jobs-file jobs) before Chronos first starts; a function receives the
   * recorder's base URL for http targets.
   */
  jobs: JobSpecInput[] | ((recorderUrl: string) => JobSpecInput[]);
  /** When the seeded jobs were created (their `every` grid's anchor); default now. */
  seededAt?: number;
  idleExitSeconds?: number;
  /** Extra environment for Chronos. */
  env?: Record<string, string>;
  /** Emulator options, e.g. `{ strict: true }` (docs/emulator.md); its `faults` merge under `faults` below. */
  emulator?: Omit<EmulatorOptions, 'log' | 'deliverVia'>;
  /** Applied before anything starts, after `emulator.strict`. */
  faults?: Partial<FaultSwitches>;
  /** The argv that starts Chronos, from node and the bundle (default `[node, bundle]`), e.g. to lower a ulimit. */
  command?: (node: string, bundle: string) => string[];
}

export interface Stack {
  nas: Emulator;
  proxy: WakeProxy;
  recorder: Recorder;
  dataDir: string;
  /** The proxy's URL: Chronos's public (callback) URL. */
  url: string;
  /** Where the Chronos process itself listens (while it runs), bypassing the wake proxy. */
  direct: { host: string; port: number };
  logs(): ChronosLog[];
  logsWith(msg: string): ChronosLog[];
  /** GET requests the JWKS endpoint received (it is served through a counting relay). */
  jwksRequests(): number;
  /** Run history from the data dir (reads take no lock, so this is safe while Chronos runs). */
  runs(jobId: string): Promise<RunRecord[]>;
  store(): Promise<FileStore>;
  /** Start Chronos (if stopped) by sending it a request, as a platform health check would. */
  wake(): Promise<void>;
  /**
   * Resolves once `predicate` holds. Re-checked after every event (emulator, proxy, Chronos output,
   * recorder hit) and every 100 ms for state only readable from disk. Rejects with a transcript on timeout.
   */
  waitFor(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs?: number): Promise<void>;
  /** Human transcript of everything that happened (for failure messages). */
  transcript(): string;
  close(): Promise<void>;
}

function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    // Extra CA certificates cost every Node start ~55 ms; inherited Chronos settings would leak into the test.
    if (key === 'NODE_EXTRA_CA_CERTS' || key.startsWith('CHRONOS_') || key === 'PORT' || key === 'HOST')
      continue;
    if (key === 'LOG_LEVEL') continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

export async function seedJobs(dataDir: string, specs: JobSpecInput[], now = Date.now()): Promise<void> {
  const store = await FileStore.open({ dir: dataDir });
  try {
    for (const spec of specs) {
      await store.createJob(
        buildJob(spec, { now, defaultTimezone: 'UTC', allowCommands: true, source: 'file' }),
      );
    }
  } finally {
    await store.close();
  }
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const dataDir = await mkdtemp(join(tmpdir(), 'chronos-e2e-'));
  const listeners = new Set<() => void>();
  const events: string[] = [];
  const logs: ChronosLog[] = [];
  const notify = () => {
    for (const listener of [...listeners]) listener();
  };
  const note = (line: string) => {
    events.push(`${new Date().toISOString().slice(11, 23)} ${line}`);
    notify();
  };

  const recorder = await startRecorder(notify);
  await seedJobs(
    dataDir,
    typeof options.jobs === 'function' ? options.jobs(recorder.url) : options.jobs,
    options.seededAt,
  );

  // Faults go through startEmulator so they are validated and applied after `strict`, before anything runs.
  const nas = await startEmulator({
    ...options.emulator,
    faults: { ...options.emulator?.faults, ...options.faults },
    log: (line) => note(`[nas] ${line}`),
  }).catch(async (err: unknown) => {
    await recorder.close();
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  });

  // The JWKS is fetched through this relay so the test can count refreshes.
  let jwksCount = 0;
  const jwksRelay = createServer((req, res) => {
    jwksCount += 1;
    note(`[jwks] ${req.method} ${req.url}`);
    void fetch(nas.jwksUrl).then(
      async (reply) => {
        res.writeHead(reply.status, { 'content-type': 'application/json' });
        res.end(await reply.text());
      },
      () => {
        res.writeHead(502);
        res.end();
      },
    );
  });
  await new Promise<void>((r) => jwksRelay.listen(0, '127.0.0.1', r));
  const jwksUrl = `http://127.0.0.1:${(jwksRelay.address() as { port: number }).port}/.well-known/jwks.json`;

  const [targetPort, proxyPort] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${proxyPort}`;
  const env = childEnv({
    CHRONOS_PROVIDER: 'chronos',
    CHRONOS_PORTAL_URL: nas.url,
    CHRONOS_CALLBACK_URL: url,
    CHRONOS_EXPECTED_AUDIENCE: nas.audience,
    CHRONOS_JWKS_URL: jwksUrl,
    CHRONOS_ACCESS_TOKEN: nas.agentToken,
    CHRONOS_DATA_DIR: dataDir,
    CHRONOS_IDLE_EXIT_SECONDS: String(options.idleExitSeconds ?? 1),
    CHRONOS_SHUTDOWN_GRACE_SECONDS: '2',
    PORT: String(targetPort),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    ...options.env,
  });

  const partial = new Map<string, string>();
  const onOutput = (stream: 'stdout' | 'stderr', text: string) => {
    const buffered = (partial.get(stream) ?? '') + text;
    const lines = buffered.split('\n');
    partial.set(stream, lines.pop() ?? '');
    for (const line of lines) {
      if (line.trim() === '') continue;
      try {
        const parsed = JSON.parse(line) as ChronosLog;
        logs.push(parsed);
        const { level, msg, pid, time: _time, service: _service, ...rest } = parsed;
        note(`[chronos ${pid}] ${level >= 40 ? 'WARN ' : ''}${msg} ${JSON.stringify(rest)}`);
      } catch {
        note(`[chronos ${stream}] ${line}`);
      }
    }
  };
  const proxy = await startWakeProxy({
    target: { host: '127.0.0.1', port: targetPort },
    command: (options.command ?? ((node, bundle) => [node, bundle]))(
      process.execPath,
      await bundleSnapshot(),
    ),
    env,
    cwd: dataDir,
    listenPort: proxyPort,
    killGraceMs: 3_000,
    // The proxy's default (10 s) is a platform's patience; on a test machine busy with other processes a
    // start has taken longer, and no test here is about the start-up time (the benchmarks measure it).
    readyTimeoutMs: 30_000,
    onOutput,
    log: (line) => note(`[wake] ${line}`),
  });

  let store: Promise<FileStore> | undefined;
  const getStore = () => {
    store ??= FileStore.open({ dir: dataDir });
    return store;
  };
  const transcript = () => events.join('\n');

  return {
    nas,
    proxy,
    recorder,
    dataDir,
    url,
    direct: { host: '127.0.0.1', port: targetPort },
    logs: () => [...logs],
    logsWith: (msg) => logs.filter((l) => l.msg === msg),
    jwksRequests: () => jwksCount,
    runs: async (jobId) => (await getStore()).listRuns(jobId),
    store: getStore,
    async wake() {
      const reply = await fetch(`${url}/healthz`);
      if (!reply.ok) throw new Error(`wake: /healthz answered ${reply.status}\n${transcript()}`);
    },
    waitFor(what, predicate, timeoutMs = 15_000) {
      return new Promise<void>((resolvePromise, reject) => {
        let checking = false;
        let again = false;
        let done = false;
        const finish = (err?: Error) => {
          if (done) return;
          done = true;
          listeners.delete(check);
          clearInterval(interval);
          clearTimeout(deadline);
          if (err) reject(err);
          else resolvePromise();
        };
        const check = () => {
          if (done) return;
          if (checking) {
            again = true;
            return;
          }
          checking = true;
          void Promise.resolve()
            .then(predicate)
            .then(
              (ok) => {
                checking = false;
                if (ok) finish();
                else if (again) {
                  again = false;
                  check();
                }
              },
              (err: Error) => finish(err),
            );
        };
        const interval = setInterval(check, 100);
        const deadline = setTimeout(
          () =>
            finish(
              new Error(
                `timed out after ${timeoutMs} ms waiting for: ${what}\n--- transcript ---\n${transcript()}`,
              ),
            ),
          timeoutMs,
        );
        listeners.add(check);
        check();
      });
    },
    transcript,
    async close() {
      await proxy.close();
      await nas.close();
      await recorder.close();
      await new Promise<void>((r) => {
        jwksRelay.close(() => r());
        jwksRelay.closeAllConnections();
      });
      if (store) await (await store).close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * `startStack` for one test file: every stack started through it is closed after its test. Tests that run
 * concurrently (`describe.concurrent`, each NAS mode beside the other) pass their test context: an
 * `afterEach` would close the stacks of every test still running, and vitest's global `onTestFinished`
 * cannot tell concurrent tests apart.
 */
export function e2eStacks(): (
  options: StackOptions,
  test?: Pick<TestContext, 'onTestFinished'>,
) => Promise<Stack> {
  const open: Stack[] = [];
  afterEach(async () => {
    for (const stack of open.splice(0)) await stack.close();
  });
  afterAll(removeBundleSnapshot);
  return async (options, test) => {
    const stack = await startStack(options);
    if (test) test.onTestFinished(() => stack.close());
    else open.push(stack);
    return stack;
  };
}

/** Starts of the Chronos process that ended on their own with exit code 0 (idle exit). */
export function idleExits(proxy: WakeProxy): number {
  return proxy.starts().filter((s) => s.exitCode === 0 && s.signal === null).length;
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * The two NAS readings every loop scenario runs against: the emulator's friendly defaults, and the strict
 * switches (remembered keys, rows removed after deliveries, bounded attempts, terse replies, list quirks).
 */
export const NAS_MODES = [
  { nas: 'default', emulator: {} },
  { nas: 'strict', emulator: { strict: true } },
] as const satisfies ReadonlyArray<{ nas: string; emulator: { strict?: boolean } }>;

/** Hop-1 calls NAS received during each start of the Chronos process that ended on its own. */
export function callsPerWake(s: Stack): Array<{ provision: number; cancel: number; list: number }> {
  return s.proxy
    .starts()
    .filter((start) => start.exitedAt !== undefined)
    .map((start) => {
      const counts = { provision: 0, cancel: 0, list: 0 };
      for (const call of s.nas.provisions()) {
        const at = Date.parse(call.at);
        if (at >= start.startedAt && at <= start.exitedAt!) counts[call.kind] += 1;
      }
      return counts;
    });
}
