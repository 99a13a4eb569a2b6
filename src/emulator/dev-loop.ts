import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ChronosError, errorMessage } from '../errors.js';
import { rewriteOrigin } from './cli.js';
import { type Emulator, startEmulator } from './emulator.js';
import { startWakeProxy, type WakeProxy } from './wake-proxy.js';

export const DEV_LOOP_USAGE = `Usage: chronos dev [options]

The local scale-to-zero loop: a NAS emulator, a wake proxy that starts Chronos (dist/serve.js) when a
fire arrives, Chronos in chronos mode with idle exit, and a sample app that the jobs call.

Options:
  --jobs FILE        jobs file (default examples/dev-jobs.json)
  --nas-port N       NAS emulator port (default 4100)
  --port N           Chronos's public port: the wake proxy (default 8080; 0 = any free port)
  --app-port N       sample app the jobs call (default 4180, as in examples/dev-jobs.json)
  --idle-exit S      Chronos exits after S idle seconds once every job is armed (default 3)
  --data-dir DIR     Chronos data directory (default .chronos-data/dev)
  --keep-data        keep the data directory from the previous run (default: start fresh)
  --strict           run the emulator in strict mode (chronos emulator --help, docs/emulator.md)
  --reset            empty --data-dir even though chronos dev did not create it (it deletes that data)
  -h, --help         this text

A fresh start empties the data directory only when chronos dev made it (it leaves a .chronos-dev file
there): a directory holding another Chronos's data is refused unless --reset is given.
Ctrl-C stops everything; so does closing its output (chronos dev | head).`;

/** Left in a data directory chronos dev created, so a later fresh start knows it may empty it. */
export const DEV_MARKER = '.chronos-dev';
const DEFAULT_DATA_DIR = '.chronos-data/dev';

export interface DevLoopIo {
  /** Where lines go (default console.log). */
  out?: (line: string) => void;
  /** Stops the loop like Ctrl-C would (tests). */
  signal?: AbortSignal;
  /** Called once everything listens and Chronos has been started once. */
  onReady?: (info: { nasUrl: string; chronosUrl: string; appUrl: string }) => void;
  /** The production bundle to run (default: dist/serve.js next to this bundle, or under the working directory). */
  serveJs?: string;
}

interface ChronosLogLine {
  level?: number;
  msg?: string;
  [field: string]: unknown;
}

/**
 * `chronos dev` (`npm run dev`). Resolves when stopped; a missing build or an unusable option sets
 * process.exitCode = 1 after saying what to do.
 */
export async function runDevLoop(argv: string[], io: DevLoopIo = {}): Promise<void> {
  // Option problems are thrown: the CLI prints them as usage errors (exit 2).
  const values = parseDevArgs(argv);
  // Once stdout is gone (`chronos dev | head` after head exits), writing to it throws EPIPE: the loop then
  // stops as on Ctrl-C, stopping Chronos and the emulator, instead of crashing and orphaning them.
  const outputGone = new AbortController();
  let write = io.out ?? ((line: string) => console.log(line));
  const onStdoutError = (err: NodeJS.ErrnoException) => {
    write = () => {};
    if (err.code !== 'EPIPE') process.exitCode = 1;
    outputGone.abort();
  };
  if (!io.out) process.stdout.on('error', onStdoutError);
  try {
    await runLoop(values, io, (line) => write(line), outputGone.signal);
  } finally {
    process.stdout.off('error', onStdoutError);
  }
}

