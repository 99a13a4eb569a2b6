import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Emulator, type FaultSwitches, startEmulator } from '../../src/emulator/index.js';
import type { RunRecord } from '../../src/jobs/model.js';

export type RunSummary = Pick<RunRecord, 'run_id' | 'fire_at' | 'status' | 'trigger'>;

import { bundleSnapshot, type ChronosLog, freePort, type Recorder, startRecorder } from './e2e.js';
import { type RoundRobinProxy, startRoundRobinProxy } from './round-robin-proxy.js';

/*
 * Several Chronos replicas (the production bundle, real child processes) on one PostgreSQL database,
 * behind a round-robin proxy that is their public (callback) URL, with the NAS emulator delivering to
 * that proxy and a loopback recorder playing the job targets. Replicas stay up (idle exit off): the
 * tests kill them on purpose.
 */

export const ADMIN_TOKEN = 'replicas-admin-token-0123456789';

export interface Replica {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  pid(): number | undefined;
  logs(): ChronosLog[];
  logsWith(msg: string): ChronosLog[];
  /** Exit code / signal once the process ended, undefined while it runs. */
  exited(): { code: number | null; signal: NodeJS.Signals | null } | undefined;
  start(): Promise<void>;
  kill(signal: NodeJS.Signals): Promise<void>;
}

export interface ReplicaSet {
  nas: Emulator;
  recorder: Recorder;
  proxy: RoundRobinProxy;
  replicas: Replica[];
  /** An admin API call against one replica (bypassing the proxy), JSON in and out. */
  admin(
    replica: Replica,
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: Record<string, unknown> }>;
  /** Run history, newest first, through the admin API of the first replica still running. */
  runs(jobId: string): Promise<RunSummary[]>;
  waitFor(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs?: number): Promise<void>;
  transcript(): string;
  close(): Promise<void>;
}

export interface ReplicaSetOptions {
  databaseUrl: string;
  count?: number;
  faults?: Partial<FaultSwitches>;
  env?: Record<string, string>;
  /** The proxy's cycle of replica indices (see startRoundRobinProxy). */
  order?: number[];
}

function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key === 'NODE_EXTRA_CA_CERTS' || key.startsWith('CHRONOS_') || key === 'PORT' || key === 'HOST')
      continue;
    if (key === 'LOG_LEVEL') continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

