import * as z from 'zod/mini';
import { ALERT_EVENTS, ALERT_FORMATS } from '../jobs/alerts.js';
import { Concurrency, JobId, JobSpec, MisfirePolicy, Notify, RetryPolicy, Target } from '../jobs/spec.js';
import { VERSION } from '../version.js';
import { ADMIN_ROUTES, DEFAULT_RUNS_LIMIT, MAX_RUNS_LIMIT } from './admin-routes.js';

// Loaded only when the document is first requested (the admin route imports it on demand).

const instant = z.string().check(z.describe('ISO-8601 instant (UTC)'));
const nullableInstant = z.nullable(instant);
const RunStatus = z.enum(['running', 'succeeded', 'failed', 'timed_out', 'skipped', 'missed', 'interrupted']);

const AlertView = z.object({
  id: z.string().check(z.describe('sent as webhook-id; the same across retries')),
  event: z.enum(ALERT_EVENTS),
  destination: z.string().check(z.describe('the destination URL without credentials or query')),
  format: z.enum(ALERT_FORMATS),
  state: z.enum(['pending', 'sent', 'gave_up']),
  attempts: z.int(),
  last_error: z.nullable(z.string()),
  sent_at: nullableInstant,
  created_at: instant,
  reminder: z.boolean(),
  detail: z.nullable(z.string()),
});

const AlertStateView = z.object({
  failing: z.boolean(),
  failure_streak: z.int(),
  failing_since: nullableInstant,
  last_failed_alert_at: nullableInstant,
  unsent: z.int(),
  outbox: z.array(AlertView),
});

const JobView = z.object({
  id: JobId,
  name: z.string(),
  schedule: z.string(),
  timezone: z.string(),
  target: Target,
  enabled: z.boolean(),
  state: z.enum(['scheduled', 'paused', 'completed', 'error']),
  repeat: z.object({ times: z.nullable(z.int()), completed: z.int() }),
  retry: z.nullable(RetryPolicy),
  concurrency: Concurrency,
  misfire: MisfirePolicy,
  timeout_seconds: z.number(),
  next_run_at: nullableInstant,
  retry_at: nullableInstant,
  last_run_at: nullableInstant,
  last_fire_at: z.nullable(
    instant.check(z.describe('when NAS last delivered a fire Chronos accepted for this job')),
  ),
  last_status: z.nullable(RunStatus),
  last_error: z.nullable(z.string()),
  failure_streak: z.int(),
  notify: z.optional(Notify),
  alert_state: z.nullable(AlertStateView),
  source: z.enum(['api', 'file']),
  created_at: instant,
  updated_at: instant,
  armed: z.boolean().check(z.describe('whether the provider holds an arm for the current instant')),
});

const JobMutationReply = z.extend(JobView, {
  warning: z.optional(
    z.string().check(z.describe('present when NAS could not be reached; the job is saved')),
  ),
});

const RunView = z.object({
  run_id: z.string(),
  job_id: JobId,
  fire_at: instant,
  trigger: z.enum(['nas', 'builtin', 'manual', 'misfire', 'retry']),
  status: RunStatus,
  attempt: z.int(),
  started_at: instant,
  finished_at: nullableInstant,
  duration_ms: z.nullable(z.number()),
  output: z.nullable(z.string()),
  error: z.nullable(z.string()),
  alerts: z.array(AlertView),
});

const Damaged = z.object({
  job_id: JobId,
  kind: z
    .enum(['job', 'history'])
    .check(
      z.describe(
        'job: the job file cannot be read; the job is not armed or run until restored or deleted. history: its run history was moved aside and the job runs on with a new one',
      ),
    ),
  file: z.string().check(z.describe('where the bytes are now')),
  error: z.string().check(z.describe('why it cannot be read: parse error, I/O error or the bound it breaks')),
});

