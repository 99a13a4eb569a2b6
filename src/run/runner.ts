// src/run/ owns executing a claimed occurrence: the runner (concurrency, timeouts, local retries, run
// records, boot recovery) and the targets (http, command, handler). Settling is src/occurrence/settle.ts.
import { type Clock, formatInstant } from '../clock.js';
import { errorMessage, isChronosError } from '../errors.js';
import type { RunAlertKind, RunAlerts } from '../jobs/alert-hooks.js';
import { runTimeoutMs } from '../jobs/jobs.js';
import { jobAfterRun, type RunVerdict } from '../jobs/lifecycle.js';
import type { Job, RunRecord, RunStatus } from '../jobs/model.js';
import type { Logger } from '../logger.js';
import { keepClaimForStart } from '../occurrence/claim.js';
import { claimStartsRun } from '../occurrence/decide.js';
import type { Occurrence, RunOutcome } from '../occurrence/engine.js';
import { settleClaimed, settleInterrupted, settleRun } from '../occurrence/settle.js';
import { CLAIM_LEASE_MS } from '../store/lease.js';
import { isOwnerAlive } from '../store/owner.js';
import type { LedgerEntry, LedgerStatus, Owner, Store } from '../store/store.js';
import { boundText, DEFAULT_OUTPUT_LIMIT_BYTES } from './output.js';
import type { HandlerRegistry } from './targets/handler.js';
import type { TargetResult } from './targets/types.js';

export type { Occurrence, RunOutcome } from '../occurrence/engine.js';

export interface RunnerDeps {
  store: Store;
  clock: Clock;
  logger: Logger;
  handlers: HandlerRegistry;
  allowCommands: boolean;
  /** Bound of a run's stored output excerpt (default 8192). */
  outputLimitBytes?: number;
  /** Alerts raised at a run's end, written with the run record (src/alerts/). */
  alerts?: RunAlerts;
  /** CHRONOS_TARGET_SIGNING_SECRET: http targets are signed with it (Standard Webhooks). */
  targetSigningSecret?: string;
}

export const INTERRUPTED_ERROR = 'process ended before the run finished';
export const COMMANDS_REFUSED_ERROR =
  'command targets are disabled: set CHRONOS_ALLOW_COMMANDS=true or declare the job in the jobs file';
export const JOB_REMOVED_ERROR = 'job was removed before the run started';
export const CLAIM_TAKEN_ERROR =
  'claim taken over by another process after its lease expired, before this run started';
/**
 * A run that starts this long after its claim (a process stalled between the two) first checks, under the
 * job's lock, that the claim is still its own and renews its lease: past CLAIM_LEASE_MS another replica may
 * have taken it over and run the occurrence. Half the lease leaves room for clocks that disagree.
 */
export const CLAIM_CHECK_AFTER_MS = CLAIM_LEASE_MS / 2;
const ERROR_LIMIT_BYTES = 2048;
/**
 * A target that could not start for a reason inside Chronos (EMFILE, ENFILE, ENOMEM, EAGAIN) is started
 * again after 250 ms, 500 ms, 1 s… (at most 5 s apart) for as long as the run's own timeout allows.
 */
export const LOCAL_RETRY_BASE_MS = 250;
export const LOCAL_RETRY_MAX_MS = 5_000;
export const LOCAL_RETRY_MSG = 'run could not start for a reason inside Chronos; retrying';
/**
 * A run's end (its record, then its settle) that the store refuses as unavailable (the database
 * restarting or unreachable) is written again after 250 ms, 500 ms, 1 s… (at most 5 s apart) for up to
 * five minutes. The run counts as in progress meanwhile: its claim lease is renewed, idle exit waits, and
 * no other replica takes it for an orphan. Past that, or when shutdown aborts it, the run shows
 * `interrupted` later, as if its process had died.
 */
