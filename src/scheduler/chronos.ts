import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../clock.js';
import { isChronosError } from '../errors.js';
import { armedInstant } from '../jobs/jobs.js';
import type { Job } from '../jobs/model.js';
import { isNasError, type NasClient } from '../nas/nas.js';
import { computeBackoff, MAX_RETRY_AFTER_MS } from '../nas/retry.js';
import type { Store } from '../store/store.js';
import type { Activity } from './activity.js';
import { SingleFlight } from './debounce.js';
import type { Engine } from './engine.js';
import type { ProviderStatus, ReconcileSummary, SchedulerProvider } from './provider.js';

export interface ChronosProviderDeps {
  store: Store;
  clock: Clock;
  logger: Logger;
  engine: Engine;
  activity: Activity;
  /** The NAS client loads lazily (undici is the largest import; it must stay off the cold path). */
  nas: () => Promise<NasClient>;
  /** Without any network call: why the provider cannot work, or null. */
  unavailableReason: () => string | null;
  /** NAS rejected the agent's identity: hand the trigger to the builtin provider. Called once. */
  onInvalidClient: (reason: string) => void;
  concurrency?: number;
  debounceMs?: number;
  /** Backoff between reconcile rounds while some arm keeps failing. */
  healBackoff?: { base: number; max: number };
  random?: () => number;
}

/**
 * NAS-mediated trigger. `start()` reconciles and returns: no timer of any kind is left behind, except the
 * backoff timer that re-tries failed arms while the process is awake (lesson 12: never sleep unarmed).
 * `armed` is what NAS holds as far as we know: seeded by NAS `list` at start, then kept by our own calls.
 */
export class ChronosProvider implements SchedulerProvider {
  readonly name = 'chronos' as const;
  private readonly armed = new Map<string, number>();
  private readonly desired = new Map<string, number>();
  private readonly failed = new Set<string>();
  /** Bumped by every arm/disarm decision, so a reconcile can tell which jobs changed after its list. */
  private readonly versions = new Map<string, number>();
  private readonly perJob = new Map<string, Promise<boolean>>();
  private reconcileFailed = false;
  private listed = false;
  private disabled = false;
  private stopped = false;
  private nasReachable: boolean | null = null;
  private lastReconcile: ReconcileSummary | null = null;
  private lastArmAt: number | null = null;
  private healTimer: TimerHandle | undefined;
  private healAttempt = 0;
  /** The longest Retry-After NAS sent since the last heal was scheduled. */
  private retryAfterMs: number | undefined;
  private readonly reconciler: SingleFlight;

  constructor(private readonly deps: ChronosProviderDeps) {
    // Tracked as activity so that idle exit re-checks when a reconcile ends, even one that made no call.
    this.reconciler = new SingleFlight(deps.clock, deps.debounceMs ?? 50, async () => {
      await deps.activity.track('arming', () => this.reconcile());
    });
  }

  isAvailable(): { ok: true } | { ok: false; reason: string } {
    const reason = this.deps.unavailableReason();
    return reason === null ? { ok: true } : { ok: false, reason };
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.reconciler.runNow();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.reconciler.cancel();
    this.clearHeal();
  }

  onJobsChanged(): void {
    if (!this.stopped && !this.disabled) this.reconciler.request();
  }

  async reconcile(): Promise<ReconcileSummary> {
    const started = this.deps.clock.now();
    try {
      const result = await this.reconcileOnce(started);
      this.reconcileFailed = false;
      return result;
    } catch (err) {
      // The store could not be read: nothing is known to be armed, so the process must not sleep.
      this.reconcileFailed = true;
      this.deps.logger.error({ err }, 'reconcile failed; will retry');
      this.scheduleHeal();
      return this.finish({ armed: 0, cancelled: 0, unchanged: 0, failed: 1, misfires: 0 }, started);
    }
  }