async function runLoop(
  values: ReturnType<typeof parseDevArgs>,
  io: DevLoopIo,
  write: (line: string) => void,
  outputGone: AbortSignal,
): Promise<void> {
  const out = (source: string, text: string) => write(`${clock()} ${`[${source}]`.padEnd(9)} ${text}`);
  if (values.help) {
    write(DEV_LOOP_USAGE);
    return;
  }

  const serveJs = io.serveJs ?? findServeBundle();
  if (!serveJs) {
    write(
      'chronos dev: dist/serve.js not found: run npm run build first (npm run dev builds before starting).',
    );
    process.exitCode = 1;
    return;
  }
  const jobsFile = findJobsFile(values.jobs, serveJs);
  if (!jobsFile) {
    write(`chronos dev: jobs file ${values.jobs} not found.`);
    process.exitCode = 1;
    return;
  }

  const dataDir = resolve(values.dataDir);
  // The emulator starts with no arms, so the data dir starts empty too: otherwise every job would look
  // overdue from the last session and the first minute would be misfire catch-up instead of the loop.
  if (!values.keepData) {
    const names = await readdir(dataDir).catch(() => [] as string[]);
    const foreign = names.filter((name) => !DATA_DIR_ENTRIES.test(name) && name !== DEV_MARKER);
    if (foreign.length > 0) {
      write(
        `chronos dev: ${values.dataDir} holds files Chronos did not write (${foreign.slice(0, 3).join(', ')}); ` +
          'pass another --data-dir, or --keep-data to use it as it is.',
      );
      process.exitCode = 1;
      return;
    }
    // Another Chronos's data (a `chronos serve` data dir given by mistake) is not emptied without --reset.
    const ours = names.includes(DEV_MARKER) || resolve(DEFAULT_DATA_DIR) === dataDir;
    if (names.length > 0 && !ours && !values.reset) {
      write(
        `chronos dev: ${values.dataDir} holds the data of a Chronos that chronos dev did not start; a fresh start ` +
          'would delete its jobs and history. Pass another --data-dir, --keep-data to use it as it is, or ' +
          '--reset to empty it.',
      );
      process.exitCode = 1;
      return;
    }
    await rm(dataDir, { recursive: true, force: true });
  }
  await mkdir(dataDir, { recursive: true });
  if (!values.keepData)
    await writeFile(join(dataDir, DEV_MARKER), 'made by chronos dev: emptied at each fresh start\n');

  const app = await startSampleApp(values.appPort, (line) => out('app', line)).catch((err: Error) => {
    out('dev', `sample app not started (${err.message}); jobs that call it will fail`);
    return undefined;
  });

  const appUrl = app ? `http://127.0.0.1:${(app.address() as AddressInfo).port}` : '';
  let proxy: WakeProxy | undefined;
  let nas: Emulator | undefined;
  const stopAll = async () => {
    await proxy?.close();
    await nas?.close();
    if (app) await closeServer(app);
  };

  try {
    const targetPort = await freePort();
    // The callback URL goes into Chronos's environment before the proxy listens, so port 0 is resolved here.
    const proxyPort = values.port === 0 ? await freePort() : values.port;
    const proxyUrl = `http://127.0.0.1:${proxyPort}`;
    nas = await startEmulator({
      port: values.nasPort,
      strict: values.strict,
      log: (line) => {
        if (!line.startsWith('listen') && !line.startsWith('closed')) out('nas', line.replace(/ {2,}/g, ' '));
      },
      deliverVia: (fireUrl) => rewriteOrigin(fireUrl, proxyUrl),
    });
    const nasUrl = nas.url;

    const chronosLog = new ChronosLogTranslator((text) => out('chronos', text));
    proxy = await startWakeProxy({
      target: { host: '127.0.0.1', port: targetPort },
      command: [process.execPath, serveJs],
      env: {
        ...process.env,
        CHRONOS_PROVIDER: 'chronos',
        CHRONOS_PORTAL_URL: nasUrl,
        CHRONOS_CALLBACK_URL: proxyUrl,
        CHRONOS_EXPECTED_AUDIENCE: nas.audience,
        CHRONOS_JWKS_URL: nas.jwksUrl,
        CHRONOS_ACCESS_TOKEN: nas.agentToken,
        CHRONOS_ACCESS_TOKEN_FILE: '',
        CHRONOS_FIRE_PUBLIC_KEY: '',
        CHRONOS_DATA_DIR: dataDir,
        CHRONOS_JOBS_FILE: jobsFile,
        CHRONOS_IDLE_EXIT_SECONDS: String(values.idleExit),
        PORT: String(targetPort),
        HOST: '127.0.0.1',
        // The loop is shown step by step (fire accepted, armed, run finished): those steps are at debug.
        LOG_LEVEL: 'debug',
        LOG_FORMAT: 'json',
      },
      listenPort: proxyPort,
      onOutput: (stream, text) => chronosLog.push(stream, text),
      log: (line) => {
        const text = describeWakeEvent(line, proxy, () => chronosLog.idleExitPending());
        if (text) out(text.startsWith('wake') ? 'wake' : 'chronos', text.replace(/^wake /, ''));
      },
    });

    const show = (path: string) => relative(process.cwd(), path) || '.';
    const strictNote = nas.strict ? 'strict, ' : '';
    out('dev', `NAS emulator  ${nasUrl}   (${strictNote}state: curl ${nasUrl}/_emulator/state)`);
    out('dev', `Chronos       ${proxyUrl}   (wake proxy: starts ${show(serveJs)} on demand)`);
    if (app) out('dev', `sample app    ${appUrl}`);
    out(
      'dev',
      `jobs ${show(jobsFile)}, data ${show(dataDir)}${values.keepData ? '' : ' (fresh)'}, idle exit ${values.idleExit} s`,
    );
    out(
      'dev',
      process.env['CHRONOS_ADMIN_TOKEN']
        ? `admin API on: chronos jobs list --url ${proxyUrl} (same CHRONOS_ADMIN_TOKEN)`
        : 'admin API off: set CHRONOS_ADMIN_TOKEN (16+ characters) before chronos dev to use chronos jobs',
    );
    out('dev', 'starting Chronos once so that it arms its jobs; Ctrl-C stops everything');

    // Nothing is armed yet, so no fire would ever arrive: wake Chronos the way a deploy would.
    const first = await fetch(`${proxyUrl}/healthz`).catch((err: Error) => err);
    if (first instanceof Error || !first.ok) {
      const why = first instanceof Error ? first.message : `HTTP ${first.status}`;
      out('dev', `Chronos did not start (${why}); see its output above`);
      process.exitCode = 1;
      await stopAll();
      return;
    }
    io.onReady?.({ nasUrl, chronosUrl: proxyUrl, appUrl });
  } catch (err) {
    await stopAll();
    const message = isAddressInUse(err)
      ? `a port is already in use (${errorMessage(err)}); pick others with --nas-port / --port / --app-port`
      : errorMessage(err);
    write(`chronos dev: ${message}`);
    process.exitCode = 1;
    return;
  }

  await new Promise<void>((resolveStop) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      io.signal?.removeEventListener('abort', stop);
      resolveStop();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    outputGone.addEventListener('abort', stop, { once: true });
    if (io.signal?.aborted || outputGone.aborted) stop();
    else io.signal?.addEventListener('abort', stop, { once: true });
  });
  out('dev', 'stopping');
  await stopAll();
  out('dev', 'stopped');
}