const Status = z.object({
  version: z.string(),
  uptime_seconds: z.number(),
  provider: z.enum(['chronos', 'builtin']),
  provider_configured: z.string(),
  provider_reason: z.nullable(z.string()),
  nas_reachable: z.nullable(z.boolean()),
  last_reconcile: z.nullable(
    z.object({
      at: instant,
      armed: z.int(),
      cancelled: z.int(),
      unchanged: z.int(),
      failed: z.int(),
      misfires: z.int(),
      trusted: z.boolean(),
      duration_ms: z.number(),
    }),
  ),
  jobs: z.int(),
  damaged: z.array(Damaged),
  desired: z.int(),
  armed: z.int(),
  startup_reconcile: z
    .enum(['running', 'done'])
    .check(z.describe('"running": the answer was given before the first reconcile of this process finished')),
  warning: z.optional(z.string()),
  unconfirmed: z.array(
    z
      .object({ job_id: JobId, fire_at: instant, reason: z.string() })
      .check(
        z.describe(
          'a desired arm no NAS list has confirmed yet; the process does not sleep while any is listed',
        ),
      ),
  ),
  last_fire_at: z.nullable(instant.check(z.describe('the latest accepted NAS fire, over all jobs'))),
  jobs_last_fire_at: z.record(z.string(), nullableInstant),
  last_arm_at: nullableInstant,
  next_wake_at: nullableInstant,
  jwks_cache_age_seconds: z.nullable(z.number()),
  jobs_file: z.nullable(z.string()),
  wake: z
    .object({
      cause: z
        .enum(['fire', 'admin', 'other', 'start'])
        .check(
          z.describe(
            'why this process is up: the first request before it settled (fire: NAS; admin: the admin API, CLI or status page; other: any other path), or start when it settled before any request',
          ),
        ),
      woke_at: instant.check(z.describe('when this process started')),
      settled_at: nullableInstant.check(
        z.describe(
          'since when no run, NAS call, reconcile or alert delivery is in flight and every job is confirmed armed; null while that is not so',
        ),
      ),
      awake_seconds: z.number().check(z.describe('seconds since the process started, to a tenth')),
      awake_because: z
        .nullable(z.string())
        .check(
          z.describe(
            'what keeps the process up now: work, an unconfirmed arm, or the idle window it waits out',
          ),
        ),
      exit_at: nullableInstant.check(
        z.describe(
          'when it exits if nothing else happens (idle exit on, settled); a fire-woken wake exits as soon as it is settled',
        ),
      ),
    })
    .check(z.describe('this wake of the process (docs/operations.md, "Awake time")')),
});

const ErrorReply = z.object({
  error: z.string().check(z.describe('stable error code, e.g. validation_failed, job_not_found')),
  message: z.string(),
  problems: z.optional(z.array(z.object({ path: z.string(), message: z.string() }))),
  accepted_forms: z.optional(z.array(z.string())),
});

const RunAccepted = z.object({
  status: z.literal('accepted'),
  job_id: JobId,
  run_id: z.string(),
  fire_at: instant,
  trigger: z.literal('manual'),
});

const Deleted = z.object({
  id: JobId,
  deleted: z.literal(true),
  armed: z.literal(false),
  moved_to: z.optional(
    z.string().check(z.describe('a damaged job: where its file was moved (it is never destroyed)')),
  ),
  warning: z.optional(z.string()),
});

const components = {
  JobSpec: z.toJSONSchema(JobSpec, { io: 'input', target: 'draft-2020-12' }),
  JobPatch: z.toJSONSchema(z.partial(JobSpec), { io: 'input', target: 'draft-2020-12' }),
  Job: z.toJSONSchema(JobView, { io: 'output', target: 'draft-2020-12' }),
  JobMutationReply: z.toJSONSchema(JobMutationReply, { io: 'output', target: 'draft-2020-12' }),
  JobList: z.toJSONSchema(
    z.object({
      jobs: z.array(JobView),
      damaged: z.array(Damaged),
      reconciling: z.optional(
        z.literal(true).check(z.describe('present while the start-up reconcile has not finished')),
      ),
      warning: z.optional(z.string()),
    }),
    { io: 'output', target: 'draft-2020-12' },
  ),
  Run: z.toJSONSchema(RunView, { io: 'output', target: 'draft-2020-12' }),
  RunList: z.toJSONSchema(z.object({ job_id: JobId, runs: z.array(RunView) }), {
    io: 'output',
    target: 'draft-2020-12',
  }),
  RunAccepted: z.toJSONSchema(RunAccepted, { io: 'output', target: 'draft-2020-12' }),
  Deleted: z.toJSONSchema(Deleted, { io: 'output', target: 'draft-2020-12' }),
  Status: z.toJSONSchema(Status, { io: 'output', target: 'draft-2020-12' }),
  Error: z.toJSONSchema(ErrorReply, { io: 'output', target: 'draft-2020-12' }),
};
for (const schema of Object.values(components)) delete (schema as { $schema?: string }).$schema;

