// The job's lifecycle rules, each decided here and only here, as pure functions of a job and an instant:
// which instant is armed, how a claim advances the job, what a run leaves behind, when a job is
// completed, pause, resume, the misfire rule and the repeat default. The claim (src/occurrence/), the
// runner, the engine, the admin API and the jobs file call these (docs/architecture.md, "Where each
// lifecycle rule lives").

import { formatInstant } from '../clock.js';
import { errorMessage } from '../errors.js';
import { compileSchedule, toWholeSecond } from './jobs.js';
import type { Job, JobSpecInput, RunRecord } from './model.js';
import { isOneShotSchedule, nextOccurrence } from './schedule.js';

/** The series has run its course: as many occurrences claimed as `repeat.times` allows. */
export function repeatReached(job: Pick<Job, 'repeat'>): boolean {
  return job.repeat.times !== null && job.repeat.completed >= job.repeat.times;
}

/** `repeat.times` when a spec gives none: a one-shot runs once, anything else until removed. */
export function defaultRepeatTimes(oneShot: boolean): number | null {
  return oneShot ? 1 : null;
}

/**
 * When a job is completed (the one answer): a scheduled job with nothing left to run, no next occurrence
 * and no retry pending. Applied after a run, after a missed occurrence, on resume and on an edit. Only a
 * `scheduled` job moves: a recurring job whose next run could not be computed was put in `error` by its
 * claim and must stay recoverable there; a paused job keeps its state until it is resumed.
 */
