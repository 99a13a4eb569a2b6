import { formatInstant } from '../clock.js';
import { errorMessage } from '../errors.js';
import type { Job } from './model.js';
import { nextOccurrence, parseSchedule, type Schedule } from './schedule.js';

// Parsing a cron expression is the expensive part of computing an occurrence; jobs are re-read from the
// store on every fire, so compiled schedules are memoised by everything that determines them.
const compiled = new Map<string, Schedule>();
const COMPILED_LIMIT = 20_000;

export function compileSchedule(job: Pick<Job, 'schedule' | 'timezone' | 'anchor_at'>): Schedule {
  const key = `${job.timezone}\u0000${job.anchor_at}\u0000${job.schedule}`;
  let schedule = compiled.get(key);
  if (!schedule) {
    schedule = parseSchedule(job.schedule, { timezone: job.timezone, anchor: job.anchor_at });
    if (compiled.size >= COMPILED_LIMIT) compiled.clear();
    compiled.set(key, schedule);
  }
  return schedule;
}

/**
 * How long one run of the job may take: an http target's own timeout wins over the job's. The claim TTL is
 * sized from it, so a run is never recovered (and run again) while it may still be going: a long job must not be killed or run twice for outliving its claim.
 */
export function runTimeoutMs(job: Pick<Job, 'target' | 'timeout_seconds'>): number {
  const own = job.target.type === 'http' ? job.target.timeout_seconds : undefined;
  return (own ?? job.timeout_seconds) * 1000;
}

/** Whole seconds, rounded up: every instant sent to NAS has second precision (docs/contract.md, Instants on the wire). */
export function toWholeSecond(ms: number): number {
  return Math.ceil(ms / 1000) * 1000;
}

/**
 * A job coming back from a pause or a disable continues from now: the slots it slept through are not
 * replayed. A one-shot keeps its instant even when it passed meanwhile: the misfire rule then runs it within
 * grace or records it missed, as for any overdue one-shot.
 */
export function rescheduleFromNow(job: Job, now: number): Job {
  if (job.repeat.times !== null && job.repeat.completed >= job.repeat.times) {
    return {
      ...job,
      state: 'completed',
      next_run_at: null,
      retry_at: null,
      retry_attempt: 0,
      updated_at: now,
    };
  }
  const next: Job = { ...job, state: 'scheduled', retry_at: null, retry_attempt: 0, updated_at: now };
  const schedule = compileSchedule(job);
  next.next_run_at = schedule.kind === 'once' ? schedule.at : nextOccurrence(schedule, now);
  if (next.next_run_at === null) {
    next.state = 'error';
    next.last_error = `schedule "${job.schedule}" has no occurrence after ${formatInstant(now)}`;
  }
  return next;
}

/** Whether the job should have an armed occurrence at all (row 7 of the reply table in docs/contract.md is the negation). */
export function isActive(job: Job): boolean {
  return job.enabled && job.state === 'scheduled';
}

/** The one instant NAS (or the builtin timer) should hold for this job: its next run or pending retry. */
export function armedInstant(job: Job): number | null {
  if (!isActive(job)) return null;
  const candidates = [job.next_run_at, job.retry_at].filter((v): v is number => v !== null);
  return candidates.length === 0 ? null : Math.min(...candidates);
}

export type OccurrenceKind = 'regular' | 'retry';

/** Which of the job's current instants `fireAt` is, or null when it is neither (a stale fire). */
export function occurrenceKind(job: Job, fireAt: number): OccurrenceKind | null {
  if (job.next_run_at === fireAt) return 'regular';
  if (job.retry_at === fireAt) return 'retry';
  return null;
}

/**
 * The job as it must be stored in the same write that claims the occurrence at `fireAt` (row 12 in docs/contract.md):
 * a regular occurrence counts a repeat and moves next_run_at strictly past both `fireAt` and `now`; a retry
 * occurrence consumes the pending retry. A recurring schedule whose next run cannot be computed puts the job
 * in the recoverable `error` state rather than `completed`: a job marked finished by a transient error would never fire again.
 */
export function advanceJob(job: Job, fireAt: number, kind: OccurrenceKind, now: number): Job {
  const next: Job = { ...job, repeat: { ...job.repeat }, updated_at: now };
  if (kind === 'retry') {
    next.retry_at = null;
    return next;
  }
  // A pending retry at or before this occurrence is overtaken by it; left in place it would stay the armed
  // instant although already claimed (a duplicate at NAS, a busy loop for the builtin timer).
  if (next.retry_at !== null && next.retry_at <= fireAt) next.retry_at = null;
  next.repeat.completed += 1;
  if (next.repeat.times !== null && next.repeat.completed >= next.repeat.times) {
    next.next_run_at = null;
    return next;
  }
  try {
    next.next_run_at = nextOccurrence(compileSchedule(job), Math.max(fireAt, now));
  } catch (err) {
    next.next_run_at = null;
    next.state = 'error';
    next.last_error = `cannot compute the next run: ${errorMessage(err)}`;
    return next;
  }
  if (next.next_run_at === null && compileSchedule(job).kind !== 'once') {
    next.state = 'error';
    next.last_error = `schedule "${job.schedule}" has no occurrence after ${formatInstant(fireAt)}`;
  }
  return next;
}
