import { randomUUID } from 'node:crypto';
import { type Clock, formatInstant } from '../clock.js';
import { ChronosError } from '../errors.js';
import type { RunAlerts } from '../jobs/alert-hooks.js';
import type { AlertRecord } from '../jobs/alerts.js';
import { armedInstant, jobAfterMissed, misfireAction, pastMisfireGrace } from '../jobs/lifecycle.js';
import type { Job, RunRecord, Trigger } from '../jobs/model.js';
import type { Logger } from '../logger.js';
import type { Owner, Store } from '../store/store.js';
import { type AcceptedFire, claimFire, type FireOutcome, recordOccurrence } from './claim.js';
import { FIRE_LINE_MSG, fireLine } from './fire-line.js';
import type { SchedulerProvider } from './provider.js';

/** A claimed occurrence handed to the runner. */
export interface Occurrence {
  job: Job;
  fire_at: number;
  run_id: string;
  trigger: Trigger;
  attempt: number;
  /**
   * When the claim was handed to the engine (run clock). A run that starts long after it (a stalled
   * process) first makes sure its claim was not taken over meanwhile (docs/architecture.md, "The claim lease").
   */
  claimed_at?: number;
}

export interface RunOutcome {
  run: RunRecord;
  /** When the job's pending retry is due (the caller arms it), or null. */
  retry_at: number | null;
  /**
   * The job as the run's settle stored it (`gone`: removed meanwhile), so the engine arms it without
   * reading it again; undefined when the run did not write the job (or that write failed).
   */
  job: Job | 'gone' | undefined;
}

/** What runs claimed occurrences (src/run/runner.ts, loaded on the first run). */
export interface Runner {
  run(occ: Occurrence): Promise<RunOutcome>;
}

/** What is in flight (src/scheduler/activity.ts): a run holds off idle exit while it lasts. */
export interface RunActivity {
  begin(kind: 'run'): () => void;
}

export interface EngineDeps {
  store: Store;
  clock: Clock;
  logger: Logger;
  activity: RunActivity;
  owner: Owner;
  /** The runner is created lazily (it loads run targets); the first accepted fire awaits it. */
  runner: () => Promise<Runner>;
  /** The provider currently in charge (it can change: chronos falls back to builtin on invalid_client). */
  provider: () => SchedulerProvider;
  /** Alerts (loaded lazily): a missed occurrence raises `missed`. */
  alerts?: () => Promise<RunAlerts | undefined>;
}

/**
 * The one path every trigger feeds (docs/architecture.md, The path of a fire):
 * claimed occurrence → arm the next instant → run → arm whatever the run left (a retry, or nothing).
 */
export class Engine {
  constructor(private readonly deps: EngineDeps) {}

  /**
   * Called after the claim is durable (and, for NAS fires, after the 202 is sent). `startAfter`: the run
   * starts once it resolves, not before (a builtin claim made ahead of its instant waits for the instant).
   */
  onAccepted(fire: AcceptedFire, startAfter?: Promise<void>): Promise<void> {
    const { activity, logger } = this.deps;
    const end = activity.begin('run');
    const claimedAt = this.deps.clock.now();
    return (async () => {
      let outcome: RunOutcome | undefined;
      let after: Job | undefined;
      try {
        // Armed before the run: a process killed mid-run still leaves the schedule armed.
        await this.armSafely(fire.job);
        const runner = await this.deps.runner();
        if (startAfter) await startAfter;
        outcome = await runner.run({
          job: fire.job,
          fire_at: fire.fire_at,
          run_id: fire.run_id,
          trigger: fire.trigger,
          attempt: fire.attempt,
          claimed_at: claimedAt,
        });
        after =
          outcome.job === 'gone' ? undefined : (outcome.job ?? (await this.deps.store.getJob(fire.job.id)));
        if (after) await this.armSafely(after);
        else await this.deps.provider().disarm(fire.job.id);
        // Reconcile (and the misfire rule) also runs after each fire: a warm process is the only one that can.
        this.deps.provider().onJobsChanged();
      } catch (err) {
        logger.error({ err, job_id: fire.job.id, run_id: fire.run_id }, 'after-fire work failed');
      } finally {
        const line = fireLine({
          ...fire,
          job_id: fire.job.id,
          run: outcome?.run,
          after,
          nextArmed: after !== undefined && this.deps.provider().isArmed(fire.job.id),
        });
        logger[line.level](line.fields, FIRE_LINE_MSG);
        end();
      }
    })();
  }

  /**
   * Claim and run an occurrence found by this process (builtin timer, misfire catch-up). With `startAfter`
   * the claim is written now and the run starts once it resolves: the builtin timer claims a short lead
   * before the instant (docs/architecture.md, "Claimed ahead of the instant").
   */
  async fireLocal(
    jobId: string,
    fireAt: number,
    trigger: Trigger,
    startAfter?: Promise<void>,
  ): Promise<FireOutcome> {
    const outcome = await claimFire(this.deps.store, {
      job_id: jobId,
      fire_at: fireAt,
      trigger,
      now: this.deps.clock.now(),
      owner: this.deps.owner,
      logger: this.deps.logger,
    });
    if (outcome.kind === 'accepted') {
      this.deps.logger.debug(
        { job_id: jobId, fire_at: formatInstant(fireAt), run_id: outcome.accepted.run_id, trigger },
        'occurrence claimed',
      );
      void this.onAccepted(outcome.accepted, startAfter);
    }
    return outcome;
  }