export const END_WRITE_RETRY_BASE_MS = 250;
export const END_WRITE_RETRY_MAX_MS = 5_000;
export const END_WRITE_RETRY_FOR_MS = 5 * 60_000;
export const END_WRITE_RETRY_MSG = 'recording the end of a run failed: the store is unavailable; retrying';

interface ActiveRun {
  run_id: string;
  job_id: string;
  controller: AbortController;
  /** Set when a newer run of the same job aborted this one (concurrency: replace). */
  replacedBy?: string;
  /** Settles once the run is fully recorded. */
  done: Promise<unknown>;
  /** Its target has returned: only its recording is left (retried while the store is down). */
  targetDone?: boolean;
}

type TargetModule = typeof import('./targets/index.js');
let targetModule: Promise<TargetModule> | undefined;
/** Targets (and undici behind them) load on the first run, not when the fire path is imported. */
function loadTargets(): Promise<TargetModule> {
  targetModule ??= import('./targets/index.js');
  return targetModule;
}

/** The ledger status that goes with a run recorded to its end. */
function ledgerStatusOf(status: RunStatus): LedgerStatus {
  if (status === 'interrupted' || status === 'skipped' || status === 'missed') return status;
  return 'finished';
}

/**
 * Executes claimed occurrences and records them. One path for every trigger (nas, builtin, manual,
 * misfire, retry): the caller has already claimed the occurrence (ledger row `claimed`, next_run_at
 * advanced), so a crash from here on leaves a claimed row that boot recovery marks interrupted
 * instead of running the occurrence again.
 *
 * No store lock is held while a target executes: the run's own bookkeeping (updateRun, the job
 * summary) takes the store's per-operation locks only when it writes: a run holding a lock its own bookkeeping needs would deadlock on it.
 */
export class JobRunner {
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly handlers: HandlerRegistry;
  private readonly allowCommands: boolean;
  private readonly outputLimitBytes: number;
  private readonly alerts: RunAlerts | undefined;
  private readonly targetSigningSecret: string | undefined;
  /** Set by abortAll: the process is stopping, and runs that start now are aborted at once. */
  private closing: string | undefined;
  /** Runs whose target is executing (or about to), by run id, for the concurrency policy and abortAll. */
  private readonly executing = new Map<string, ActiveRun>();
  private inProgress = 0;
  private readonly idleListeners = new Set<() => void>();
  private idleWaiters: Array<() => void> = [];

  constructor(deps: RunnerDeps) {
    this.store = deps.store;
    this.clock = deps.clock;
    this.logger = deps.logger;
    this.handlers = deps.handlers;
    this.allowCommands = deps.allowCommands;
    this.outputLimitBytes = deps.outputLimitBytes ?? DEFAULT_OUTPUT_LIMIT_BYTES;
    this.alerts = deps.alerts;
    this.targetSigningSecret = deps.targetSigningSecret;
  }

  /** Calls to run() not yet returned, bookkeeping included. */
  get active(): number {
    return this.inProgress;
  }

