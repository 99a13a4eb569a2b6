// src/jobs/ owns the job: its model, spec and bounds, the schedule grammar and time zones, building a job
// from a spec, and its lifecycle rules as pure functions (lifecycle.ts). Core: no I/O, imports only the root files.
export { JOB_ID_PATTERN } from './id.js';

export type {
  CommandTarget,
  Concurrency,
  HandlerTarget,
  HttpTarget,
  JobSpec,
  JobSpecInput,
  MisfirePolicy,
  Notify,
  NotifyDestination,
  RetryPolicy,
  Target,
} from './spec.js';

import type { AlertRecord, AlertState } from './alerts.js';
import type { Concurrency, MisfirePolicy, Notify, RetryPolicy, Target } from './spec.js';

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
 * The stored job. Field names follow docs/jobs.md (snake_case, as in the API); instants are epoch
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
  /** A pending retry occurrence after a failed run (docs/jobs.md, Retry); NAS is armed at min(next_run_at, retry_at). */
  retry_at: number | null;
  /** Attempt number the pending retry will run as (2 = first retry). */
  retry_attempt: number;
  last_run_at: number | null;
  /**
   * When NAS last delivered a fire Chronos accepted for this job (written by the claim itself, so it
   * survives the process sleeping). Absent in jobs stored before it existed.
   */
  last_fire_at?: number | null;
  last_status: RunStatus | null;
  last_error: string | null;
  failure_streak: number;
  /** Where this job's alerts go (docs/jobs.md, Notify); absent: the server's default (CHRONOS_NOTIFY_URL). */
  notify?: Notify;
  /** Failing or not, for alerts that follow state changes; absent until a run ends with alerts in place. */
  alert_state?: AlertState;
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
  /** Alerts this run raised, written in the same store write as the run's outcome, with their delivery state. */
  alerts?: AlertRecord[];
}