  private async reconcileOnce(started: number): Promise<ReconcileSummary> {
    const { logger, store, engine } = this.deps;
    const summary = { armed: 0, cancelled: 0, unchanged: 0, failed: 0, misfires: 0 };
    if (this.disabled || this.stopped) return this.finish(summary, started);
    this.clearHeal();

    if (!this.listed) await this.listAtStart();
    if (this.disabled) return this.finish(summary, started);

    const seen = new Map(this.versions);
    let jobs = await store.listJobs();
    summary.misfires = await engine.applyMisfires(jobs);
    if (summary.misfires > 0) jobs = await store.listJobs();
    // A damaged job is neither armed nor cancelled: NAS keeps whatever arm it holds, so a job whose file the
    // operator restores fires again without anyone re-creating it (a fire meanwhile answers 503).
    const leaveAlone = new Set(
      (await store.damaged()).filter((record) => record.kind === 'job').map((record) => record.job_id),
    );

    // A job armed or disarmed since the list was read (a fire, a mutation) keeps that newer decision:
    // the list may predate it and would re-arm an instant that was just claimed.
    const changedSince = (jobId: string) => (this.versions.get(jobId) ?? 0) !== (seen.get(jobId) ?? 0);
    const listed = new Map<string, number>();
    for (const job of jobs) {
      try {
        const at = armedInstant(job);
        if (at !== null) listed.set(job.id, at);
      } catch (err) {
        // One job whose next instant cannot be computed must not stop every other job's arm.
        leaveAlone.add(job.id);
        logger.error(
          { err, job_id: job.id },
          'cannot compute the next occurrence of this job; left as it is',
        );
      }
    }
    for (const jobId of [...this.desired.keys()]) {
      if (!listed.has(jobId) && !changedSince(jobId)) this.desired.delete(jobId);
    }
    for (const [jobId, at] of listed) if (!changedSince(jobId)) this.desired.set(jobId, at);
    const calls: Array<() => Promise<'armed' | 'cancelled' | 'failed'>> = [];
    for (const [jobId, at] of this.desired) {
      // Instants, not strings: an arm NAS lists as 02:00-05:00 is the same as our 07:00Z.
      if (this.confirmed(jobId, at)) summary.unchanged += 1;
      else calls.push(() => this.provision(jobId, at).then((ok) => (ok ? 'armed' : 'failed')));
    }
    // Only arms we know of can be orphans; an untrusted (failed) list leaves NAS-only arms alone,
    // and they answer `gone`/`inactive` if they ever fire.
    for (const jobId of this.armed.keys()) {
      if (!this.desired.has(jobId) && !leaveAlone.has(jobId))
        calls.push(() => this.cancel(jobId).then((ok) => (ok ? 'cancelled' : 'failed')));
    }
    const results = await runBounded(calls, this.deps.concurrency ?? 8);
    for (const r of results) summary[r] += 1;
    if (this.disabled) return this.finish(summary, started);
    if (summary.failed > 0) this.scheduleHeal();
    else this.healAttempt = 0;
    const result = this.finish(summary, started);
    logger.info(
      {
        provider: 'chronos',
        ...summary,
        trusted: this.listed,
        duration_ms: result.durationMs,
        ...(leaveAlone.size > 0 ? { left_alone: [...leaveAlone].sort() } : {}),
      },
      `reconcile: armed ${summary.armed} / cancelled ${summary.cancelled} / unchanged ${summary.unchanged} / failed ${summary.failed}`,
    );
    return result;
  }

  async arm(job: Job): Promise<void> {
    const at = armedInstant(job);
    if (at === null) return this.disarm(job.id);
    this.bump(job.id);
    this.desired.set(job.id, at);
    if (this.disabled || this.confirmed(job.id, at)) return;
    if (!(await this.provision(job.id, at))) this.scheduleHeal();
  }

  async disarm(jobId: string): Promise<void> {
    this.bump(jobId);
    this.desired.delete(jobId);
    this.failed.delete(jobId);
    if (this.disabled) return;
    // Cancel even when we do not know of an arm: NAS may hold one from before (cancel of unknown is a 200).
    if (!(await this.cancel(jobId))) this.scheduleHeal();
  }

  isArmed(jobId: string): boolean {
    const at = this.desired.get(jobId);
    return at !== undefined && this.armed.get(jobId) === at && !this.failed.has(jobId);
  }

  settled(): boolean {
    if (this.disabled) return false;
    if (this.reconciler.pending || this.reconcileFailed || this.failed.size > 0) return false;
    for (const [jobId, at] of this.desired) if (this.armed.get(jobId) !== at) return false;
    return true;
  }

  status(): ProviderStatus {
    let armedCount = 0;
    for (const jobId of this.desired.keys()) if (this.isArmed(jobId)) armedCount += 1;
    return {
      provider: 'chronos',
      reason: null,
      nasReachable: this.nasReachable,
      lastReconcile: this.lastReconcile,
      armedCount,
      desiredCount: this.desired.size,
      lastArmAt: this.lastArmAt,
      nextWakeAt: null,
    };
  }

  private async listAtStart(): Promise<void> {
    try {
      const nas = await this.deps.nas();
      const { entries } = await this.deps.activity.track('nas', () => nas.list());
      this.armed.clear();
      for (const entry of entries) this.armed.set(entry.job_id, entry.fire_at);
      this.listed = true;
      this.nasReachable = true;
    } catch (err) {
      this.noteFailure(err, 'list');
    }
  }

  /**
   * NAS calls for one job run one after another, and each checks that its instant is still the desired one
   * when its turn comes: a slow call for an old instant can never land after the call for a newer one.
   */
  private serialised(jobId: string, call: () => Promise<boolean>): Promise<boolean> {
    const previous = this.perJob.get(jobId) ?? Promise.resolve(true);
    const next = previous.then(call, call);
    this.perJob.set(jobId, next);
    void next.finally(() => {
      if (this.perJob.get(jobId) === next) this.perJob.delete(jobId);
    });
    return next;
  }

