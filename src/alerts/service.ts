// src/alerts/ owns failure alerts: which alert a run raises and the job's failing state (decide.ts), the
// payloads (payload.ts), and their delivery off the run's path (this file). docs/operations.md, Alerts.
import { type Clock, formatInstant, type TimerHandle } from '../clock.js';
import { isChronosError } from '../errors.js';
import type { RunAlertKind, RunAlerts } from '../jobs/alert-hooks.js';
import type { AlertRecord, AlertState } from '../jobs/alerts.js';
import type { Job, RunRecord } from '../jobs/model.js';
import type { Logger } from '../logger.js';
import { signingKey, webhookHeaders } from '../signing.js';
import type { Store } from '../store/store.js';
import { USER_AGENT } from '../version.js';
import {
  type AlertDefaults,
  destinationKey,
  destinationsOf,
  raiseAlerts,
  raiseRunAlerts,
  settleRunAlerts,
} from './decide.js';
import { alertBody } from './payload.js';

export interface AlertDelivery {
  /** Attempts per alert, across restarts, before it is recorded `gave_up`. */
  maxAttempts: number;
  /** Wait after the first failed attempt; doubled after each one, up to `maxDelayMs`. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** One attempt's limit, from sending to the end of the reply. */
  requestTimeoutMs: number;
}

/** Six attempts over about a minute (2 + 4 + 8 + 16 + 32 s between them): how long an unsent alert keeps the process up. */
export const DEFAULT_ALERT_DELIVERY: AlertDelivery = {
  maxAttempts: 6,
  baseDelayMs: 2_000,
  maxDelayMs: 60_000,
  requestTimeoutMs: 10_000,
};

/** Alerts kept in a job's own outbox (those without a run record); the oldest are dropped beyond it. */
export const OUTBOX_LIMIT = 20;

export interface AlertServiceDeps {
  store: Store;
  clock: Clock;
  logger: Logger;
  /** Delivery in progress holds the process awake (src/scheduler/activity.ts). */
  activity: { begin(kind: 'alert'): () => void };
  /** CHRONOS_NOTIFY_URL (and its format): for jobs without their own destinations. */
  defaults?: AlertDefaults;
  /** CHRONOS_NOTIFY_SECRET: signs every alert (Standard Webhooks); unsigned without it. */
  secret?: string;
  delivery?: Partial<AlertDelivery>;
}

/** Where an alert is stored: in a run record, or (no `run_id`) in its job's outbox. */
interface AlertHome {
  job_id: string;
  run_id?: string;
}

type Attempt = { ok: true } | { ok: false; error: string; permanent: boolean };

/**
 * Raises alerts on the run path (pure decisions, written by the caller with the run record) and delivers
 * them off it: each pending alert is sent with retries and backoff on the clock, its delivery state written
 * back where it lives, and de-duplicated by id (one delivery in flight per id; a `sent` alert is never
 * sent again). docs/operations.md, Alerts.
 */
export class AlertService implements RunAlerts {
  private readonly delivery: AlertDelivery;
  private readonly key: Buffer | undefined;
  private readonly inflight = new Set<string>();
  private readonly sleeping = new Map<TimerHandle, () => void>();
  /** Requests in flight, aborted by stop(): a stopping process must not wait for a slow receiver. */
  private readonly requests = new Set<AbortController>();
  private stopped = false;

  constructor(private readonly deps: AlertServiceDeps) {
    this.delivery = { ...DEFAULT_ALERT_DELIVERY, ...deps.delivery };
    this.key = deps.secret === undefined ? undefined : signingKey(deps.secret);
  }

  raise(job: Job, run: RunRecord, kind: RunAlertKind, now: number): AlertRecord[] {
    return raiseRunAlerts(job, run, kind, now, this.deps.defaults);
  }

  settle(job: Job, run: RunRecord, kind: RunAlertKind, now: number): Job {
    return settleRunAlerts(job, run, kind, now);
  }

  dispatch(jobId: string, runId: string, alerts: readonly AlertRecord[]): void {
    for (const alert of alerts) this.deliver({ job_id: jobId, run_id: runId }, alert);
  }

  /** Alerts in flight (delivering or waiting to retry). */
  get pending(): number {
    return this.inflight.size;
  }

