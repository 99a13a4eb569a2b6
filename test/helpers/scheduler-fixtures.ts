import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino, { type Logger } from 'pino';
import { type Emulator, startEmulator } from '../../src/emulator/index.js';
import { buildJob } from '../../src/jobs/build.js';
import type { Job, JobSpecInput } from '../../src/jobs/model.js';
import { createHttpNasClient } from '../../src/nas/http-client.js';
import type { NasClient } from '../../src/nas/nas.js';
import { createTokenSource } from '../../src/nas/token-source.js';
import { Engine } from '../../src/occurrence/engine.js';
import type { SchedulerProvider } from '../../src/occurrence/provider.js';
import { JobRunner } from '../../src/run/runner.js';
import {
  createHandlerRegistry,
  type HandlerInput,
  type HandlerRegistry,
} from '../../src/run/targets/handler.js';
import { Activity } from '../../src/scheduler/activity.js';
import { BuiltinProvider } from '../../src/scheduler/builtin.js';
import { ChronosProvider, type ChronosProviderDeps } from '../../src/scheduler/chronos.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { currentOwner } from '../../src/store/owner.js';
import type { Store } from '../../src/store/store.js';
import { T0 } from './jobs.js';
import { ManualClock } from './manual-clock.js';

export { T0 };
export const MINUTE = 60_000;

export const silentLogger: Logger = pino({ level: 'silent' });

/** Every call a handler target received, in order. */
export interface HandlerCalls {
  calls: HandlerInput[];
  /** Calls for one job. */
  of(jobId: string): HandlerInput[];
}

/**
 * The in-process pieces a provider drives: a ManualClock, a MemoryStore, a real JobRunner with a handler
 * registry (handler `record` appends to `handled`), the Engine, and a switchable current provider.
 */
export interface SchedulerHarness {
  clock: ManualClock;
  store: Store;
  activity: Activity;
  engine: Engine;
  runner: JobRunner;
  handlers: HandlerRegistry;
  handled: HandlerCalls;
  /** The provider the engine arms through; tests set it once they built one. */
  current: { provider: SchedulerProvider | undefined };
  /** Build a job through the real validation (`source: 'file'` so command targets are allowed). */
  addJob(spec: JobSpecInput, now?: number): Promise<Job>;
  builtin(opts?: { debounceMs?: number }): BuiltinProvider;
  chronos(nas: () => Promise<NasClient>, opts?: Partial<ChronosProviderDeps>): ChronosProvider;
  /** Resolves once no run is in flight (runs are real async work; the clock does not need to move). */
  runsSettled(): Promise<void>;
}

export function createHarness(start: number = T0, store: Store = new MemoryStore()): SchedulerHarness {
  const clock = new ManualClock(start);
  const activity = new Activity();
  const handlers = createHandlerRegistry();
  const calls: HandlerInput[] = [];
  handlers.register('record', (input) => {
    calls.push(input);
    return 'ok';
  });
  const runner = new JobRunner({ store, clock, logger: silentLogger, handlers, allowCommands: false });
  const current: { provider: SchedulerProvider | undefined } = { provider: undefined };
  const engine = new Engine({
    store,
    clock,
    logger: silentLogger,
    activity,
    owner: currentOwner(),
    runner: async () => runner,
    provider: () => {
      if (!current.provider) throw new Error('harness: no provider set');
      return current.provider;
    },
  });
  return {
    clock,
    store,
    activity,
    engine,
    runner,
    handlers,
    handled: { calls, of: (jobId) => calls.filter((c) => c.job.id === jobId) },
    current,
    async addJob(spec, now = clock.now()) {
      const job = buildJob(spec, { now, defaultTimezone: 'UTC', allowCommands: false, source: 'file' });
      return store.createJob(job);
    },
    builtin(opts = {}) {
      const provider = new BuiltinProvider({
        store,
        clock,
        logger: silentLogger,
        engine,
        debounceMs: opts.debounceMs ?? 50,
      });
      current.provider = provider;
      return provider;
    },
    chronos(nas, opts = {}) {
      const provider = new ChronosProvider({
        store,
        clock,
        logger: silentLogger,
        engine,
        activity,
        nas,
        unavailableReason: () => null,
        onInvalidClient: () => {},
        debounceMs: 50,
        // Deterministic heal delays: computeBackoff(attempt) = the whole window.
        random: () => 1,
        ...opts,
      });
      current.provider = provider;
      return provider;
    },
    async runsSettled() {
      await waitUntil(() => !activity.busy && runner.active === 0);
    },
  };
}