  whenIdle(): Promise<void> {
    if (this.inProgress === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  onIdleChange(listener: () => void): () => void {
    this.idleListeners.add(listener);
    return () => this.idleListeners.delete(listener);
  }

  /**
   * Aborts every executing run, and every run started from now on (a fire still arming its next
   * occurrence when the grace period ended); each is recorded `failed` with `aborted: <reason>`.
   */
  abortAll(reason: string): void {
    this.closing = reason;
    for (const active of this.executing.values()) {
      if (!active.controller.signal.aborted) active.controller.abort(reason);
    }
  }

  async run(occ: Occurrence): Promise<RunOutcome> {
    this.changeActive(+1);
    try {
      return await this.runGuarded(occ);
    } catch (err) {
      // Every step below already catches store failures; this is the last line for a bug.
      this.logger.error({ err, job_id: occ.job.id, run_id: occ.run_id }, 'run bookkeeping failed');
      const now = this.clock.now();
      return {
        run: this.blankRun(occ, 'failed', now, now, `internal error: ${errorMessage(err)}`),
        retry_at: null,
        job: undefined,
      };
    } finally {
      this.changeActive(-1);
    }
  }

  private async runGuarded(occ: Occurrence): Promise<RunOutcome> {
    const { job } = occ;
    // Everything up to the registration below is synchronous, so two runs of one job that arrive
    // together cannot both see "nothing running".
    const others = [...this.executing.values()].filter((a) => a.job_id === job.id);
    // A run whose target has returned is not running, even while its end waits for the store to come back
    // (this occurrence's claim shows the store is back): this run goes after that write, not skipped.
    const running = others.find((a) => !a.targetDone);
    if (running && job.concurrency === 'forbid') return this.recordSkipped(occ, running.run_id);

    const controller = new AbortController();
    if (this.closing !== undefined) controller.abort(this.closing);
    let markDone: () => void = () => {};
    const active: ActiveRun = {
      run_id: occ.run_id,
      job_id: job.id,
      controller,
      done: new Promise<void>((resolve) => {
        markDone = resolve;
      }),
    };
    this.executing.set(occ.run_id, active);
    try {
      if (job.concurrency === 'replace' && others.length > 0) {
        for (const other of others) {
          other.replacedBy ??= occ.run_id;
          if (!other.controller.signal.aborted) other.controller.abort(`replaced by run ${occ.run_id}`);
        }
        // Let them finish recording first, so the job summary ends with this run's outcome.
        await Promise.all(others.map((o) => o.done));
      }
      // forbid: the others only have their end left to write; it goes first, for the same reason.
      if (job.concurrency === 'forbid') await Promise.all(others.map((o) => o.done));
      return await this.execute(occ, active);
    } finally {
      this.executing.delete(occ.run_id);
      markDone();
    }
  }

  private async execute(occ: Occurrence, active: ActiveRun): Promise<RunOutcome> {
    const { job } = occ;
    const started = this.clock.now();
    const logFields = {
      job_id: job.id,
      fire_at: formatInstant(occ.fire_at),
      run_id: occ.run_id,
      trigger: occ.trigger,
      attempt: occ.attempt,
    };
    if (occ.claimed_at !== undefined && started - occ.claimed_at >= CLAIM_CHECK_AFTER_MS) {
      const kept = await this.keepClaim(occ, started, logFields);
      if (kept !== 'ours') {
        const error =
          kept === 'gone'
            ? JOB_REMOVED_ERROR
            : kept === 'taken'
              ? CLAIM_TAKEN_ERROR
              : 'claim too old to run without confirming it, and the store could not confirm it';
        return {
          run: this.blankRun(occ, 'skipped', started, started, error),
          retry_at: null,
          job: kept === 'gone' ? 'gone' : undefined,
        };
      }
    }
    const running = this.blankRun(occ, 'running', started, null, null);
    let appended = false;
    const startRecord = this.store.appendRun(running).then(
      () => {
        appended = true;
        return undefined;
      },
      (err: unknown) => err,
    );
    // The run record is what tells a later delivery that the run started (it is then never run again),
    // so it must be durable before the target executes, unless the claim itself already says so: a
    // local trigger's claim does (claimStartsRun), and its record is written while the target runs.
    const claimIsStart = claimStartsRun(occ.trigger);
    if (!claimIsStart) {
      const err = await startRecord;
      if (isChronosError(err, 'job_not_found')) {
        // Removed between its claim and now: the user no longer wants its side effect.
        this.logger.debug(logFields, 'run not started: its job no longer exists');
        return {
          run: { ...running, status: 'skipped', finished_at: started, error: JOB_REMOVED_ERROR },
          retry_at: null,
          job: 'gone',
        };
      }
      // Run anyway: the occurrence is claimed and losing it silently is worse than a gap in history.
      if (err !== undefined) this.logger.error({ ...logFields, err }, 'record run start failed');
    }
    // Run steps are details: the fire's one info line carries the outcome (src/occurrence/fire-line.ts).
    this.logger.debug(logFields, 'run started');

    const { result, retryable } = await this.executeTarget(occ, active);
    active.targetDone = true;
    if (claimIsStart) {
      // Its job was there when the claim was written a moment before the start; removed since, the
      // writes below find it gone and say so.
      const err = await startRecord;
      if (err !== undefined && !isChronosError(err, 'job_not_found'))
        this.logger.error({ ...logFields, err }, 'record run start failed');
    }
    const finished = this.clock.now();
    const status: RunStatus = result.ok ? 'succeeded' : result.timedOut ? 'timed_out' : 'failed';
    // A run that completed just as a newer one arrived keeps its own outcome.
    const replacedBy = result.ok ? undefined : active.replacedBy;
    const error = replacedBy
      ? `replaced by run ${replacedBy}`
      : result.error === null
        ? null
        : boundText(result.error, ERROR_LIMIT_BYTES);
    const run: RunRecord = {
      ...running,
      status,
      finished_at: finished,
      // Targets bound their own output (their truncation marker may add a few bytes); this is a backstop.
      output: result.output === null ? null : boundText(result.output, this.outputLimitBytes + 256),
      error,
    };
    const countsAsFailure = !result.ok && !replacedBy;
    const verdict: RunVerdict = { failed: countsAsFailure, retryable, attempt: occ.attempt };
    // Decided before the run is written, so its alerts go in the same write as its outcome.
    const alertKind = this.alertKindOf(run, job, verdict);
    if (this.alerts) {
      const alerts = this.alerts.raise(jobAfterRun(job, run, verdict), run, alertKind, finished);
      if (alerts.length > 0) run.alerts = alerts;
    }

    const signal = active.controller.signal;
    const endBy = finished + END_WRITE_RETRY_FOR_MS;
    if (appended) {
      await this.attemptUntilStored('record run end', logFields, signal, endBy, () =>
        this.store.updateRun(job.id, occ.run_id, () => run),
      );
    } else {
      // The start could not be written; one more try to leave the outcome in history.
      await this.attemptUntilStored('record run', logFields, signal, endBy, () => this.store.appendRun(run));
    }

    // Ledger settle and job summary in one durable write: a crash cannot leave one without the other.
    const summary = await this.attemptUntilStored('update job after run', logFields, signal, endBy, () =>
      settleRun(
        this.store,
        job.id,
        occ.fire_at,
        run,
        verdict,
        this.alerts ? (next) => this.alerts!.settle(next, run, alertKind, finished) : undefined,
      ),
    );
    // Off the run's path: delivery is never awaited, and its failures are only logged and recorded.
    if (run.alerts && summary !== 'gone') this.alerts?.dispatch(job.id, run.run_id, run.alerts);

    const retry_at = summary === undefined || summary === 'gone' ? null : summary.retry_at;
    const fields = { ...logFields, status, duration_ms: finished - started, error: run.error ?? undefined };
    if (summary === 'gone') {
      this.logger.debug(fields, 'run finished; its job no longer exists');
    } else {
      this.logger.debug(
        { ...fields, retry_at: retry_at === null ? undefined : formatInstant(retry_at) },
        'run finished',
      );
    }
    return { run, retry_at, job: summary };
  }

  private async executeTarget(
    occ: Occurrence,
    active: ActiveRun,
  ): Promise<{ result: TargetResult; retryable: boolean }> {
    const { job } = occ;
    const { target } = job;
    if (target.type === 'command' && !this.allowCommands && job.source !== 'file') {
      // Configuration, not the job, is at fault: a retry could not succeed.
      return {
        result: { ok: false, output: null, error: COMMANDS_REFUSED_ERROR, timedOut: false },
        retryable: false,
      };
    }
    const deadline = this.clock.now() + runTimeoutMs(job);
    const fields = { job_id: job.id, fire_at: formatInstant(occ.fire_at), run_id: occ.run_id };
    for (let local = 1; ; local++) {
      const outcome = await this.executeOnce(occ, active, Math.max(1, deadline - this.clock.now()));
      const code = outcome.result.internal;
      if (code === undefined) {
        if (local > 1)
          this.logger.info({ ...fields, local_attempts: local }, 'run started after local retries');
        return outcome;
      }
      // Descriptors or memory ran out in this process: the job did nothing wrong, and the occurrence is
      // already claimed, so giving up now would lose it. Start it again while its timeout allows.
      const delay = Math.min(LOCAL_RETRY_MAX_MS, LOCAL_RETRY_BASE_MS * 2 ** (local - 1));
      const signal = active.controller.signal;
      if (signal.aborted || this.clock.now() + delay >= deadline) {
        this.logger.error(
          { ...fields, code, local_attempts: local },
          'run could not start inside Chronos; giving up',
        );
        const error = `${outcome.result.error ?? code} (inside Chronos: ${local} local attempts within the run timeout)`;
        return { result: { ...outcome.result, error }, retryable: true };
      }
      this.logger.warn({ ...fields, code, local_attempt: local, retry_in_ms: delay }, LOCAL_RETRY_MSG);
      await this.pause(delay, signal);
    }
  }

  /** Waits `ms` on the run clock; an abort (replace, shutdown) ends the wait at once. */
  private pause(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const onAbort = () => {
        this.clock.clearTimeout(timer);
        resolve();
      };
      const timer = this.clock.setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private async executeOnce(
    occ: Occurrence,
    active: ActiveRun,
    timeoutMs: number,
  ): Promise<{ result: TargetResult; retryable: boolean }> {
    const { job } = occ;
    const { target } = job;
    try {
      const { executeTarget } = await loadTargets();
      const result = await executeTarget(
        target,
        {
          job,
          fire_at: occ.fire_at,
          run_id: occ.run_id,
          attempt: occ.attempt,
          signal: active.controller.signal,
          timeoutMs,
          outputLimitBytes: this.outputLimitBytes,
          clock: this.clock,
        },
        {
          handlers: this.handlers,
          ...(this.targetSigningSecret ? { signingSecret: this.targetSigningSecret } : {}),
        },
      );
      return { result, retryable: true };
    } catch (err) {
      // Targets report failures as results; a throw here is a defect, still recorded as the run's failure.
      this.logger.error({ err, job_id: job.id, run_id: occ.run_id }, 'target threw');
      const message = errorMessage(err);
      return {
        result: { ok: false, output: null, error: `internal error: ${message}`, timedOut: false },
        retryable: true,
      };
    }
  }

  /**
   * See CLAIM_CHECK_AFTER_MS. Nothing is recorded when the claim is no longer ours: the process that took
   * it over records the occurrence. A claim that cannot be checked is not run either: a started run is
   * never run twice, and its row is left to recovery (`interrupted`) or to NAS's next delivery.
   */
  private async keepClaim(
    occ: Occurrence,
    now: number,
    fields: object,
  ): Promise<'ours' | 'taken' | 'gone' | 'unknown'> {
    const stalledMs = now - (occ.claimed_at ?? now);
    try {
      const kept = await keepClaimForStart(
        this.store,
        occ.job.id,
        occ.fire_at,
        occ.run_id,
        now + CLAIM_LEASE_MS,
      );
      if (kept === 'taken')
        this.logger.warn(
          { ...fields, stalled_ms: stalledMs },
          'run not started: its claim was taken over by another process after its lease expired',
        );
      else if (kept === 'gone') this.logger.debug(fields, 'run not started: its job no longer exists');
      return kept;
    } catch (err) {
      this.logger.error(
        { ...fields, err, stalled_ms: stalledMs },
        'run not started: its claim is old and could not be confirmed as still ours',
      );
      return 'unknown';
    }
  }

  /** How a run ended, as alerts see it: a failure is final once no retry will follow. */
  private alertKindOf(run: RunRecord, job: Job, verdict: RunVerdict): RunAlertKind {
    if (run.status === 'succeeded') return 'success';
    if (!verdict.failed) return 'other';
    return jobAfterRun(job, run, verdict).retry_at === null ? 'final_failure' : 'retrying';
  }

  private async recordSkipped(occ: Occurrence, runningId: string): Promise<RunOutcome> {
    const now = this.clock.now();
    const run = this.blankRun(occ, 'skipped', now, now, `previous run ${runningId} is still running`);
    const logFields = {
      job_id: occ.job.id,
      fire_at: formatInstant(occ.fire_at),
      run_id: occ.run_id,
      trigger: occ.trigger,
    };
    await this.attempt('record skipped run', logFields, () => this.store.appendRun(run));
    await this.attempt('settle skipped occurrence', logFields, () =>
      settleClaimed(this.store, occ.job.id, occ.fire_at, 'skipped'),
    );
    this.logger.debug({ ...logFields, status: 'skipped', running_run_id: runningId }, 'run skipped');
    // The job was not touched: the engine reads it again to arm whatever is current.
    return { run, retry_at: null, job: undefined };
  }

  /**
   * Boot recovery: `claimed` rows whose owner is gone (or whose TTL passed) belong to runs that
   * ended with their process. They are recorded `interrupted` and never re-run or retried: the
   * occurrence was already counted, and running a one-shot twice is worse than missing it.
   */
  async recoverInterrupted(isAlive: (o: Owner) => boolean = isOwnerAlive): Promise<RunRecord[]> {
    const claimed = await this.store.listClaimed();
    const now = this.clock.now();
    const recovered: RunRecord[] = [];
    for (const row of claimed) {
      if (this.executing.has(row.run_id)) continue; // ours, still going: a long run past its TTL is not dead
      // One row that throws (a damaged history, a field of the wrong type) must not stop the others.
      try {
        if (row.expires_at > now && isAlive(row.owner)) continue;
        const run = await this.recoverRow(row, now);
        if (run) recovered.push(run);
      } catch (err) {
        this.logger.error(
          { err, job_id: row.job_id, run_id: row.run_id },
          'recovering an interrupted run failed',
        );
      }
    }
    return recovered;
  }

  private async recoverRow(row: LedgerEntry, now: number): Promise<RunRecord | undefined> {
    const fields = {
      job_id: row.job_id,
      fire_at: formatInstant(row.fire_at),
      run_id: row.run_id,
      trigger: row.trigger,
    };
    const existing = await this.attempt('read interrupted run', fields, () =>
      this.store.getRun(row.job_id, row.run_id),
    );
    if (existing && existing.status === 'interrupted') {
      // A previous recovery recorded the run and died before settling the row: finish that recovery.
      // (Settling it `finished`, as a completed run would be, misreported 2 of 241 interrupted runs.)
      await this.settleInterrupted(row, existing, fields);
      if (existing.alerts) this.alerts?.dispatch(row.job_id, row.run_id, existing.alerts);
      return existing;
    }
    if (existing && existing.status !== 'running') {
      // The run was recorded to its end; only the ledger settle was lost.
      await this.attempt('settle recovered occurrence', fields, () =>
        settleClaimed(this.store, row.job_id, row.fire_at, ledgerStatusOf(existing.status), row.run_id),
      );
      // Its alerts were written with it; the process that wrote them died before sending them.
      if (existing.alerts) this.alerts?.dispatch(row.job_id, row.run_id, existing.alerts);
      return undefined;
    }
    const run: RunRecord = existing
      ? { ...existing, status: 'interrupted', finished_at: now, error: INTERRUPTED_ERROR }
      : {
          run_id: row.run_id,
          job_id: row.job_id,
          fire_at: row.fire_at,
          trigger: row.trigger,
          status: 'interrupted',
          // The ledger does not carry the attempt; the claim instant is the closest known start.
          attempt: 1,
          started_at: row.claimed_at,
          finished_at: now,
          output: null,
          error: INTERRUPTED_ERROR,
        };
    if (this.alerts) {
      const job = await this.attempt('read job of interrupted run', fields, () =>
        this.store.getJob(row.job_id),
      );
      const alerts = job ? this.alerts.raise(job, run, 'missed', now) : [];
      if (alerts.length > 0) run.alerts = alerts;
    }
    const written = await this.attempt('record interrupted run', fields, async () => {
      if (existing) await this.store.updateRun(row.job_id, row.run_id, () => run);
      else await this.store.appendRun(run);
      return true;
    });
    // Left `claimed`, the row is looked at again on the next boot, which finishes the recovery above.
    if (!written) return undefined;
    await this.settleInterrupted(row, run, fields);
    if (run.alerts) this.alerts?.dispatch(row.job_id, row.run_id, run.alerts);
    return run;
  }

  /** Settles the row `interrupted` and puts the run in the job's summary (left `claimed` if that fails). */
  private async settleInterrupted(row: LedgerEntry, run: RunRecord, fields: object): Promise<void> {
    await this.attempt('settle interrupted occurrence', fields, () =>
      settleInterrupted(
        this.store,
        row,
        run,
        this.alerts ? (next) => this.alerts!.settle(next, run, 'missed', this.clock.now()) : undefined,
      ),
    );
    this.logger.warn({ ...fields, status: 'interrupted' }, 'run interrupted by the end of its process');
  }

  /**
   * Runs one store step; a failure is logged and yields undefined so the run carries on (the target
   * result matters more than any one bookkeeping write). A deleted job is expected, not an error.
   */
  private async attempt<T>(what: string, fields: object, step: () => Promise<T>): Promise<T | undefined> {
    try {
      return await step();
    } catch (err) {
      if (isChronosError(err, 'job_not_found')) {
        this.logger.info({ ...fields }, `${what}: job no longer exists`);
      } else {
        this.logger.error({ ...fields, err }, `${what} failed`);
      }
      return undefined;
    }
  }

  /**
   * `attempt`, written again with backoff while the store answers `store_unavailable`, until `endBy` (run
   * clock) or until `signal` aborts (shutdown's grace period is over): see END_WRITE_RETRY_FOR_MS.
   */
  private async attemptUntilStored<T>(
    what: string,
    fields: object,
    signal: AbortSignal,
    endBy: number,
    step: () => Promise<T>,
  ): Promise<T | undefined> {
    for (let tries = 1; ; tries++) {
      try {
        const result = await step();
        if (tries > 1) this.logger.info({ ...fields, tries }, `${what}: written once the store was back`);
        return result;
      } catch (err) {
        // Anything else (the job removed meanwhile, a damaged record) is what a retry cannot change.
        if (!isChronosError(err, 'store_unavailable'))
          return this.attempt(what, fields, () => Promise.reject(err));
        const delay = Math.min(END_WRITE_RETRY_MAX_MS, END_WRITE_RETRY_BASE_MS * 2 ** (tries - 1));
        if (signal.aborted || this.clock.now() + delay > endBy) {
          this.logger.error(
            { ...fields, err, tries },
            `${what} failed; gave up retrying (the run will show interrupted)`,
          );
          return undefined;
        }
        if (tries === 1) this.logger.warn({ ...fields, err, what, retry_in_ms: delay }, END_WRITE_RETRY_MSG);
        await this.pause(delay, signal);
      }
    }
  }

  private blankRun(
    occ: Occurrence,
    status: RunStatus,
    started: number,
    finished: number | null,
    error: string | null,
  ): RunRecord {
    return {
      run_id: occ.run_id,
      job_id: occ.job.id,
      fire_at: occ.fire_at,
      trigger: occ.trigger,
      status,
      attempt: occ.attempt,
      started_at: started,
      finished_at: finished,
      output: null,
      error,
    };
  }

  private changeActive(delta: number): void {
    this.inProgress += delta;
    for (const listener of this.idleListeners) {
      try {
        listener();
      } catch (err) {
        this.logger.error({ err }, 'idle listener threw');
      }
    }
    if (this.inProgress === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }
}
