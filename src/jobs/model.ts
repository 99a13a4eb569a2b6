import * as z from 'zod/mini';

/** SPEC §3: ids are user-visible, used in file names and NAS dedup keys. */
export const JOB_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;
export const JobId = z
  .string()
  .check(
    z.regex(JOB_ID_PATTERN, 'must match [a-z0-9][a-z0-9_-]{0,63} (lower-case letters, digits, _ and -)'),
  );

const HeaderMap = z.record(z.string(), z.string());

export const HttpTarget = z.strictObject({
  type: z.literal('http'),
  url: z.url({ protocol: /^https?$/, error: 'must be an absolute http(s) URL' }),
  method: z._default(z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']), 'POST'),
  headers: z._default(HeaderMap, {}),
  body: z.optional(z.unknown()),
  timeout_seconds: z.optional(z.number().check(z.positive(), z.maximum(86_400))),
});

export const CommandTarget = z.strictObject({
  type: z.literal('command'),
  argv: z
    .array(z.string().check(z.minLength(1)))
    .check(z.minLength(1, 'needs the program and its arguments')),
  cwd: z.optional(z.string()),
  env: z._default(z.record(z.string(), z.string()), {}),
});

export const HandlerTarget = z.strictObject({
  type: z.literal('handler'),
  name: z.string().check(z.minLength(1)),
  payload: z.optional(z.unknown()),
});

export const Target = z.discriminatedUnion('type', [HttpTarget, CommandTarget, HandlerTarget]);
export type Target = z.output<typeof Target>;
export type HttpTarget = z.output<typeof HttpTarget>;
export type CommandTarget = z.output<typeof CommandTarget>;
export type HandlerTarget = z.output<typeof HandlerTarget>;

export const RetryPolicy = z.strictObject({
  max_attempts: z.int().check(z.minimum(1), z.maximum(100)),
  backoff_seconds: z._default(z.number().check(z.positive()), 30),
  max_backoff_seconds: z._default(z.number().check(z.positive()), 3600),
});
export type RetryPolicy = z.output<typeof RetryPolicy>;

export const Concurrency = z.enum(['forbid', 'allow', 'replace']);
export type Concurrency = z.output<typeof Concurrency>;

export const MisfirePolicy = z.strictObject({
  policy: z._default(z.enum(['run_once', 'skip']), 'run_once'),
  grace_seconds: z._default(z.int().check(z.minimum(0)), 300),
});
export type MisfirePolicy = z.output<typeof MisfirePolicy>;

/**
 * What a user writes (API body, jobs file entry). Defaults that depend on the schedule
 * (repeat.times for one-shots) or on configuration (timezone) are resolved in src/jobs/jobs.ts.
 */
export const JobSpec = z.strictObject({
  id: z.optional(JobId),
  name: z.optional(z.string().check(z.minLength(1), z.maxLength(200))),
  schedule: z.string().check(z.minLength(1, 'is required, e.g. "*/15 * * * *" or "every 15m"')),
  timezone: z.optional(z.string().check(z.minLength(1))),
  target: Target,
  enabled: z.optional(z.boolean()),
  repeat: z.optional(z.strictObject({ times: z.nullable(z.int().check(z.minimum(1))) })),
  retry: z.optional(z.nullable(RetryPolicy)),
  concurrency: z.optional(Concurrency),
  misfire: z.optional(MisfirePolicy),
  timeout_seconds: z.optional(z.number().check(z.positive(), z.maximum(7 * 86_400))),
});
export type JobSpecInput = z.input<typeof JobSpec>;
export type JobSpec = z.output<typeof JobSpec>;

export type JobState = 'scheduled' | 'paused' | 'completed' | 'error';
export type RunStatus =
  | 'running'
  | 'succeeded'
  | 'failed'
  | 'timed_out'
  | 'skipped'
  | 'missed'
  | 'interrupted';
export type Trigger = 'nas' | 'builtin' | 'manual' | 'misfire' | 'retry';

/**
 * The stored job. Field names follow SPEC §3 (snake_case, as in the API); instants are epoch
 * milliseconds internally and rendered as ISO-8601 only at the API edge (src/jobs/view.ts), so
 * comparisons are always instant comparisons.
 */
export interface Job {
  id: string;
  name: string;
  schedule: string;
  timezone: string;
  target: Target;
  enabled: boolean;
  state: JobState;
  repeat: { times: number | null; completed: number };
  retry: RetryPolicy | null;
  concurrency: Concurrency;
  misfire: MisfirePolicy;
  timeout_seconds: number;
  /** Origin of interval and relative schedules ("every 15m", "in 45m"): set at creation and whenever the schedule changes. */
  anchor_at: number;
  next_run_at: number | null;
  /** A pending retry occurrence after a failed run (SPEC §4); NAS is armed at min(next_run_at, retry_at). */
  retry_at: number | null;
  /** Attempt number the pending retry will run as (2 = first retry). */
  retry_attempt: number;
  last_run_at: number | null;
  last_status: RunStatus | null;
  last_error: string | null;
  failure_streak: number;
  source: 'api' | 'file';
  created_at: number;
  updated_at: number;
}

export interface RunRecord {
  run_id: string;
  job_id: string;
  /** The occurrence this run belongs to (for manual runs, the instant it was requested). */
  fire_at: number;
  trigger: Trigger;
  status: RunStatus;
  attempt: number;
  started_at: number;
  finished_at: number | null;
  /** Bounded excerpt of stdout/stderr or the HTTP response body. */
  output: string | null;
  error: string | null;
}