  private provision(jobId: string, at: number): Promise<boolean> {
    return this.serialised(jobId, async () => {
      // Calls queued behind the one that met invalid_client must not be sent (lesson 8: stop calling NAS).
      if (this.disabled) return false;
      if (this.desired.get(jobId) !== at) return true; // superseded: the newer decision makes its own call
      if (this.armed.get(jobId) === at && !this.failed.has(jobId)) return true;
      try {
        const nas = await this.deps.nas();
        await this.deps.activity.track('nas', () => nas.provision({ job_id: jobId, fire_at: at }));
        this.armed.set(jobId, at);
        this.failed.delete(jobId);
        this.nasReachable = true;
        this.lastArmAt = this.deps.clock.now();
        this.deps.logger.info({ job_id: jobId, fire_at: new Date(at).toISOString() }, 'armed at NAS');
        return true;
      } catch (err) {
        if (this.desired.get(jobId) === at) this.failed.add(jobId);
        this.noteFailure(err, 'provision', jobId);
        return false;
      }
    });
  }

  private cancel(jobId: string): Promise<boolean> {
    return this.serialised(jobId, async () => {
      if (this.disabled) return false;
      if (this.desired.has(jobId)) return true; // re-armed meanwhile: the provision replaces the arm
      try {
        const nas = await this.deps.nas();
        await this.deps.activity.track('nas', () => nas.cancel(jobId));
        this.armed.delete(jobId);
        this.failed.delete(jobId);
        this.nasReachable = true;
        return true;
      } catch (err) {
        // Retried by reconcile only when we know NAS holds an arm (it then shows as an orphan); a cancel for
        // an arm we never saw is best effort: if that arm fires, the fire answers `gone` and cancels again.
        if (this.armed.has(jobId)) this.failed.add(jobId);
        this.noteFailure(err, 'cancel', jobId);
        return false;
      }
    });
  }

  /**
   * NAS holds `at` for the job and no call for it is pending. A call in flight (a cancel, say) may still
   * change what NAS holds, so `armed` cannot be trusted until it lands: provision then, and let its turn
   * in the job's queue decide whether a call is needed.
   */
  private confirmed(jobId: string, at: number): boolean {
    return this.armed.get(jobId) === at && !this.failed.has(jobId) && !this.perJob.has(jobId);
  }

  private bump(jobId: string): void {
    this.versions.set(jobId, (this.versions.get(jobId) ?? 0) + 1);
  }

  private noteFailure(err: unknown, op: string, jobId?: string): void {
    if (isChronosError(err, 'nas_invalid_client')) {
      if (!this.disabled) {
        this.disabled = true;
        this.clearHeal();
        this.deps.onInvalidClient(
          'NAS rejected this agent (403 invalid_client): check CHRONOS_ACCESS_TOKEN / CHRONOS_ACCESS_TOKEN_FILE ' +
            'and that the agent is registered at the portal, then restart. Jobs keep firing on the builtin timer.',
        );
      }
      return;
    }
    this.nasReachable = !isChronosError(err, 'nas_unreachable');
    if (isNasError(err) && err.retryAfterMs !== undefined) {
      this.retryAfterMs = Math.max(this.retryAfterMs ?? 0, err.retryAfterMs);
    }
    this.deps.logger.warn({ err, op, job_id: jobId }, `NAS ${op} failed`);
  }

  /** Failed arms are retried with backoff while awake; idle exit waits until they succeed. */
  private scheduleHeal(): void {
    if (this.healTimer || this.stopped || this.disabled) return;
    this.healAttempt += 1;
    const bounds = this.deps.healBackoff ?? { base: 1_000, max: 60_000 };
    // NAS's own Retry-After wins over our backoff when it asks for longer, beyond the backoff's cap too
    // (up to MAX_RETRY_AFTER_MS): retrying earlier than asked is refused again.
    const delay = Math.max(
      bounds.base / 2,
      computeBackoff(this.healAttempt, bounds, this.deps.random),
      Math.min(this.retryAfterMs ?? 0, MAX_RETRY_AFTER_MS),
    );
    this.retryAfterMs = undefined;
    this.deps.logger.info({ attempt: this.healAttempt, delay_ms: delay }, 'will retry failed NAS calls');
    this.healTimer = this.deps.clock.setTimeout(() => {
      this.healTimer = undefined;
      void this.reconciler.runNow();
    }, delay);
  }

  private clearHeal(): void {
    if (this.healTimer) this.deps.clock.clearTimeout(this.healTimer);
    this.healTimer = undefined;
  }

  private finish(
    summary: Omit<ReconcileSummary, 'trusted' | 'at' | 'durationMs'>,
    started: number,
  ): ReconcileSummary {
    const now = this.deps.clock.now();
    this.lastReconcile = { ...summary, trusted: this.listed, at: now, durationMs: now - started };
    return this.lastReconcile;
  }
}

/** Run tasks with at most `limit` in flight, preserving result order. */
async function runBounded<T>(tasks: Array<() => Promise<T>>, limit: number): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  async function worker(): Promise<void> {
    while (next < tasks.length) {
      const index = next++;
      results[index] = await tasks[index]!();
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}
