import { randomBytes } from 'node:crypto';
import { formatInstant } from '../clock.js';
import { ChronosError } from '../errors.js';
import { parseOrThrow } from '../validation.js';
import { toWholeSecond } from './jobs.js';
import { completeIfDone, defaultRepeatTimes, repeatReached, rescheduleFromNow } from './lifecycle.js';
import type { Job } from './model.js';
import { nextOccurrence, parseSchedule } from './schedule.js';
import { JobSpec, type JobSpecInput } from './spec.js';
import { isValidTimeZone } from './zone.js';

/** A one-shot created through the API more than this far in the past is refused (docs/schedules.md). */
export const ONE_SHOT_PAST_TOLERANCE_MS = 120_000;
export const DEFAULT_TIMEOUT_SECONDS = 600;

export interface JobBuildContext {
  now: number;
  defaultTimezone: string;
  allowCommands: boolean;
  source: Job['source'];
}

function generateId(name: string | undefined): string {
  const slug = (name ?? 'job')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40);
  return `${slug || 'job'}-${randomBytes(4).toString('hex')}`;
}

/**
 * Build a stored job from a user's spec. With `existing` (PATCH, or a jobs-file upsert) the runtime state is
 * kept, and the next run is recomputed only when the schedule, its zone, or enablement changed.
 */
export function buildJob(input: JobSpecInput | JobSpec, ctx: JobBuildContext, existing?: Job): Job {
  const spec = parseOrThrow(JobSpec, input, 'job');
  const timezone = spec.timezone ?? existing?.timezone ?? ctx.defaultTimezone;
  if (!isValidTimeZone(timezone)) {
    throw new ChronosError('validation_failed', `invalid job: timezone: unknown time zone "${timezone}"`, {
      problems: [
        {
          path: 'timezone',
          message: `unknown time zone "${timezone}"; use an IANA name such as Europe/Paris`,
        },
      ],
    });
  }
  if (spec.target.type === 'command' && ctx.source === 'api' && !ctx.allowCommands) {
    throw new ChronosError(
      'commands_disabled',
      'command targets are disabled: set CHRONOS_ALLOW_COMMANDS=true, or declare the job in the jobs file (CHRONOS_JOBS_FILE)',
      { problems: [{ path: 'target.type', message: 'command targets are disabled on this server' }] },
    );
  }

  const scheduleChanged = !existing || existing.schedule !== spec.schedule || existing.timezone !== timezone;
  // Whole seconds: fire_at goes to NAS at second precision (docs/contract.md), and interval fires land on the anchor's grid.
  const anchor = scheduleChanged ? toWholeSecond(ctx.now) : existing.anchor_at;
  const schedule = parseSchedule(spec.schedule, { timezone, anchor });
  const oneShot = schedule.kind === 'once';
  // A jobs file is re-read at every start, so its one-shots pass while it stays unchanged: a past one there
  // is kept at its instant, and the misfire rule runs it within grace or records it missed (docs/jobs.md).
  // Through the API, a past instant is a mistake worth refusing at once.
  if (
    oneShot &&
    scheduleChanged &&
    ctx.source !== 'file' &&
    schedule.at < ctx.now - ONE_SHOT_PAST_TOLERANCE_MS
  ) {
    throw new ChronosError(
      'invalid_schedule',
      `one-shot time ${formatInstant(schedule.at)} is more than ${ONE_SHOT_PAST_TOLERANCE_MS / 1000} s in the past`,
      { schedule: spec.schedule },
    );
  }

  const enabled = spec.enabled ?? existing?.enabled ?? true;
  // A spec is complete (API body, jobs-file entry): without `repeat`, the default for the schedule's kind applies.
  const times = spec.repeat ? spec.repeat.times : defaultRepeatTimes(oneShot);
  const base: Job = {
    id: existing?.id ?? spec.id ?? generateId(spec.name),
    name: spec.name ?? existing?.name ?? spec.id ?? '',
    schedule: spec.schedule,
    timezone,
    target: spec.target,
    enabled,
    state: existing?.state ?? 'scheduled',
    repeat: { times, completed: existing?.repeat.completed ?? 0 },
    retry: spec.retry ?? null,
    concurrency: spec.concurrency ?? 'forbid',
    misfire: spec.misfire ?? { policy: 'run_once', grace_seconds: 300 },
    timeout_seconds: spec.timeout_seconds ?? DEFAULT_TIMEOUT_SECONDS,
    anchor_at: anchor,
    next_run_at: existing?.next_run_at ?? null,
    retry_at: existing?.retry_at ?? null,
    retry_attempt: existing?.retry_attempt ?? 0,
    last_run_at: existing?.last_run_at ?? null,
    last_fire_at: existing?.last_fire_at ?? null,
    last_status: existing?.last_status ?? null,
    last_error: existing?.last_error ?? null,
    failure_streak: existing?.failure_streak ?? 0,
    source: ctx.source,
    created_at: existing?.created_at ?? ctx.now,
    updated_at: ctx.now,
  };
  if (!base.name) base.name = base.id;
  // Only when given, so a job without alerts settings stores (and compares) exactly as before.
  if (spec.notify !== undefined) base.notify = spec.notify;
  if (existing?.alert_state !== undefined) base.alert_state = existing.alert_state;

  if (scheduleChanged) {
    // A new schedule starts a new series: completion count and state restart from it.
    base.repeat.completed = 0;
    if (base.state === 'completed' || base.state === 'error') base.state = 'scheduled';
    base.next_run_at = oneShot ? schedule.at : nextOccurrence(schedule, ctx.now);
    if (base.next_run_at === null) {
      throw new ChronosError('invalid_schedule', `schedule "${spec.schedule}" never fires after now`, {
        schedule: spec.schedule,
      });
    }
  } else if (existing && repeatReached(base)) {
    return completeIfDone({ ...base, next_run_at: null });
  } else if (existing && !existing.enabled && enabled && base.state === 'scheduled') {
    // Re-enabled: like a resume, continue from now rather than from where it stopped.
    return rescheduleFromNow(base, ctx.now);
  }
  return base;
}