function parseDevArgs(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: false,
    strict: true,
    options: {
      jobs: { type: 'string' },
      'nas-port': { type: 'string' },
      port: { type: 'string' },
      'app-port': { type: 'string' },
      'idle-exit': { type: 'string' },
      'data-dir': { type: 'string' },
      'keep-data': { type: 'boolean' },
      strict: { type: 'boolean' },
      reset: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const problems: string[] = [];
  const int = (raw: string | undefined, fallback: number, flag: string, min: number, max: number): number => {
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || n < min || n > max)
      problems.push(`${flag} must be a whole number between ${min} and ${max}`);
    return n;
  };
  const parsed = {
    help: values.help === true,
    jobs: values.jobs ?? 'examples/dev-jobs.json',
    nasPort: int(values['nas-port'], 4100, '--nas-port', 0, 65535),
    port: int(values.port, 8080, '--port', 0, 65535),
    appPort: int(values['app-port'], 4180, '--app-port', 0, 65535),
    idleExit: int(values['idle-exit'], 3, '--idle-exit', 1, 3600),
    dataDir: values['data-dir'] ?? DEFAULT_DATA_DIR,
    keepData: values['keep-data'] === true,
    strict: values.strict === true,
    reset: values.reset === true,
  };
  if (values['keep-data'] && values.reset) problems.push('--keep-data and --reset contradict each other');
  if (problems.length > 0)
    throw new ChronosError('invalid_config', problems.join('; '), { problems, usage: true });
  return parsed;
}