export async function startReplicaSet(options: ReplicaSetOptions): Promise<ReplicaSet> {
  const events: string[] = [];
  const note = (line: string) => events.push(`${new Date().toISOString().slice(11, 23)} ${line}`);
  const recorder = await startRecorder();
  const nas = await startEmulator({ faults: options.faults ?? {}, log: (line) => note(`[nas] ${line}`) });
  const ports: number[] = [];
  for (let i = 0; i < (options.count ?? 2); i++) ports.push(await freePort());
  const proxy = await startRoundRobinProxy(
    ports.map((port) => ({ host: '127.0.0.1', port })),
    options.order,
  );
  const bundle = await bundleSnapshot();
  const dirs: string[] = [];

  const replicas: Replica[] = [];
  for (const [index, port] of ports.entries()) {
    const name = String.fromCharCode(97 + index);
    const dataDir = await mkdtemp(join(tmpdir(), `chronos-replica-${name}-`));
    dirs.push(dataDir);
    const env = childEnv({
      CHRONOS_PROVIDER: 'chronos',
      CHRONOS_PORTAL_URL: nas.url,
      CHRONOS_CALLBACK_URL: proxy.url,
      CHRONOS_EXPECTED_AUDIENCE: nas.audience,
      CHRONOS_JWKS_URL: nas.jwksUrl,
      CHRONOS_ACCESS_TOKEN: nas.agentToken,
      CHRONOS_ADMIN_TOKEN: ADMIN_TOKEN,
      CHRONOS_DATA_DIR: dataDir,
      CHRONOS_DATABASE_URL: options.databaseUrl,
      CHRONOS_IDLE_EXIT_SECONDS: '0',
      CHRONOS_SHUTDOWN_GRACE_SECONDS: '2',
      PORT: String(port),
      HOST: '127.0.0.1',
      // The tests find which replica accepted a fire from its 'fire accepted' step, logged at debug.
      LOG_LEVEL: 'debug',
      LOG_FORMAT: 'json',
      ...options.env,
    });
    let child: ChildProcess | undefined;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    const logs: ChronosLog[] = [];
    const replica: Replica = {
      name,
      port,
      url: `http://127.0.0.1:${port}`,
      pid: () => child?.pid,
      logs: () => [...logs],
      logsWith: (msg) => logs.filter((l) => l.msg === msg),
      exited: () => exit,
      async start() {
        exit = undefined;
        const proc = spawn(process.execPath, [bundle], {
          env,
          cwd: dataDir,
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        child = proc;
        let partial = '';
        const onText = (text: string) => {
          const lines = (partial + text).split('\n');
          partial = lines.pop() ?? '';
          for (const line of lines) {
            if (line.trim() === '') continue;
            try {
              const parsed = JSON.parse(line) as ChronosLog;
              logs.push(parsed);
              const { level, msg, pid: _pid, time: _t, service: _s, ...rest } = parsed;
              note(`[${name} ${proc.pid}] ${level >= 40 ? 'WARN ' : ''}${msg} ${JSON.stringify(rest)}`);
            } catch {
              note(`[${name}] ${line}`);
            }
          }
        };
        proc.stdout?.setEncoding('utf8').on('data', onText);
        proc.stderr?.setEncoding('utf8').on('data', onText);
        proc.on('exit', (code, signal) => {
          exit = { code, signal };
          note(`[${name} ${proc.pid}] exited code=${code} signal=${signal}`);
        });
        await waitUntil(`replica ${name} listening`, () => {
          if (exit) throw new Error(`replica ${name} exited at start\n${events.join('\n')}`);
          return logs.some((l) => l.msg === 'chronos listening' && l.pid === proc.pid);
        });
      },
      async kill(signal) {
        const proc = child;
        if (!proc || exit) return;
        proc.kill(signal);
        await waitUntil(`replica ${name} to exit`, () => exit !== undefined);
      },
    };
    replicas.push(replica);
  }

  const waitUntil = async (what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await predicate()) return;
      if (Date.now() > deadline)
        throw new Error(
          `timed out after ${timeoutMs} ms waiting for: ${what}\n--- transcript ---\n${events.join('\n')}`,
        );
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const admin: ReplicaSet['admin'] = async (replica, method, path, body) => {
    const reply = await fetch(`${replica.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${ADMIN_TOKEN}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await reply.text();
    return { status: reply.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
  };

  try {
    for (const replica of replicas) await replica.start();
  } catch (err) {
    for (const replica of replicas) await replica.kill('SIGKILL');
    await proxy.close();
    await nas.close();
    await recorder.close();
    throw err;
  }

  return {
    nas,
    recorder,
    proxy,
    replicas,
    admin,
    async runs(jobId) {
      const up = replicas.find((r) => r.exited() === undefined);
      if (!up) throw new Error('no replica running');
      const reply = await admin(up, 'GET', `/api/jobs/${jobId}/runs?limit=100`);
      if (reply.status !== 200)
        throw new Error(`runs of ${jobId}: ${reply.status} ${JSON.stringify(reply.body)}`);
      const views = reply.body['runs'] as Array<Omit<RunSummary, 'fire_at'> & { fire_at: string }>;
      return views.map((run) => ({ ...run, fire_at: Date.parse(run.fire_at) }));
    },
    waitFor: waitUntil,
    transcript: () => events.join('\n'),
    async close() {
      for (const replica of replicas) await replica.kill('SIGKILL');
      await proxy.close();
      await nas.close();
      await recorder.close();
      for (const dir of dirs) await rm(dir, { recursive: true, force: true });
    },
  };
}
