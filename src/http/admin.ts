import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import * as z from 'zod/mini';
import { type Clock, formatInstant } from '../clock.js';
import { ChronosError, isChronosError } from '../errors.js';
import { buildJob, type JobBuildContext } from '../jobs/build.js';
import { armedInstant, patchedSpec, pauseJob, resumeJob } from '../jobs/lifecycle.js';
import { JOB_ID_PATTERN, type Job } from '../jobs/model.js';
import { JobSpec } from '../jobs/spec.js';
import { jobSpecOf, jobView, runView } from '../jobs/view.js';
import type { SchedulerProvider } from '../occurrence/provider.js';
import { roundSeconds, type WakeReport } from '../scheduler/idle-exit.js';
import { jobDamaged } from '../store/ledger.js';
import type { DamagedRecord, Store } from '../store/store.js';
import { registerUiRoutes } from '../ui/routes.js';
import { describeJsonError, parseOrThrow } from '../validation.js';
import { VERSION } from '../version.js';
import { DEFAULT_RUNS_LIMIT, MAX_RUNS_LIMIT } from './admin-routes.js';
import { createAdminAudit } from './audit.js';

/** Admin bodies are job specs; anything larger is a mistake or an attack. */
export const ADMIN_BODY_LIMIT = 64 * 1024;
/** How long a mutation waits for its arm before replying with `armed: false` (the arm keeps going). */
export const DEFAULT_ARM_TIMEOUT_MS = 3_000;
export const NAS_WARNING = 'NAS could not be reached; the job is saved and will be armed when NAS answers';
const NAS_CANCEL_WARNING =
  'NAS could not be reached; the change is saved and the arm will be cancelled when NAS answers';
/** How long `GET /api/jobs` and `/api/status` wait for the start-up reconcile before answering without it. */
export const DEFAULT_STARTUP_WAIT_MS = 5_000;
export const RECONCILING_WARNING =
  'the start-up reconcile is still running: "armed" shows what this process has learnt so far, not yet what NAS holds';

export interface AdminDeps {
  /** CHRONOS_ADMIN_TOKEN; the routes exist only when it is set. */
  token: string;
  store: Store;
  clock: Clock;
  /** The provider in charge now (chronos may hand over to builtin at any time). */
  provider: () => SchedulerProvider;
  engine: { runManual(jobId: string): Promise<{ run_id: string; fire_at: number } | null> };
  defaultTimezone: string;
  allowCommands: boolean;
  /** The provider the configuration asked for (`auto`, `chronos` or `builtin`), shown beside the one in use. */
  configuredProvider: string;
  /** CHRONOS_JOBS_FILE, named in the 409 for file-managed jobs. */
  jobsFile?: string | undefined;
  jwksAgeMs: () => number | null;
  startedAt: number;
  armTimeoutMs?: number;
  /**
   * The registry `{"type":"handler"}` targets run from, when the embedding application passed one. Absent
   * (`chronos serve`), no handler can ever exist, so such a target is refused at creation.
   */
  handlers?: { get(name: string): unknown } | undefined;
  /**
   * The start-up work (recovery, first reconcile). `wait` starts it now if it was held back for a first
   * request, and resolves true once it is done, false if `timeoutMs` passed first. Absent: always done.
   */
  startup?: { done(): boolean; wait(timeoutMs: number): Promise<boolean> };
  startupWaitMs?: number;
  /**
   * The process answering (`/api/status` names it): behind a load balancer over several replicas, the
   * reply says which one it came from.
   */
  replica?: { host: string; boot_id: string; pid: number } | undefined;
  /** This wake: why the process is up, since when it is settled, and when it stops (src/scheduler/idle-exit.ts). */
  wake?: () => WakeReport;
}

function wakeView(wake: WakeReport) {
  return {
    cause: wake.cause,
    woke_at: formatInstant(wake.wokeAt),
    settled_at: formatInstant(wake.settledAt),
    awake_seconds: roundSeconds(wake.awakeMs),
    awake_because: wake.awakeBecause,
    exit_at: formatInstant(wake.exitAt),
  };
}

/** Job fields a PATCH may carry: any subset of the spec, except the immutable id. */
const JobPatch = z.partial(JobSpec);