/** dist/serve.js beside this bundle (dist/cli.js or dist/chunks/*), else under the working directory. */
function findServeBundle(): string | undefined {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, 'serve.js'), join(here, '..', 'serve.js'), resolve('dist/serve.js')];
  return candidates.find((path) => existsSync(path));
}

/** What a data directory may hold (src/store/file-store.ts layout, the JWKS cache, the jobs-file sync state). */
const DATA_DIR_ENTRIES =
  /^(jobs|runs|chronos\.lock(\.break)?|write-token|jwks-cache\.json|jobs-file\.sync\.json|\..*\.tmp)$/;

function findJobsFile(given: string, serveJs: string): string | undefined {
  const candidates = [resolve(given), resolve(dirname(serveJs), '..', given)];
  return candidates.find((path) => existsSync(path));
}

/**
 * Turns Chronos's JSON log lines into one short line per step of the loop. Routine lines (listening,
 * unchanged reconciles, shutdown steps) are dropped; warnings and errors always pass.
 */
class ChronosLogTranslator {
  private readonly partial = new Map<string, string>();
  private lastIdleExit = false;

  constructor(private readonly emit: (text: string) => void) {}

  /** Whether the process that just exited announced an idle exit (consumed by the call). */
  idleExitPending(): boolean {
    const pending = this.lastIdleExit;
    this.lastIdleExit = false;
    return pending;
  }

  push(stream: 'stdout' | 'stderr', text: string): void {
    const buffered = (this.partial.get(stream) ?? '') + text;
    const lines = buffered.split('\n');
    this.partial.set(stream, lines.pop() ?? '');
    for (const line of lines) {
      if (line.trim() === '') continue;
      let entry: ChronosLogLine | undefined;
      try {
        entry = JSON.parse(line) as ChronosLogLine;
      } catch {
        entry = undefined;
      }
      if (!entry || typeof entry.msg !== 'string') {
        this.emit(line);
        continue;
      }
      if (entry.msg === 'idle and every job armed; exiting') this.lastIdleExit = true;
      const described = describeChronosLog(entry);
      if (described) this.emit(described);
    }
  }
}

