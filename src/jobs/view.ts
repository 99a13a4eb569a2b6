import { formatInstant } from '../clock.js';
import type { Job, JobSpecInput, RunRecord } from './model.js';

/**
 * The API shape of a job: the stored record with instants as ISO-8601 UTC strings and whether the
 * provider holds an arm for it. `anchor_at` and `retry_attempt` are bookkeeping, not part of the contract.
 */
export interface JobView {
  id: string;
  name: string;
  schedule: string;
  timezone: string;
  target: Job['target'];
  enabled: boolean;
  state: Job['state'];
  repeat: Job['repeat'];
  retry: Job['retry'];
  concurrency: Job['concurrency'];
  misfire: Job['misfire'];
  timeout_seconds: number;
  next_run_at: string | null;
  retry_at: string | null;
  last_run_at: string | null;
  /** When NAS last delivered a fire for this job that Chronos accepted. */
  last_fire_at: string | null;
  last_status: Job['last_status'];
  last_error: string | null;
  failure_streak: number;
  source: Job['source'];
  created_at: string;
  updated_at: string;
  armed: boolean;
}

export interface RunView {
  run_id: string;
  job_id: string;
  fire_at: string;
  trigger: RunRecord['trigger'];
  status: RunRecord['status'];
  attempt: number;
  started_at: string;
  finished_at: string | null;
  duration_ms: number | null;
  output: string | null;
  error: string | null;
}

export function jobView(job: Job, armed: boolean): JobView {
  return {
    id: job.id,
    name: job.name,
    schedule: job.schedule,
    timezone: job.timezone,
    target: job.target,
    enabled: job.enabled,
    state: job.state,
    repeat: job.repeat,
    retry: job.retry,
    concurrency: job.concurrency,
    misfire: job.misfire,
    timeout_seconds: job.timeout_seconds,
    next_run_at: formatInstant(job.next_run_at),
    retry_at: formatInstant(job.retry_at),
    last_run_at: formatInstant(job.last_run_at),
    last_fire_at: formatInstant(job.last_fire_at ?? null),
    last_status: job.last_status,
    last_error: job.last_error,
    failure_streak: job.failure_streak,
    source: job.source,
    created_at: formatInstant(job.created_at),
    updated_at: formatInstant(job.updated_at),
    armed,
  };
}

export function runView(run: RunRecord): RunView {
  return {
    run_id: run.run_id,
    job_id: run.job_id,
    fire_at: formatInstant(run.fire_at),
    trigger: run.trigger,
    status: run.status,
    attempt: run.attempt,
    started_at: formatInstant(run.started_at),
    finished_at: formatInstant(run.finished_at),
    duration_ms: run.finished_at === null ? null : run.finished_at - run.started_at,
    output: run.output,
    error: run.error,
  };
}

/**
 * The user-editable part of a stored job, as a spec that `buildJob` accepts again. PATCH merges onto it;
 * the jobs-file sync compares it to decide whether a declared job changed at all.
 */
export function jobSpecOf(job: Job): JobSpecInput {
  return {
    id: job.id,
    name: job.name,
    schedule: job.schedule,
    timezone: job.timezone,
    target: job.target,
    enabled: job.enabled,
    repeat: { times: job.repeat.times },
    retry: job.retry,
    concurrency: job.concurrency,
    misfire: job.misfire,
    timeout_seconds: job.timeout_seconds,
  };
}
