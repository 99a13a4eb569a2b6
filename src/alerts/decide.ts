import { createHash } from 'node:crypto';
import type { RunAlertKind } from '../jobs/alert-hooks.js';
import type { AlertEvent, AlertFormat, AlertRecord, AlertState } from '../jobs/alerts.js';
import type { Job, RunRecord } from '../jobs/model.js';
import type { NotifyDestination } from '../jobs/spec.js';

// What alerts a run's end (or a missed occurrence, or a failing arm) raises, and the job's alert state
// after it. Pure functions: the runner decides on the job it ran, and applies the state again under the
// job's lock on the fresh job (docs/operations.md, Alerts).

/** The server-wide destination (CHRONOS_NOTIFY_URL) for jobs that do not list their own. */
export interface AlertDefaults {
  url: string;
  format: AlertFormat;
}

/** Runs whose alerts a job may point at; more would only mean more reads at start. */
const UNSENT_RUNS_LIMIT = 50;

/** The destinations a job's alerts go to: its own when it lists them (`[]`: none), else the default. */
export function destinationsOf(job: Job, defaults: AlertDefaults | undefined): NotifyDestination[] {
  const own = job.notify?.destinations;
  if (own !== undefined) return own;
  return defaults ? [{ url: defaults.url, format: defaults.format }] : [];
}

export function destinationKey(url: string): string {
  return createHash('sha256').update(url).digest('hex').slice(0, 16);
}

/** The URL as it may be shown: no user, password, query or fragment (they often carry credentials). */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.origin}${parsed.pathname}${parsed.search ? '?[redacted]' : ''}`;
  } catch {
    return '[unparsable URL]';
  }
}

/** The failing-state machine: one `failed` per failing streak (plus reminders), one `recovered` at its end. */
export function nextAlertState(
  job: Job,
  kind: RunAlertKind,
  now: number,
): { state: AlertState | undefined; event: 'failed' | 'recovered' | null; reminder: boolean } {
  const previous = job.alert_state;
  const base: AlertState = previous ?? { failing: false, failure_streak: 0 };
  switch (kind) {
    case 'success': {
      if (previous === undefined) return { state: undefined, event: null, reminder: false };
      const { failing_since: _since, last_failed_alert_at: _last, ...rest } = base;
      return {
        state: { ...rest, failing: false, failure_streak: 0 },
        event: base.failing ? 'recovered' : null,
        reminder: false,
      };
    }
    case 'final_failure': {
      const streak = job.failure_streak;
      if (!base.failing) {
        return {
          state: {
            ...base,
            failing: true,
            failure_streak: streak,
            failing_since: now,
            last_failed_alert_at: now,
          },
          event: 'failed',
          reminder: false,
        };
      }
      const reminderMs = (job.notify?.reminder_seconds ?? 0) * 1000;
      const last = base.last_failed_alert_at ?? base.failing_since ?? now;
      if (reminderMs > 0 && now - last >= reminderMs) {
        return {
          state: { ...base, failure_streak: streak, last_failed_alert_at: now },
          event: 'failed',
          reminder: true,
        };
      }
      return { state: { ...base, failure_streak: streak }, event: null, reminder: false };
    }
    case 'retrying':
      return {
        state: previous === undefined ? undefined : { ...base, failure_streak: job.failure_streak },
        event: null,
        reminder: false,
      };
    default:
      return { state: previous, event: null, reminder: false };
  }
}

/**
 * One pending alert per destination that takes `event`. The id is derived from what the alert is about
 * (`seed`: the run, or the job and instant) and where it goes, so raising it again yields the same id.
 */
export function raiseAlerts(
  job: Job,
  event: AlertEvent,
  options: { seed: string; now: number; reminder?: boolean; detail?: string },
  defaults: AlertDefaults | undefined,
): AlertRecord[] {
  const alerts: AlertRecord[] = [];
  for (const destination of destinationsOf(job, defaults)) {
    if (destination.events !== undefined && !destination.events.includes(event)) continue;
    const key = destinationKey(destination.url);
    const digest = createHash('sha256').update(`${options.seed}|${event}|${key}`).digest('base64url');
    const alert: AlertRecord = {
      id: `msg_${digest.slice(0, 27)}`,
      event,
      destination: redactUrl(destination.url),
      destination_key: key,
      format: destination.format,
      state: 'pending',
      attempts: 0,
      created_at: options.now,
    };
    if (options.reminder) alert.reminder = true;
    if (options.detail !== undefined) alert.detail = options.detail;
    alerts.push(alert);
  }
  return alerts;
}

/** The alerts for a run's end: `failed`/`recovered` on state changes, `missed` for every missed occurrence. */
export function raiseRunAlerts(
  job: Job,
  run: RunRecord,
  kind: RunAlertKind,
  now: number,
  defaults: AlertDefaults | undefined,
): AlertRecord[] {
  const seed = `${run.job_id}|${run.run_id}`;
  if (kind === 'missed') return raiseAlerts(job, 'missed', { seed, now }, defaults);
  const { event, reminder } = nextAlertState(job, kind, now);
  return event === null ? [] : raiseAlerts(job, event, { seed, now, reminder }, defaults);
}

/** `job` with its alert state after the run, and a pointer to the run while it holds a pending alert. */
export function settleRunAlerts(job: Job, run: RunRecord, kind: RunAlertKind, now: number): Job {
  const { state } = nextAlertState(job, kind, now);
  const pending = (run.alerts ?? []).some((a) => a.state === 'pending');
  if (!pending) return state === job.alert_state ? job : withState(job, state);
  const next: AlertState = state ?? { failing: false, failure_streak: job.failure_streak };
  const unsent = (next.unsent_runs ?? []).filter((id) => id !== run.run_id);
  unsent.push(run.run_id);
  return withState(job, { ...next, unsent_runs: unsent.slice(-UNSENT_RUNS_LIMIT) });
}

function withState(job: Job, state: AlertState | undefined): Job {
  if (state === undefined) {
    const { alert_state: _dropped, ...rest } = job;
    return rest;
  }
  return { ...job, alert_state: state };
}