function describeChronosLog(entry: ChronosLogLine): string | undefined {
  const msg = entry.msg ?? '';
  const job = String(entry['job_id'] ?? '');
  const at = typeof entry['fire_at'] === 'string' ? shortInstant(entry['fire_at']) : '';
  const runId = typeof entry['run_id'] === 'string' ? entry['run_id'].slice(0, 8) : '';
  switch (msg) {
    case 'chronos listening':
      return entry['provider'] === 'chronos'
        ? undefined
        : `listening with the ${String(entry['provider'])} provider`;
    case 'jobs file synced': {
      const changes = (['created', 'updated', 'removed'] as const)
        .filter((k) => Array.isArray(entry[k]) && (entry[k] as unknown[]).length > 0)
        .map((k) => `${k} ${(entry[k] as string[]).join(', ')}`);
      return changes.length > 0 ? `jobs file: ${changes.join('; ')}` : undefined;
    }
    case 'fire accepted':
      return `fire accepted ${job} ${at} → run ${runId}`;
    case 'duplicate fire':
    case 'stale fire; re-arming':
    case 'fire for an inactive job':
    case 'fire for an unknown job':
    case 'fire arrived early':
      return `${msg} ${job} ${at}`.trim();
    case 'occurrence claimed':
      return `${String(entry['trigger'])} run of ${job} ${at} → run ${runId}`;
    case 'run finished': {
      const error = entry['error'] ? `: ${String(entry['error'])}` : '';
      return `run ${String(entry['status'])} ${job} ${at} in ${String(entry['duration_ms'])} ms${error}`;
    }
    case 'armed at NAS':
      return `armed at NAS ${job} ${at}`;
    case 'job ran':
      // The fire's summary line: its steps above already told the story.
      return undefined;
    case 'idle and every job armed; exiting':
      // A fire-woken process stops as soon as it is settled; other wakes wait out the idle window.
      return Number(entry['idle_ms']) === 0
        ? `settled after ${String(entry['awake_seconds'])} s awake (woken by ${String(entry['wake_cause'])}) with every job armed: exiting`
        : `idle ${Number(entry['idle_ms']) / 1000} s with every job armed: exiting`;
    case 'shutting down':
      return entry['reason'] === 'idle' ? undefined : `shutting down (${String(entry['reason'])})`;
    default:
      break;
  }
  if (msg.startsWith('reconcile:')) {
    const changed = ['armed', 'cancelled', 'failed', 'misfires'].some((k) => Number(entry[k] ?? 0) > 0);
    return changed ? msg : undefined;
  }
  if ((entry.level ?? 0) >= 40) {
    const details = ['job_id', 'fire_at', 'code', 'reason']
      .filter((k) => entry[k] !== undefined)
      .map((k) => `${k}=${String(entry[k])}`);
    const err = entry['err'] as { message?: string } | undefined;
    if (err?.message) details.push(err.message);
    return `${(entry.level ?? 0) >= 50 ? 'ERROR' : 'WARN'} ${msg}${details.length ? ` (${details.join(', ')})` : ''}`;
  }
  return undefined;
}

/** The wake proxy's own lines, in the loop's words. */
function describeWakeEvent(
  line: string,
  proxy: WakeProxy | undefined,
  idleExit: () => boolean,
): string | undefined {
  const text = line.replace(/^wake\s+/, '');
  if (text.startsWith('starting:')) return 'wake request arrived and Chronos is stopped: starting it';
  const ready = /^ready in (\d+) ms/.exec(text);
  if (ready) return `started (pid ${proxy?.starts().at(-1)?.pid ?? '?'}), listening after ${ready[1]} ms`;
  const exited = /^process (exited with code (\d+)|killed by (\w+)|failed: .*) after (\d+) ms/.exec(text);
  if (exited) {
    const awake = `${(Number(exited[4]) / 1000).toFixed(1)} s awake`;
    if (exited[2] !== undefined) return `exited ${exited[2]}${idleExit() ? ' (idle)' : ''} after ${awake}`;
    if (exited[3] !== undefined) return `stopped by ${exited[3]} after ${awake}`;
    return `wake ${exited[1]}`;
  }
  if (text.startsWith('proxy ')) return undefined;
  return `wake ${text}`;
}

function shortInstant(iso: string): string {
  // Dev schedules are seconds apart: the time of day (UTC) is the informative part.
  return /T(\d{2}:\d{2}:\d{2})(?:\.\d+)?Z$/.exec(iso)?.[1]?.concat('Z') ?? iso;
}

function clock(): string {
  return new Date().toISOString().slice(11, 19);
}

/** The sample app the dev jobs call: it prints what Chronos sends, as the receiving service would log it. */
async function startSampleApp(port: number, log: (line: string) => void): Promise<Server> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const job = req.headers['x-chronos-job'] ?? '-';
      const fireAt = String(req.headers['x-chronos-fire-at'] ?? '-');
      log(
        `${req.method} ${req.url}  X-Chronos-Job: ${String(job)}  X-Chronos-Fire-At: ${shortInstant(fireAt)}`,
      );
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolveListen();
    });
  });
  return server;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolveClose) => {
    server.close(() => resolveClose());
    server.closeAllConnections();
  });
}

async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolveListen());
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolveClose) => server.close(() => resolveClose()));
  return port;
}

function isAddressInUse(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: string }).code === 'EADDRINUSE';
}