const ref = (name: keyof typeof components) => ({ $ref: `#/components/schemas/${name}` });
const json = (name: keyof typeof components, description: string) => ({
  description,
  content: { 'application/json': { schema: ref(name) } },
});

type AdminRoute = (typeof ADMIN_ROUTES)[number];
type RouteKey = AdminRoute extends infer R
  ? R extends { method: infer M extends string; path: infer P extends string }
    ? `${M} ${P}`
    : never
  : never;

const common = {
  '401': json('Error', 'missing or wrong admin token (unauthorized)'),
};
const withId = {
  '404': json('Error', 'no job with this id (job_not_found)'),
  '409': json(
    'Error',
    'job_damaged: the job file cannot be read (file and damage named); delete or restore it',
  ),
};

/** Request body and replies of every route, by "method path". */
const OPERATIONS: Record<RouteKey, { body?: keyof typeof components; responses: Record<string, unknown> }> = {
  'get /api/jobs': {
    responses: { '200': json('JobList', 'all jobs, by id, and the damaged records that are not jobs') },
  },
  'post /api/jobs': {
    body: 'JobSpec',
    responses: {
      '201': json('JobMutationReply', 'created'),
      '400': json(
        'Error',
        'validation_failed (problems with field paths), invalid_schedule (accepted_forms)',
      ),
      '409': json('Error', 'job_exists, or job_damaged: a damaged job file holds this id'),
    },
  },
  'get /api/jobs/{id}': { responses: { '200': json('Job', 'the job'), ...withId } },
  'patch /api/jobs/{id}': {
    body: 'JobPatch',
    responses: {
      '200': json('JobMutationReply', 'changed'),
      '400': json('Error', 'validation_failed or invalid_schedule'),
      ...withId,
      '409': json('Error', 'job_file_managed (declared in the jobs file) or job_damaged'),
    },
  },
  'delete /api/jobs/{id}': {
    responses: {
      '200': json('Deleted', 'deleted with its history; a damaged job file is moved aside (moved_to)'),
      ...withId,
      '409': json('Error', 'job_file_managed: the job is declared in the jobs file'),
    },
  },
  'post /api/jobs/{id}/pause': { responses: { '200': json('JobMutationReply', 'paused'), ...withId } },
  'post /api/jobs/{id}/resume': { responses: { '200': json('JobMutationReply', 'resumed'), ...withId } },
  'post /api/jobs/{id}/run': {
    responses: {
      '202': json('RunAccepted', 'the manual run has started'),
      ...withId,
      '503': json('Error', 'the run could not be claimed; try again'),
    },
  },
  'get /api/jobs/{id}/runs': {
    responses: { '200': json('RunList', 'newest first'), '400': json('Error', 'bad limit'), ...withId },
  },
  'get /api/status': { responses: { '200': json('Status', 'service status') } },
  'get /api/openapi.json': { responses: { '200': { description: 'this document' } } },
};

export function buildOpenApiDocument(): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of ADMIN_ROUTES) {
    const operation = OPERATIONS[`${route.method} ${route.path}` as RouteKey];
    const parameters: unknown[] = [];
    if (route.path.includes('{id}')) {
      parameters.push({
        name: 'id',
        in: 'path',
        required: true,
        schema: { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]{0,63}$' },
      });
    }
    if (route.path.endsWith('/runs')) {
      parameters.push({
        name: 'limit',
        in: 'query',
        required: false,
        schema: { type: 'integer', minimum: 1, maximum: MAX_RUNS_LIMIT, default: DEFAULT_RUNS_LIMIT },
      });
    }
    paths[route.path] ??= {};
    paths[route.path]![route.method] = {
      summary: route.summary,
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(operation.body
        ? {
            requestBody: { required: true, content: { 'application/json': { schema: ref(operation.body) } } },
          }
        : {}),
      responses: { ...operation.responses, ...common },
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Chronos admin API',
      version: VERSION,
      description:
        'Manage the jobs of one Chronos instance. Every route needs Authorization: Bearer <CHRONOS_ADMIN_TOKEN>.',
    },
    components: {
      securitySchemes: { adminToken: { type: 'http', scheme: 'bearer' } },
      schemas: components,
    },
    security: [{ adminToken: [] }],
    paths,
  };
}