  /**
   * A job that could not be armed at NAS for the configured time: the alert has no run record, so it is kept
   * in the job's own outbox. `since` (when arming started failing) makes one alert per failing stretch.
   */
  async armingFailed(jobId: string, since: number, error: string): Promise<void> {
    const now = this.deps.clock.now();
    const detail = `could not be armed at NAS since ${formatInstant(since)}: ${error}`;
    const seed = `${jobId}|arming|${since}`;
    let raised: AlertRecord[] = [];
    try {
      const current = await this.deps.store.getJob(jobId);
      if (!current) return;
      if (raiseAlerts(current, 'arming_failed', { seed, now, detail }, this.deps.defaults).length === 0)
        return;
      await this.deps.store.updateJob(jobId, (job) => {
        raised = raiseAlerts(job, 'arming_failed', { seed, now, detail }, this.deps.defaults);
        const kept = job.alert_state?.outbox ?? [];
        const known = new Set(kept.map((a) => a.id));
        raised = raised.filter((a) => !known.has(a.id));
        if (raised.length === 0) return job;
        const state: AlertState = job.alert_state ?? { failing: false, failure_streak: job.failure_streak };
        return { ...job, alert_state: { ...state, outbox: [...kept, ...raised].slice(-OUTBOX_LIMIT) } };
      });
    } catch (err) {
      this.deps.logger.error({ err, job_id: jobId }, 'recording an arming_failed alert failed');
      return;
    }
    for (const alert of raised) this.deliver({ job_id: jobId }, alert);
  }

  /** At start: every alert a previous process left pending is delivered (its attempts count on). */
  async resume(): Promise<number> {
    let resumed = 0;
    for (const job of await this.deps.store.listJobs()) {
      const state = job.alert_state;
      if (state === undefined) continue;
      for (const alert of state.outbox ?? []) {
        if (alert.state !== 'pending') continue;
        this.deliver({ job_id: job.id }, alert);
        resumed += 1;
      }
      for (const runId of state.unsent_runs ?? []) {
        try {
          const run = await this.deps.store.getRun(job.id, runId);
          const pending = (run?.alerts ?? []).filter((a) => a.state === 'pending');
          if (pending.length === 0) await this.clearPointer({ job_id: job.id, run_id: runId });
          for (const alert of pending) this.deliver({ job_id: job.id, run_id: runId }, alert);
          resumed += pending.length;
        } catch (err) {
          this.deps.logger.error({ err, job_id: job.id, run_id: runId }, 'reading pending alerts failed');
        }
      }
    }
    if (resumed > 0) this.deps.logger.info({ count: resumed }, 'resuming alerts left pending');
    return resumed;
  }

  /** Stops delivering: alerts still pending stay so in the store and are resumed by the next process. */
  stop(): void {
    this.stopped = true;
    for (const [handle, wake] of this.sleeping) {
      this.deps.clock.clearTimeout(handle);
      wake();
    }
    this.sleeping.clear();
    for (const controller of this.requests) controller.abort(new Error('process stopping'));
  }

  private deliver(home: AlertHome, alert: AlertRecord): void {
    if (alert.state !== 'pending' || this.stopped || this.inflight.has(alert.id)) return;
    this.inflight.add(alert.id);
    const end = this.deps.activity.begin('alert');
    void this.deliverUntilDone(home, alert.id)
      .catch((err: unknown) =>
        this.deps.logger.error({ err, job_id: home.job_id, alert_id: alert.id }, 'alert delivery failed'),
      )
      .finally(() => {
        this.inflight.delete(alert.id);
        end();
      });
  }

  private async deliverUntilDone(home: AlertHome, id: string): Promise<void> {
    const fields = { job_id: home.job_id, run_id: home.run_id, alert_id: id };
    for (;;) {
      if (this.stopped) return;
      const found = await this.load(home, id);
      // The job was removed or the run left the history: nothing left to tell anyone about.
      if (found === undefined) return;
      const { job, run, alert } = found;
      // Another delivery (an earlier process, a resume) already finished it.
      if (alert.state !== 'pending') break;
      const logged = { ...fields, event: alert.event, destination: alert.destination };
      const destination = destinationsOf(job, this.deps.defaults).find(
        (d) => destinationKey(d.url) === alert.destination_key,
      );
      if (destination === undefined) {
        await this.record(home, id, { state: 'gave_up', last_error: 'destination no longer configured' });
        this.deps.logger.warn(logged, 'alert not sent: its destination is no longer configured');
        break;
      }
      const attempt = await this.post(destination.url, alert, alertBody(alert, job, run));
      // Cut short by stop(): not an attempt of the receiver's; the next process makes it again.
      if (this.stopped) return;
      const attempts = alert.attempts + 1;
      if (attempt.ok) {
        await this.record(home, id, { state: 'sent', attempts, sent_at: this.deps.clock.now() });
        this.deps.logger.info({ ...logged, attempts }, 'alert sent');
        break;
      }
      if (attempt.permanent || attempts >= this.delivery.maxAttempts) {
        await this.record(home, id, { state: 'gave_up', attempts, last_error: attempt.error });
        this.deps.logger.error(
          { ...logged, attempts, error: attempt.error },
          'alert delivery gave up; recorded in the run history',
        );
        break;
      }
      const delay = Math.min(this.delivery.maxDelayMs, this.delivery.baseDelayMs * 2 ** (attempts - 1));
      await this.record(home, id, { attempts, last_error: attempt.error });
      this.deps.logger.warn(
        { ...logged, attempts, error: attempt.error, retry_in_ms: delay },
        'alert delivery failed; will retry',
      );
      await this.sleep(delay);
    }
    await this.clearPointer(home);
  }

