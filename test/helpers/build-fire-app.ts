import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import pino from 'pino';
import { REFUSALS_SUMMARY_MSG, REFUSED_MSG, RefusalLog } from '../../src/fire/guard.js';
import { FIRE_PATH } from '../../src/fire/route.js';
import {
  createFireTokenVerifier,
  type FireTokenVerifier,
  type VerifierOptions,
} from '../../src/fire/token.js';
import { buildServer, type ServerDeps } from '../../src/http/server.js';
import { buildJob } from '../../src/jobs/build.js';
import type { Job, JobSpecInput } from '../../src/jobs/model.js';
import { formatFireAt } from '../../src/nas/nas.js';
import type { AcceptedFire } from '../../src/occurrence/claim.js';
import { Activity } from '../../src/scheduler/activity.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { currentOwner } from '../../src/store/owner.js';
import type { Owner, Store } from '../../src/store/store.js';
import { ManualClock } from './manual-clock.js';

export const AUDIENCE = 'agent:test-instance';
export const ISSUER = 'https://portal.test';
/** Default start of the manual clock: one minute before the first `every 1m` occurrence of a seeded job. */
export const START = Date.parse('2026-03-08T06:59:00Z');

export interface LogLine {
  level: number;
  msg: string;
  code?: string;
  [key: string]: unknown;
}

export interface FireAppOptions {
  store?: Store;
  clock?: ManualClock;
  /** A ready verifier; otherwise one is built from `verifierOptions` (audience/issuer default to AUDIENCE/ISSUER). */
  verifier?: FireTokenVerifier;
  verifierOptions?: Partial<Omit<VerifierOptions, 'clock'>>;
  /** Default: large enough never to trigger. */
  rateLimit?: { max: number; timeWindowMs: number };
  trustProxy?: ServerDeps['trustProxy'];
  /** Row 2; default: the route's own. */
  refusalLimit?: { max: number; timeWindowMs: number };
  plugins?: ServerDeps['plugins'];
  owner?: Owner;
  activity?: Activity;
  onRequest?: ServerDeps['onRequest'];
}

export interface FireApp {
  app: FastifyInstance;
  store: Store;
  clock: ManualClock;
  verifier: FireTokenVerifier;
  owner: Owner;
  activity: Activity;
  /** Every line the app logged, parsed. */
  logs: LogLine[];
  /** Recorded calls of the route's callbacks, in order. */
  inactive: string[];
  stale: Job[];
  accepted: AcceptedFire[];
  /** `response:<status>` when a reply finished, `accepted:<job_id>` when onAccepted ran, in call order. */
  events: string[];
  /** Seconds for Retry-After while draining; null when not draining. */
  setDraining(seconds: number | null): void;
  /** POST the fire route. A non-string body is sent as JSON. */
  fire(
    authorization: string | undefined,
    body: unknown,
    headers?: Record<string, string>,
  ): Promise<LightMyRequestResponse>;
  /**
   * The stable codes of refused tokens, oldest first: the first of each cause is logged at once, the rest are
   * counted in the interval summary, which this flushes (so codes after the first come grouped by cause).
   */
  refusalCodes(): string[];
  /** Writes the pending refusal summary now, as the interval timer would. */
  flushRefusals(): void;
  close(): Promise<void>;
}

/** A real Fastify app from buildServer, a real verifier and a real store, with recording callbacks. */
export async function buildFireApp(options: FireAppOptions = {}): Promise<FireApp> {
  const clock = options.clock ?? new ManualClock(START);
  const store = options.store ?? new MemoryStore();
  // The process's own identity: isOwnerAlive compares claims against it, so any other value with our pid
  // would look like a dead earlier incarnation.
  const owner = options.owner ?? currentOwner();
  const activity = options.activity ?? new Activity();
  const logs: LogLine[] = [];
  const logger = pino(
    { level: 'trace', base: null, timestamp: false },
    { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) },
  );
  const verifier =
    options.verifier ??
    createFireTokenVerifier({ audience: AUDIENCE, issuer: ISSUER, ...options.verifierOptions, clock });

  const inactive: string[] = [];
  const stale: Job[] = [];
  const accepted: AcceptedFire[] = [];
  const events: string[] = [];
  let drainingSeconds: number | null = null;
  const refusalLog = new RefusalLog({ clock, warn: (obj, msg) => logger.warn(obj, msg) });

  const app = await buildServer({
    logger,
    activity,
    ...(options.trustProxy === undefined ? {} : { trustProxy: options.trustProxy }),
    ...(options.onRequest ? { onRequest: options.onRequest } : {}),
    fire: {
      store,
      clock,
      logger,
      verifier,
      owner,
      expectedToken: {
        audience: options.verifierOptions?.audience ?? AUDIENCE,
        issuer: options.verifierOptions?.issuer ?? ISSUER,
      },
      rateLimit: options.rateLimit ?? { max: 100_000, timeWindowMs: 60_000 },
      ...(options.refusalLimit ? { refusalLimit: options.refusalLimit } : {}),
      refusalLog,
      draining: () => drainingSeconds,
      onInactive: (jobId) => void inactive.push(jobId),
      onStale: (job) => void stale.push(job),
      onAccepted: (fire) => {
        events.push(`accepted:${fire.job.id}`);
        accepted.push(fire);
      },
    },
    plugins: options.plugins,
  });
  app.addHook('onResponse', async (_request, reply) => {
    events.push(`response:${reply.statusCode}`);
  });
  await app.ready();

  return {
    app,
    store,
    clock,
    verifier,
    owner,
    activity,
    logs,
    inactive,
    stale,
    accepted,
    events,
    setDraining(seconds) {
      drainingSeconds = seconds;
    },
    fire(authorization, body, headers = {}) {
      const payload = typeof body === 'string' ? body : JSON.stringify(body);
      return app.inject({
        method: 'POST',
        url: FIRE_PATH,
        headers: {
          'content-type': 'application/json',
          ...(authorization === undefined ? {} : { authorization }),
          ...headers,
        },
        payload,
      });
    },
    refusalCodes() {
      refusalLog.flush();
      const codes: string[] = [];
      for (const line of logs) {
        if (line.msg === REFUSED_MSG) codes.push(String(line.code));
        if (line.msg === REFUSALS_SUMMARY_MSG) {
          // Each cause's first refusal of the interval was logged on its own line already.
          for (const c of line['by_cause'] as Array<{ code: string; count: number }>)
            if (c.code !== 'rate_limited') codes.push(...Array<string>(c.count - 1).fill(c.code));
        }
      }
      return codes;
    },
    flushRefusals: () => refusalLog.flush(),
    close: () => app.close(),
  };
}

/** A stored job built by the real buildJob (`every 1m` from `clock.now()` unless overridden), then patched. */
export async function seedJob(
  store: Store,
  now: number,
  spec: Partial<JobSpecInput> & { id: string },
  patch: Partial<Job> = {},
): Promise<Job> {
  const job = buildJob(
    { schedule: 'every 1m', target: { type: 'handler', name: 'noop' }, ...spec } as JobSpecInput,
    { now, defaultTimezone: 'UTC', allowCommands: false, source: 'api' },
  );
  return store.createJob({ ...job, ...patch });
}

/** The body NAS sends for an occurrence. */
export function fireBody(jobId: string, fireAtMs?: number): { job_id: string; fire_at?: string } {
  return fireAtMs === undefined ? { job_id: jobId } : { job_id: jobId, fire_at: formatFireAt(fireAtMs) };
}
