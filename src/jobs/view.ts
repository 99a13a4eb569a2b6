import { formatInstant } from '../clock.js';
import type { AlertRecord } from './alerts.js';
import type { Job, JobSpecInput, RunRecord } from './model.js';

/** A job's alert state as the API shows it (docs/operations.md, Alerts). */
export interface AlertStateView {
  failing: boolean;
  failure_streak: number;
  failing_since: string | null;
  last_failed_alert_at: string | null;
  /** Alerts not yet delivered (nor given up), across the job's runs and its own outbox. */
  unsent: number;
  /** Alerts raised without a run (arming_failed), newest last. */
  outbox: AlertView[];
}

/** An alert with its delivery state, instants as ISO-8601. */
export interface AlertView {
  id: string;
  event: AlertRecord['event'];
  destination: string;
  format: AlertRecord['format'];
  state: AlertRecord['state'];
  attempts: number;
  last_error: string | null;
  sent_at: string | null;
  created_at: string;
  reminder: boolean;
  detail: string | null;
}

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
  /** Present only when the job sets it; absent means the server's default destination. */
  notify?: Job['notify'];
  alert_state: AlertStateView | null;
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
  /** The alerts this run raised and how their delivery went. */
  alerts: AlertView[];
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
    ...(job.notify !== undefined ? { notify: job.notify } : {}),
    alert_state: alertStateView(job),
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
    alerts: (run.alerts ?? []).map(alertView),
  };
}

export function alertView(alert: AlertRecord): AlertView {
  return {
    id: alert.id,
    event: alert.event,
    destination: alert.destination,
    format: alert.format,
    state: alert.state,
    attempts: alert.attempts,
    last_error: alert.last_error ?? null,
    sent_at: formatInstant(alert.sent_at ?? null),
    created_at: formatInstant(alert.created_at),
    reminder: alert.reminder === true,
    detail: alert.detail ?? null,
  };
}

function alertStateView(job: Job): AlertStateView | null {
  const state = job.alert_state;
  if (state === undefined) return null;
  const outbox = state.outbox ?? [];
  return {
    failing: state.failing,
    failure_streak: state.failure_streak,
    failing_since: formatInstant(state.failing_since ?? null),
    last_failed_alert_at: formatInstant(state.last_failed_alert_at ?? null),
    // A run listed here holds at least one pending alert; the count is a floor, not an exact figure.
    unsent: (state.unsent_runs?.length ?? 0) + outbox.filter((a) => a.state === 'pending').length,
    outbox: outbox.map(alertView),
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
    ...(job.notify !== undefined ? { notify: job.notify } : {}),
  };
}