  private async load(
    home: AlertHome,
    id: string,
  ): Promise<{ job: Job; run: RunRecord | undefined; alert: AlertRecord } | undefined> {
    const job = await this.deps.store.getJob(home.job_id);
    if (!job) return undefined;
    if (home.run_id === undefined) {
      const alert = job.alert_state?.outbox?.find((a) => a.id === id);
      return alert ? { job, run: undefined, alert } : undefined;
    }
    const run = await this.deps.store.getRun(home.job_id, home.run_id);
    const alert = run?.alerts?.find((a) => a.id === id);
    return run && alert ? { job, run, alert } : undefined;
  }

  /** Writes an alert's delivery state where it lives. A home that is gone is nothing to write to. */
  private async record(home: AlertHome, id: string, patch: Partial<AlertRecord>): Promise<void> {
    const update = (alerts: AlertRecord[] | undefined) =>
      alerts?.map((a) => (a.id === id ? { ...a, ...patch } : a));
    try {
      if (home.run_id !== undefined) {
        await this.deps.store.updateRun(home.job_id, home.run_id, (run) => ({
          ...run,
          alerts: update(run.alerts) ?? [],
        }));
      } else {
        await this.deps.store.updateJob(home.job_id, (job) =>
          job.alert_state?.outbox === undefined
            ? job
            : { ...job, alert_state: { ...job.alert_state, outbox: update(job.alert_state.outbox) ?? [] } },
        );
      }
    } catch (err) {
      if (!isChronosError(err, 'job_not_found')) throw err;
    }
  }

  /** Once a run holds no pending alert, its job stops pointing at it. */
  private async clearPointer(home: AlertHome): Promise<void> {
    const runId = home.run_id;
    if (runId === undefined) return;
    const run = await this.deps.store.getRun(home.job_id, runId);
    if ((run?.alerts ?? []).some((a) => a.state === 'pending')) return;
    try {
      const job = await this.deps.store.getJob(home.job_id);
      if (!job?.alert_state?.unsent_runs?.includes(runId)) return;
      await this.deps.store.updateJob(home.job_id, (current) => {
        const state = current.alert_state;
        if (!state?.unsent_runs?.includes(runId)) return current;
        const unsent = state.unsent_runs.filter((r) => r !== runId);
        const { unsent_runs: _old, ...rest } = state;
        return { ...current, alert_state: unsent.length > 0 ? { ...rest, unsent_runs: unsent } : rest };
      });
    } catch (err) {
      if (!isChronosError(err, 'job_not_found')) throw err;
    }
  }

  private async post(url: string, alert: AlertRecord, body: string): Promise<Attempt> {
    const request = await loadRequest();
    const controller = new AbortController();
    this.requests.add(controller);
    const timer = this.deps.clock.setTimeout(
      () => controller.abort(new Error(`no reply within ${this.delivery.requestTimeoutMs} ms`)),
      this.delivery.requestTimeoutMs,
    );
    try {
      const headers = {
        'content-type': 'application/json',
        'user-agent': USER_AGENT,
        ...webhookHeaders(this.key, alert.id, Math.floor(this.deps.clock.now() / 1000), body),
      };
      const response = await request(url, {
        method: 'POST',
        headers,
        body,
        signal: controller.signal,
        headersTimeout: this.delivery.requestTimeoutMs,
        bodyTimeout: this.delivery.requestTimeoutMs,
      });
      await response.body.dump();
      const status = response.statusCode;
      if (status >= 200 && status < 300) return { ok: true };
      // A receiver that refuses the request (bad signature, unknown route, gone) refuses it again.
      const retried = status === 408 || status === 425 || status === 429 || status >= 500;
      return { ok: false, error: `HTTP ${status}`, permanent: !retried };
    } catch (err) {
      const reason: unknown = controller.signal.aborted ? controller.signal.reason : err;
      return { ok: false, error: `request failed: ${errorText(reason)}`, permanent: false };
    } finally {
      this.deps.clock.clearTimeout(timer);
      this.requests.delete(controller);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const handle = this.deps.clock.setTimeout(() => {
        this.sleeping.delete(handle);
        resolve();
      }, ms);
      this.sleeping.set(handle, resolve);
    });
  }
}

type RequestFn = typeof import('undici').request;
let requestFn: Promise<RequestFn> | undefined;
/** undici loads with the first alert sent, never on the fire path. */
function loadRequest(): Promise<RequestFn> {
  requestFn ??= import('undici').then(
    // The production bundle exposes a dynamically imported CommonJS package only as `default`.
    (undici) => undici.request ?? (undici as unknown as { default: typeof undici }).default.request,
  );
  return requestFn;
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message || err.name;
  }
  return String(err);
}