  /**
   * `POST /api/jobs/:id/run`: run now as a `manual` run without consuming or moving the armed occurrence.
   * It still takes a ledger row (keyed by the request instant) so it is recorded like every other run.
   * It respects the job's concurrency policy: with `forbid`, a run already claimed and not finished (any
   * trigger, any live process) refuses it with `run_in_progress`, decided under the job's lock, so a
   * target that calls its own run-now cannot chain runs forever. `allow` and `replace` start it anyway
   * (beside the running one, or aborting it), as for a scheduled occurrence.
   */
  async runManual(jobId: string): Promise<AcceptedFire | null> {
    const outcome = await claimFire(this.deps.store, {
      job_id: jobId,
      fire_at: undefined,
      trigger: 'manual',
      now: this.deps.clock.now(),
      owner: this.deps.owner,
      logger: this.deps.logger,
    });
    if (outcome.kind === 'busy') {
      const running = outcome.running;
      throw new ChronosError(
        'run_in_progress',
        `job "${jobId}" is running (run ${running.run_id}) and its concurrency is "forbid"; ` +
          'wait for that run to end, or set concurrency to "allow" or "replace"',
        { job_id: jobId, running_run_id: running.run_id },
      );
    }
    if (outcome.kind !== 'accepted') return null;
    const accepted: AcceptedFire = { ...outcome.accepted, recovered: false };
    void this.onAccepted(accepted);
    return accepted;
  }

  /**
   * Missed occurrences (docs/jobs.md, Misfire): an armed instant overdue by more than the job's grace, with no live claim,
   * was never delivered. `run_once` claims and runs it now (the claim moves next_run_at past now: never a
   * burst); `skip` and every one-shot record it `missed`. Returns how many occurrences were handled.
   */
  async applyMisfires(jobs: Job[]): Promise<number> {
    const now = this.deps.clock.now();
    let handled = 0;
    for (const job of jobs) {
      // One job's problem (unreadable file, a schedule that no longer parses, a RangeError from a value
      // nobody expected) must not stop the others.
      try {
        const instant = armedInstant(job);
        if (instant === null || !pastMisfireGrace(job, instant, now)) continue;
        // A claim of this instant that is still live (a delivery being run) makes both answers below a
        // `duplicate`: the claim's decision and the missed row's never replace a row.
        if (misfireAction(job) === 'run') {
          const outcome = await this.fireLocal(job.id, instant, 'misfire');
          if (outcome.kind === 'accepted') handled += 1;
        } else if (await this.recordMissed(job.id, instant, now)) {
          handled += 1;
        }
      } catch (err) {
        this.deps.logger.error({ err, job_id: job.id }, 'misfire handling failed');
      }
    }
    return handled;
  }

  private async recordMissed(jobId: string, instant: number, now: number): Promise<boolean> {
    const runId = randomUUID();
    const run: RunRecord = {
      run_id: runId,
      job_id: jobId,
      fire_at: instant,
      trigger: 'misfire',
      status: 'missed',
      attempt: 1,
      started_at: now,
      finished_at: now,
      output: null,
      error: 'occurrence was not delivered within the misfire grace period',
    };
    const alerts = await this.deps.alerts?.();
    let raised: AlertRecord[] = [];
    const result = await recordOccurrence(
      this.deps.store,
      {
        job_id: jobId,
        fire_at: instant,
        status: 'missed',
        trigger: 'misfire',
        run_id: runId,
        owner: this.deps.owner,
        claimed_at: now,
        expires_at: now,
      },
      (fresh) => {
        const next = jobAfterMissed(fresh, instant, now);
        if (next === null) return { refuse: 'no longer the current occurrence' };
        if (!alerts) return next;
        // The job points at the run's pending alerts in this write; the run record (with them) follows.
        raised = alerts.raise(next, run, 'missed', now);
        return alerts.settle(next, { ...run, alerts: raised }, 'missed', now);
      },
    );
    const recorded = result.outcome === 'recorded';
    if (!recorded) return false;
    if (raised.length > 0) run.alerts = raised;
    await this.deps.store.appendRun(run);
    if (run.alerts) alerts?.dispatch(jobId, runId, run.alerts);
    this.deps.logger.warn({ job_id: jobId, fire_at: formatInstant(instant) }, 'occurrence missed');
    return true;
  }

  private async armSafely(job: Job): Promise<void> {
    try {
      await this.deps.provider().arm(job);
    } catch (err) {
      // The provider keeps retrying failed arms while awake; this is only the log line.
      this.deps.logger.warn({ err, job_id: job.id }, 'arming the next occurrence failed; will retry');
    }
  }
}