export function completeIfDone(job: Job): Job {
  if (job.next_run_at === null && job.retry_at === null && job.state === 'scheduled') {
    return { ...job, state: 'completed' };
  }
  return job;
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
  if (repeatReached(next)) {
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

/**
 * A job coming back from a pause or a disable continues from now: the slots it slept through are not
 * replayed. A one-shot keeps its instant even when it passed meanwhile: the misfire rule then runs it within
 * grace or records it missed, as for any overdue one-shot.
 */
export function rescheduleFromNow(job: Job, now: number): Job {
  const next: Job = { ...job, state: 'scheduled', retry_at: null, retry_attempt: 0, updated_at: now };
  if (repeatReached(job)) return completeIfDone({ ...next, next_run_at: null });
  const schedule = compileSchedule(job);
  next.next_run_at = schedule.kind === 'once' ? schedule.at : nextOccurrence(schedule, now);
  if (next.next_run_at === null) {
    next.state = 'error';
    next.last_error = `schedule "${job.schedule}" has no occurrence after ${formatInstant(now)}`;
  }
  return next;
}

/** Pause: no occurrence is armed until resumed. A pending retry belongs to the run before the pause and is dropped. */
export function pauseJob(job: Job, now: number): Job {
  if (job.state === 'paused' || job.state === 'completed') return job;
  return { ...job, state: 'paused', retry_at: null, retry_attempt: 0, updated_at: now };
}

/**
 * Resume: state `scheduled` again, with the next run computed from now (occurrences missed while paused are
 * not made up). A series that has run its course stays completed: resuming never revives a finished one-shot.
 */
export function resumeJob(job: Job, now: number): Job {
  if (job.state === 'scheduled' || job.state === 'completed') return job;
  return rescheduleFromNow(job, now);
}

/**
 * The spec a PATCH asks for: the stored spec with the patch's fields over it. The stored repeat count was
 * the default of the old schedule's kind, so a schedule of the other kind (one-shot ↔ recurring) without an
 * explicit `repeat` gets its own kind's default.
 */
export function patchedSpec(current: JobSpecInput, patch: Partial<JobSpecInput>): JobSpecInput {
  const merged: JobSpecInput = { ...current, ...patch };
  if (patch.schedule !== undefined && patch.repeat === undefined) {
    const before = defaultRepeatTimes(isOneShotSchedule(current.schedule));
    const after = defaultRepeatTimes(isOneShotSchedule(patch.schedule));
    if (before !== after) merged.repeat = { times: after };
  }
  return merged;
}

/** Exponential backoff: backoff, 2×backoff, 4×backoff… capped. `attempt` is the run that just failed. */
export function retryDelayMs(policy: NonNullable<Job['retry']>, attempt: number): number {
  const seconds = policy.backoff_seconds * 2 ** Math.max(0, attempt - 1);
  return Math.min(seconds, policy.max_backoff_seconds) * 1000;
}

export interface RunVerdict {
  /** The run failed on its own account (not replaced by a newer run). */
  failed: boolean;
  /** A retry could succeed (false when configuration, not the job, is at fault). */
  retryable: boolean;
  /** The attempt number of the run that ended. */
  attempt: number;
}

/**
 * The job after a run recorded to its end, on the fresh job: the summary (last run, status, error), the
 * failure streak, the retry it leaves pending if any, and completion.
 */
export function jobAfterRun(job: Job, run: RunRecord, verdict: RunVerdict): Job {
  const next: Job = { ...job, last_run_at: run.started_at, last_status: run.status, last_error: run.error };
  if (run.status === 'succeeded') {
    return completeIfDone({ ...next, failure_streak: 0, retry_at: null, retry_attempt: 0 });
  }
  // Replaced by a newer run: that run's outcome decides the streak and retries.
  if (!verdict.failed) return completeIfDone(next);
  const policy = job.retry;
  if (verdict.retryable && isActive(job) && policy && verdict.attempt < policy.max_attempts) {
    const at = toWholeSecond((run.finished_at ?? run.started_at) + retryDelayMs(policy, verdict.attempt));
    // A retry due after the next regular occurrence would only repeat what that occurrence does.
    if (job.next_run_at === null || at < job.next_run_at) {
      return {
        ...next,
        failure_streak: job.failure_streak + 1,
        retry_at: at,
        retry_attempt: verdict.attempt + 1,
      };
    }
  }
  return completeIfDone({
    ...next,
    failure_streak: job.failure_streak + 1,
    retry_at: null,
    retry_attempt: 0,
  });
}

/**
 * The job after boot recovery recorded a run `interrupted`: its summary, unless a later run (another
 * process's) already wrote a newer one; and completion. An interrupted run is never retried.
 */
export function jobAfterInterruptedRun(job: Job, run: RunRecord): Job {
  const newer = job.last_run_at !== null && job.last_run_at > run.started_at;
  if (newer) return completeIfDone(job);
  return completeIfDone({
    ...job,
    last_run_at: run.started_at,
    last_status: run.status,
    last_error: run.error,
  });
}

/** The misfire rule's threshold: an armed instant overdue by more than the job's grace was never delivered. */
export function pastMisfireGrace(job: Pick<Job, 'misfire'>, instant: number, now: number): boolean {
  return now - instant > job.misfire.grace_seconds * 1000;
}

/**
 * What happens to an occurrence past its misfire grace (docs/jobs.md, Misfire): `run_once` runs it now
 * (its claim moves next_run_at past now: never a burst); `skip`, and every one-shot, record it `missed`.
 */
export function misfireAction(job: Job): 'run' | 'miss' {
  return job.misfire.policy === 'run_once' && compileSchedule(job).kind !== 'once' ? 'run' : 'miss';
}

/**
 * The job as stored with the `missed` row of its occurrence at `instant`: the occurrence counts and the
 * schedule moves on, as a claim would; null when `instant` is no longer one of the job's current instants.
 */
export function jobAfterMissed(job: Job, instant: number, now: number): Job | null {
  const kind = isActive(job) ? occurrenceKind(job, instant) : null;
  if (kind === null) return null;
  const next = advanceJob(job, instant, kind, now);
  next.last_status = 'missed';
  next.last_error = `occurrence ${formatInstant(instant)} was not delivered in time`;
  return completeIfDone(next);
}