const RunsQuery = z.object({
  limit: z._default(
    z
      .pipe(
        z.string().check(z.regex(/^\d+$/, `must be a whole number between 1 and ${MAX_RUNS_LIMIT}`)),
        z.transform(Number),
      )
      .check(z.refine((n) => n >= 1 && n <= MAX_RUNS_LIMIT, `must be between 1 and ${MAX_RUNS_LIMIT}`)),
    DEFAULT_RUNS_LIMIT,
  ),
});

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** The SHA-256 of the bearer token an Authorization header carries, or null when it carries none. */
function presentedToken(header: string | undefined): Buffer | null {
  const match = header === undefined ? null : /^Bearer ([^\s]+)\s*$/i.exec(header);
  return match?.[1] === undefined ? null : digest(match[1]);
}

/** Hashing first makes both sides 32 bytes, so neither the content nor the length of the token leaks. */
function tokenMatches(expected: Buffer, given: Buffer | null): boolean {
  return timingSafeEqual(expected, given ?? digest('')) && given !== null;
}

function jobIdParam(request: FastifyRequest): string {
  const id = (request.params as { id?: string }).id ?? '';
  if (!JOB_ID_PATTERN.test(id)) throw notFound(id);
  return id;
}

function notFound(id: string): ChronosError {
  return new ChronosError('job_not_found', `no job with id "${id}"`, { id });
}

function requireObject(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ChronosError('validation_failed', 'the request body must be a JSON object (a job spec)', {
      problems: [{ path: '', message: 'expected a JSON object' }],
    });
  }
  return body as Record<string, unknown>;
}

/**
 * The body as JSON, parsed here rather than by Fastify so its mistakes get Chronos's codes: where the JSON
 * breaks, and what to send when the content type is not JSON (curl -d sends form encoding).
 */
function installBodyParsers(app: FastifyInstance): void {
  app.removeContentTypeParser('application/json');
  const options = { parseAs: 'string' as const, bodyLimit: ADMIN_BODY_LIMIT };
  app.addContentTypeParser('application/json', options, (_request, body, done) => {
    const text = String(body);
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (err) {
      done(
        new ChronosError('invalid_json', `the body is not valid JSON: ${describeJsonError(text, err)}`),
        undefined,
      );
    }
  });
  app.addContentTypeParser('*', options, (request, body, done) => {
    // A POST without a body (pause, resume, run) needs no content type.
    if (String(body).trim() === '') return done(null, undefined);
    const type = request.headers['content-type'] ?? '(none)';
    done(
      new ChronosError(
        'unsupported_media_type',
        `send the body as JSON with the header "Content-Type: application/json" (got "${type}"; curl -d sends application/x-www-form-urlencoded unless you add -H 'Content-Type: application/json')`,
        { content_type: type },
      ),
      undefined,
    );
  });
}

export function adminPlugin(deps: AdminDeps): (app: FastifyInstance) => Promise<void> {
  return async (app) => {
    await app.register(async (scope) => registerAdminRoutes(scope, deps));
    // The status page loads without the token (it holds no data) and reads everything from the routes above.
    await app.register(registerUiRoutes);
  };
}

