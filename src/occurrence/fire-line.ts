import { formatInstant } from '../clock.js';
import type { Job, RunRecord, Trigger } from '../jobs/model.js';

/** The message of the one info line each accepted fire writes (docs/operations.md, Logs). */
export const FIRE_LINE_MSG = 'job ran';
/** A run's error is kept whole in its history; the log line carries its start. */
const ERROR_CHARS = 300;

export interface FireLineInput {
  job_id: string;
  fire_at: number;
  run_id: string;
  trigger: Trigger;
  attempt: number;
  recovered: boolean;
  /** The run as recorded; undefined when the work failed before the run was recorded. */
  run: RunRecord | undefined;
  /** The job as it stands after the run (undefined: deleted meanwhile, or not readable). */
  after: Job | undefined;
  /** Whether the provider holds the job's next arm once the fire's work is done. */
  nextArmed: boolean;
}

/**
 * What one fire did, in one line: which job and occurrence, how it was answered (NAS and run-now callers
 * get a 202 before the run starts), which run, its outcome, and what is armed next. The steps (accepted,
 * armed, run started, run finished) are logged at debug.
 */
export function fireLine(input: FireLineInput): { level: 'info' | 'warn'; fields: Record<string, unknown> } {
  const { run, after } = input;
  const status = run?.status ?? 'unknown';
  const failed = status === 'failed' || status === 'timed_out' || status === 'unknown';
  const error = run?.error ?? null;
  const fields: Record<string, unknown> = {
    job_id: input.job_id,
    fire_at: formatInstant(input.fire_at),
    status,
    ...(input.trigger === 'nas' || input.trigger === 'manual' ? { reply: 202 } : {}),
    run_id: input.run_id,
    trigger: input.trigger,
    ...(input.attempt > 1 ? { attempt: input.attempt } : {}),
    ...(input.recovered ? { recovered: true } : {}),
    duration_ms:
      run?.finished_at === null || run?.finished_at === undefined ? null : run.finished_at - run.started_at,
    ...(error === null
      ? {}
      : { error: error.length > ERROR_CHARS ? `${error.slice(0, ERROR_CHARS)}…` : error }),
    next_run_at: formatInstant(after?.next_run_at ?? null),
    ...(after?.retry_at == null ? {} : { retry_at: formatInstant(after.retry_at) }),
    next_armed: input.nextArmed,
  };
  return { level: failed ? 'warn' : 'info', fields };
}