/** A handler-target job spec that records into the harness. */
export function recordSpec(id: string, schedule: string, extra: Partial<JobSpecInput> = {}): JobSpecInput {
  return { id, schedule, target: { type: 'handler', name: 'record' }, ...extra };
}

/**
 * Poll for a condition that depends on real I/O (loopback HTTP, store writes). This waits for work to
 * finish, it never stands in for the passage of scheduled time: the ManualClock does that.
 */
export async function waitUntil(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`waitUntil: condition not met within ${timeoutMs} ms`);
    await new Promise<void>((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * The NAS emulator on its own frozen ManualClock, so arms never come due and nothing is delivered: these
 * tests look at hop 1 only. Its callback URL points nowhere.
 */
export async function startFrozenEmulator(): Promise<Emulator> {
  return startEmulator({ clock: new ManualClock('2020-01-01T00:00:00Z') });
}

/** A real HTTP NAS client toward `portalUrl`, one attempt per call (the provider's heal timer retries). */
export function nasClientFor(portalUrl: string, agentToken: string, clock: ManualClock): NasClient {
  return createHttpNasClient({
    portalUrl,
    callbackUrl: 'http://127.0.0.1:9/callback',
    tokenSource: createTokenSource({ token: agentToken }),
    userAgent: 'chronos-test',
    clock,
    retry: { maxAttempts: 1 },
    timeoutMs: 5_000,
  });
}

/** Hop-1 calls of one kind the emulator has answered so far. */
export function callsOf(emulator: Emulator, kind: 'provision' | 'cancel' | 'list'): number {
  return emulator.provisions().filter((p) => p.kind === kind).length;
}

/** Arm a one-shot at the emulator directly, with the exact `fire_at` string given (bypassing Chronos). */
export async function armDirectly(emulator: Emulator, jobId: string, fireAt: string): Promise<void> {
  const res = await fetch(`${emulator.url}/api/agent-cron/provision`, {
    method: 'POST',
    headers: { authorization: `Bearer ${emulator.agentToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      job_id: jobId,
      fire_at: fireAt,
      agent_callback_url: 'http://127.0.0.1:9/callback',
      dedup_key: `${jobId}:${fireAt}`,
    }),
  });
  if (res.status !== 200) throw new Error(`direct arm failed: ${res.status} ${await res.text()}`);
}

/**
 * A loopback proxy in front of the emulator for the two behaviours it has no switch for: failing `list`
 * (an untrusted start) and holding calls in flight (a pending NAS call).
 */
export interface NasProxy {
  url: string;
  /** Answer GET list with 503 while true. */
  failList: boolean;
  /** Answer the next N provision calls with 503 and this Retry-After header. */
  failProvisions: { count: number; retryAfter: string };
  /** Hold every request until release() while true. */
  hold: boolean;
  /** Requests currently held. */
  held(): number;
  release(): void;
  close(): Promise<void>;
}

export async function startNasProxy(target: string): Promise<NasProxy> {
  const upstream = new URL(target);
  let waiting: Array<() => void> = [];
  const state = { failList: false, hold: false, failProvisions: { count: 0, retryAfter: '1' } };
  const release = (): void => {
    state.hold = false;
    const queued = waiting;
    waiting = [];
    for (const go of queued) go();
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const forward = (): void => {
        if (state.failProvisions.count > 0 && req.url?.startsWith('/api/agent-cron/provision')) {
          state.failProvisions.count -= 1;
          res.writeHead(503, {
            'content-type': 'application/json',
            'retry-after': state.failProvisions.retryAfter,
          });
          res.end(JSON.stringify({ error: 'unavailable' }));
          return;
        }
        if (state.failList && req.method === 'GET' && req.url?.startsWith('/api/agent-cron/list')) {
          res.writeHead(503, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: 'unavailable' }));
          return;
        }
        const out = httpRequest(
          {
            host: upstream.hostname,
            port: upstream.port,
            method: req.method,
            path: req.url,
            headers: req.headers,
          },
          (up) => {
            res.writeHead(up.statusCode ?? 502, up.headers);
            up.pipe(res);
          },
        );
        out.on('error', () => {
          res.writeHead(502);
          res.end();
        });
        out.end(Buffer.concat(chunks));
      };
      if (state.hold) waiting.push(forward);
      else forward();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    get failList() {
      return state.failList;
    },
    set failList(v: boolean) {
      state.failList = v;
    },
    get failProvisions() {
      return state.failProvisions;
    },
    set failProvisions(v: { count: number; retryAfter: string }) {
      state.failProvisions = v;
    },
    get hold() {
      return state.hold;
    },
    set hold(v: boolean) {
      state.hold = v;
    },
    held: () => waiting.length,
    release,
    close() {
      release();
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
