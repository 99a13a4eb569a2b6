import * as z from 'zod/mini';
import { ALERT_EVENTS, ALERT_FORMATS } from './alerts.js';
import { JOB_ID_PATTERN } from './id.js';
import { JOB_LIMITS, jsonValueProblem } from './limits.js';

// The job spec as users write it (API bodies, jobs-file entries), with its validation. Kept apart from
// model.ts: building these schemas costs a few ms, and the fire path never validates a spec.

export const JobId = z
  .string()
  .check(
    z.regex(JOB_ID_PATTERN, 'must match [a-z0-9][a-z0-9_-]{0,63} (lower-case letters, digits, _ and -)'),
  );

const limitMessage = (max: number) => `must be at most ${max} characters`;
const Name = z.string().check(z.maxLength(JOB_LIMITS.nameChars, limitMessage(JOB_LIMITS.nameChars)));
const Text = z.string().check(z.maxLength(JOB_LIMITS.textChars, limitMessage(JOB_LIMITS.textChars)));

/** Headers and env: bounded in entries and in the length of each name and value (src/jobs/limits.ts). */
const StringMap = (what: string) =>
  z.record(Name, Text).check(
    z.refine((map) => Object.keys(map).length <= JOB_LIMITS.mapEntries, {
      error: `must have at most ${JOB_LIMITS.mapEntries} ${what}`,
    }),
  );

/** A free-form JSON value (http `body`, handler `payload`), bounded in nesting depth and encoded size. */
const JsonValue = z.unknown().check(
  z.superRefine((value, ctx) => {
    const problem = jsonValueProblem(value);
    if (problem !== null) ctx.addIssue({ code: 'custom', message: problem, input: value });
  }),
);

export const HTTP_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

export const HttpTarget = z.strictObject({
  type: z.literal('http'),
  url: z
    .url({ protocol: /^https?$/, error: 'must be an absolute http(s) URL' })
    .check(z.maxLength(JOB_LIMITS.textChars, limitMessage(JOB_LIMITS.textChars))),
  // Any case ("post" is what people type after curl -X post); stored upper-case.
  method: z._default(
    z.pipe(
      z.string().check(
        z.refine((m) => (HTTP_METHODS as readonly string[]).includes(m.toUpperCase()), {
          message: `must be one of ${HTTP_METHODS.join(', ')} (any case)`,
        }),
        z.describe(`one of ${HTTP_METHODS.join(', ')}, in any case; stored upper-case`),
      ),
      // Through the enum again so the output side stays representable in the OpenAPI document.
      z.pipe(
        z.transform((m: string) => m.toUpperCase()),
        z.enum(HTTP_METHODS),
      ),
    ),
    'POST',
  ),
  headers: z._default(StringMap('headers'), {}),
  body: z.optional(JsonValue),
  timeout_seconds: z.optional(z.number().check(z.positive(), z.maximum(86_400))),
});

export const CommandTarget = z.strictObject({
  type: z.literal('command'),
  argv: z
    .array(Text.check(z.minLength(1)))
    .check(
      z.minLength(1, 'needs the program and its arguments'),
      z.maxLength(JOB_LIMITS.argvItems, `must have at most ${JOB_LIMITS.argvItems} items`),
    ),
  cwd: z.optional(Text),
  env: z._default(StringMap('variables'), {}),
});

export const HandlerTarget = z.strictObject({
  type: z.literal('handler'),
  name: Name.check(z.minLength(1)),
  payload: z.optional(JsonValue),
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

export const NotifyDestination = z.strictObject({
  url: z
    .url({
      protocol: /^https?$/,
      error: 'must be an absolute http(s) URL (the webhook that receives alerts)',
    })
    .check(z.maxLength(JOB_LIMITS.textChars, limitMessage(JOB_LIMITS.textChars))),
  format: z._default(z.enum(ALERT_FORMATS, `must be one of ${ALERT_FORMATS.join(', ')}`), 'standard'),
  /** Absent: every event. */
  events: z.optional(
    z
      .array(z.enum(ALERT_EVENTS, `must be one of ${ALERT_EVENTS.join(', ')}`))
      .check(z.minLength(1, 'lists no event: leave `events` out for every event, or remove the destination')),
  ),
});
export type NotifyDestination = z.output<typeof NotifyDestination>;

export const MIN_REMINDER_SECONDS = 60;
export const Notify = z.strictObject({
  /** Absent: the server's default destination (CHRONOS_NOTIFY_URL), if any. `[]`: no alerts for this job. */
  destinations: z.optional(
    z
      .array(NotifyDestination)
      .check(
        z.maxLength(
          JOB_LIMITS.notifyDestinations,
          `must have at most ${JOB_LIMITS.notifyDestinations} destinations`,
        ),
      ),
  ),
  /** While the job keeps failing, `failed` is sent again at a failed run once this long has passed. */
  reminder_seconds: z.optional(
    z.nullable(
      z
        .int()
        .check(
          z.minimum(MIN_REMINDER_SECONDS, `must be at least ${MIN_REMINDER_SECONDS} (seconds)`),
          z.maximum(30 * 86_400, 'must be at most 2592000 (30 days)'),
        ),
    ),
  ),
});
export type Notify = z.output<typeof Notify>;

/**
 * What a user writes (API body, jobs file entry). Defaults that depend on the schedule
 * (repeat.times for one-shots) or on configuration (timezone) are resolved by buildJob (src/jobs/build.ts; the repeat default is src/jobs/lifecycle.ts).
 */
export const JobSpec = z.strictObject({
  id: z.optional(JobId),
  name: z.optional(z.string().check(z.minLength(1), z.maxLength(200))),
  schedule: Name.check(z.minLength(1, 'is required, e.g. "*/15 * * * *" or "every 15m"')),
  timezone: z.optional(Name.check(z.minLength(1))),
  target: Target,
  enabled: z.optional(z.boolean()),
  repeat: z.optional(z.strictObject({ times: z.nullable(z.int().check(z.minimum(1))) })),
  retry: z.optional(z.nullable(RetryPolicy)),
  concurrency: z.optional(Concurrency),
  misfire: z.optional(MisfirePolicy),
  timeout_seconds: z.optional(z.number().check(z.positive(), z.maximum(7 * 86_400))),
  notify: z.optional(Notify),
});
export type JobSpecInput = z.input<typeof JobSpec>;
export type JobSpec = z.output<typeof JobSpec>;