async function registerAdminRoutes(app: FastifyInstance, deps: AdminDeps): Promise<void> {
  const { store, clock } = deps;
  installBodyParsers(app);
  const expected = digest(deps.token);
  const audit = createAdminAudit({ logger: app.log, clock, tokenSha256: expected });
  app.addHook('onClose', async () => audit.close());
  const armTimeoutMs = deps.armTimeoutMs ?? DEFAULT_ARM_TIMEOUT_MS;
  /**
   * A file job is the file's to change only while a jobs file is configured: the start-up sync removes file
   * jobs the configured file no longer declares, so the ones left over after CHRONOS_JOBS_FILE was unset
   * belong to no file, and the API may edit (they become API jobs) or delete them.
   */
  const declaredInFile = (job: Job) => job.source === 'file' && deps.jobsFile !== undefined;
  const fileManaged = (job: Job, action: string) =>
    new ChronosError(
      'job_file_managed',
      `job "${job.id}" is declared in the jobs file${deps.jobsFile ? ` ${deps.jobsFile}` : ''}: ${action} it there and restart (the API can only pause, resume and run it)`,
      { id: job.id, jobs_file: deps.jobsFile ?? null },
    );
  const buildContext = (source: Job['source']): JobBuildContext => ({
    now: clock.now(),
    defaultTimezone: deps.defaultTimezone,
    allowCommands: deps.allowCommands,
    source,
  });
  /** A handler target under `chronos serve` could never run: refused now rather than failing at every fire. */
  const checkHandler = (job: Job): string | undefined => {
    if (job.target.type !== 'handler') return undefined;
    const name = job.target.name;
    if (deps.handlers === undefined) {
      throw new ChronosError(
        'validation_failed',
        `invalid job: target: no handler "${name}" can exist on this server: handler targets run functions an application registers when it embeds Chronos (startChronos({ handlers })); chronos serve has none. Use an http or command target.`,
        {
          problems: [
            {
              path: 'target.name',
              message: `no handler "${name}" can exist: chronos serve registers no handlers (docs/jobs.md#handler-target)`,
            },
          ],
        },
      );
    }
    return deps.handlers.get(name) === undefined
      ? `no handler "${name}" is registered yet: runs fail until the application registers it`
      : undefined;
  };
  /**
   * A damaged job is a 409 that names its file and problem: the operator asked about this very job, and a
   * 503 (what the fire path answers, so NAS retries) would hide what to fix behind "try again later".
   */
  const aboutJob = async <T>(id: string, work: () => Promise<T>): Promise<T> => {
    try {
      return await work();
    } catch (err) {
      if (isChronosError(err, 'store_corrupt')) {
        throw jobDamaged(
          id,
          String(err.details?.['path'] ?? ''),
          String(err.details?.['problem'] ?? err.message),
        );
      }
      throw err;
    }
  };
  const getJob = async (id: string): Promise<Job> => {
    const job = await aboutJob(id, () => store.getJob(id));
    if (!job) throw notFound(id);
    return job;
  };
  const damagedView = (record: DamagedRecord) => ({
    job_id: record.job_id,
    kind: record.kind,
    file: record.file,
    error: record.error,
  });

  /**
   * After a mutation: ask for a reconcile, and wait a little for this job's own arm (or cancel) so the reply
   * can say whether it is armed. The job is saved whatever happens here.
   */
  const settle = async (id: string, job: Job | null): Promise<{ armed: boolean; warning?: string }> => {
    const provider = deps.provider();
    provider.onJobsChanged();
    const wanted = job !== null && armedInstant(job) !== null;
    const operation = wanted ? provider.arm(job) : provider.disarm(id);
    let timer: ReturnType<Clock['setTimeout']> | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = clock.setTimeout(() => resolve('timeout'), armTimeoutMs);
    });
    const outcome = await Promise.race([
      operation.then(
        () => 'done' as const,
        () => 'failed' as const,
      ),
      timedOut,
    ]);
    if (timer) clock.clearTimeout(timer);
    const current = deps.provider();
    const armed = wanted && current.isArmed(id);
    if (current.name !== 'chronos') return { armed };
    const unreachable = outcome !== 'done' || current.status().nasReachable === false;
    if (wanted && !armed) return { armed, warning: NAS_WARNING };
    if (!wanted && unreachable) return { armed, warning: NAS_CANCEL_WARNING };
    return { armed };
  };
  const withWarning = (settled: { armed: boolean; warning?: string }, extra: string | undefined) =>
    extra === undefined
      ? settled
      : { ...settled, warning: settled.warning ? `${settled.warning}; ${extra}` : extra };
  /** Read answers must not present what a process knew before its first reconcile as fact. */
  const startupDone = async (): Promise<boolean> => {
    if (!deps.startup || deps.startup.done()) return true;
    return deps.startup.wait(deps.startupWaitMs ?? DEFAULT_STARTUP_WAIT_MS);
  };
  const reply = (job: Job, settled: { armed: boolean; warning?: string }) => ({
    ...jobView(job, settled.armed),
    ...(settled.warning ? { warning: settled.warning } : {}),
  });

  app.addHook('onRequest', async (request, res) => {
    const given = presentedToken(request.headers.authorization);
    if (!tokenMatches(expected, given)) {
      audit.refused(request, given);
      res.header('www-authenticate', 'Bearer realm="chronos-admin"');
      throw new ChronosError(
        'unauthorized',
        'missing or wrong admin token: send "Authorization: Bearer <CHRONOS_ADMIN_TOKEN>"',
      );
    }
  });

  const bodyOptions = { bodyLimit: ADMIN_BODY_LIMIT };

  app.get('/api/jobs', async () => {
    const ready = await startupDone();
    const provider = deps.provider();
    const jobs = await store.listJobs();
    jobs.sort((a, b) => a.id.localeCompare(b.id));
    const damaged = await store.damaged();
    return {
      jobs: jobs.map((job) => jobView(job, provider.isArmed(job.id))),
      // Beside `jobs`, not in it: these records cannot be read as jobs (docs/operations.md).
      damaged: damaged.map(damagedView),
      ...(ready ? {} : { reconciling: true, warning: RECONCILING_WARNING }),
    };
  });

  app.post('/api/jobs', bodyOptions, async (request, res) => {
    const spec = parseOrThrow(JobSpec, requireObject(request.body), 'job');
    const built = buildJob(spec, buildContext('api'));
    const handlerWarning = checkHandler(built);
    const job = await store.createJob(built);
    audit.change(request, 'create', job.id);
    const settled = await settle(job.id, job);
    return res.code(201).send(reply(job, withWarning(settled, handlerWarning)));
  });

  app.get('/api/jobs/:id', async (request) => {
    const id = jobIdParam(request);
    const ready = await startupDone();
    const job = await getJob(id);
    return {
      ...jobView(job, deps.provider().isArmed(job.id)),
      ...(ready ? {} : { reconciling: true, warning: RECONCILING_WARNING }),
    };
  });

  app.patch('/api/jobs/:id', bodyOptions, async (request) => {
    const id = jobIdParam(request);
    const patch = parseOrThrow(JobPatch, requireObject(request.body), 'job');
    let handlerWarning: string | undefined;
    if (patch.id !== undefined && patch.id !== id) {
      throw new ChronosError('validation_failed', 'invalid job: id: a job id cannot be changed', {
        problems: [{ path: 'id', message: `a job id cannot be changed (this job is "${id}")` }],
      });
    }
    // Built inside the store's read-modify-write so a fire that advanced the job meanwhile is not undone.
    const job = await aboutJob(id, () =>
      store.updateJob(id, (current) => {
        if (declaredInFile(current)) throw fileManaged(current, 'edit');
        const built = buildJob(patchedSpec(jobSpecOf(current), patch), buildContext('api'), current);
        handlerWarning = checkHandler(built);
        return built;
      }),
    );
    audit.change(request, 'update', id, { fields: Object.keys(patch).sort() });
    return reply(job, withWarning(await settle(id, job), handlerWarning));
  });

  app.delete('/api/jobs/:id', async (request) => {
    const id = jobIdParam(request);
    let job: Job | undefined;
    try {
      job = await store.getJob(id);
    } catch (err) {
      if (!isChronosError(err, 'store_corrupt')) throw err;
      // Whoever declared it (API or jobs file), its bytes are set aside, never destroyed; a job still
      // declared in the jobs file is created again from it at the next start.
      const movedTo = await store.removeDamagedJob(id);
      if (movedTo === undefined) throw err;
      audit.change(request, 'damaged-remove', id, { moved_to: movedTo });
      const settled = await settle(id, null);
      return {
        id,
        deleted: true,
        armed: false,
        moved_to: movedTo,
        ...(settled.warning ? { warning: settled.warning } : {}),
      };
    }
    if (!job) throw notFound(id);
    if (declaredInFile(job)) throw fileManaged(job, 'remove');
    if (!(await store.removeJob(id))) throw notFound(id);
    audit.change(request, 'delete', id);
    const settled = await settle(id, null);
    return { id, deleted: true, armed: false, ...(settled.warning ? { warning: settled.warning } : {}) };
  });

  app.post('/api/jobs/:id/pause', async (request) => {
    const id = jobIdParam(request);
    const job = await aboutJob(id, () => store.updateJob(id, (current) => pauseJob(current, clock.now())));
    audit.change(request, 'pause', id, { state: job.state });
    return reply(job, await settle(id, job));
  });

  app.post('/api/jobs/:id/resume', async (request) => {
    const id = jobIdParam(request);
    const job = await aboutJob(id, () => store.updateJob(id, (current) => resumeJob(current, clock.now())));
    audit.change(request, 'resume', id, { state: job.state });
    return reply(job, await settle(id, job));
  });

  app.post('/api/jobs/:id/run', async (request, res) => {
    const id = jobIdParam(request);
    await getJob(id);
    const accepted = await aboutJob(id, () => deps.engine.runManual(id));
    if (!accepted) {
      // Removed in between, or another manual run claimed this very millisecond.
      if (!(await store.getJob(id))) throw notFound(id);
      throw new ChronosError('claim_failed', `could not start a manual run of "${id}"; try again`);
    }
    audit.change(request, 'run-now', id, { run_id: accepted.run_id });
    return res.code(202).send({
      status: 'accepted',
      job_id: id,
      run_id: accepted.run_id,
      fire_at: formatInstant(accepted.fire_at),
      trigger: 'manual',
    });
  });

  app.get('/api/jobs/:id/runs', async (request) => {
    const id = jobIdParam(request);
    const { limit } = parseOrThrow(RunsQuery, request.query ?? {}, 'query');
    await getJob(id);
    const runs = await store.listRuns(id, limit);
    return { job_id: id, runs: runs.map(runView) };
  });

  app.get('/api/status', async () => {
    const ready = await startupDone();
    const provider = deps.provider();
    const status = provider.status();
    const jobs = await store.listJobs();
    const damaged = await store.damaged();
    const now = clock.now();
    const jwksAge = deps.jwksAgeMs();
    const last = status.lastReconcile;
    const lastFires: Record<string, string | null> = {};
    let lastFire: number | null = null;
    for (const job of [...jobs].sort((a, b) => a.id.localeCompare(b.id))) {
      const at = job.last_fire_at ?? null;
      lastFires[job.id] = formatInstant(at);
      if (at !== null && (lastFire === null || at > lastFire)) lastFire = at;
    }
    return {
      version: VERSION,
      ...(deps.replica
        ? { replica: { host: deps.replica.host, boot_id: deps.replica.boot_id, pid: deps.replica.pid } }
        : {}),
      uptime_seconds: Math.max(0, Math.round((now - deps.startedAt) / 1000)),
      provider: status.provider,
      provider_configured: deps.configuredProvider,
      provider_reason: status.reason,
      nas_reachable: status.nasReachable,
      last_reconcile:
        last === null
          ? null
          : {
              at: formatInstant(last.at),
              armed: last.armed,
              cancelled: last.cancelled,
              unchanged: last.unchanged,
              failed: last.failed,
              misfires: last.misfires,
              trusted: last.trusted,
              duration_ms: last.durationMs,
            },
      startup_reconcile: ready ? 'done' : 'running',
      ...(ready ? {} : { warning: RECONCILING_WARNING }),
      jobs: jobs.length,
      // Not counted in `jobs`, never armed or run by this process until restored or deleted.
      damaged: damaged.map(damagedView),
      desired: status.desiredCount,
      armed: status.armedCount,
      unconfirmed: status.unconfirmed.map((u) => ({
        job_id: u.job_id,
        fire_at: formatInstant(u.fire_at),
        reason: u.reason,
      })),
      last_fire_at: formatInstant(lastFire),
      jobs_last_fire_at: lastFires,
      last_arm_at: formatInstant(status.lastArmAt),
      next_wake_at: formatInstant(status.nextWakeAt),
      jwks_cache_age_seconds: jwksAge === null ? null : Math.round(jwksAge / 1000),
      jobs_file: deps.jobsFile ?? null,
      ...(deps.wake ? { wake: wakeView(deps.wake()) } : {}),
    };
  });

  let openapi: string | undefined;
  app.get('/api/openapi.json', async (_request, res) => {
    // Generated on first request only: converting the schemas is not worth paying on a cold start.
    if (openapi === undefined) {
      const { buildOpenApiDocument } = await import('./openapi.js');
      openapi = JSON.stringify(buildOpenApiDocument());
    }
    return res.type('application/json; charset=utf-8').send(openapi);
  });
}
