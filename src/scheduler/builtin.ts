import { type Clock, formatInstant, type TimerHandle } from '../clock.js';
import { armedInstant } from '../jobs/lifecycle.js';
import type { Job } from '../jobs/model.js';
import type { Logger } from '../logger.js';
import type { Engine } from '../occurrence/engine.js';
import type { ProviderStatus, ReconcileSummary, SchedulerProvider } from '../occurrence/provider.js';
import type { Store } from '../store/store.js';
import { SingleFlight } from './debounce.js';

/** setTimeout's ceiling (about 24.8 days); longer waits are re-armed in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** How soon to retry a claim or a reconcile the store could not do. */
const RETRY_DELAY_MS = 1_000;
/**
 * How long before its instant a builtin occurrence is claimed, at least. The claim is a durable write (with
 * 20 jobs due together, one group commit of 20 file creates, fsyncs and renames); made ahead, it is off the
 * path from the instant to the handler, which then waits only for a timer. The run still never starts
 * before its fire_at. A pause or a removal that arrives after the claim no longer stops that occurrence
 * (as after any claim), so the lead is kept short: docs/architecture.md, "Claimed ahead of the instant".
 */
export const CLAIM_LEAD_MS = 50;
/**
 * On a slow disk the lead grows to twice the slowest claim of the last CLAIM_LEAD_HISTORY instants (timer
 * to durable claim), up to this: without it, a claim that takes longer than the lead makes every run wait.
 */
export const CLAIM_LEAD_MAX_MS = 500;
export const CLAIM_LEAD_HISTORY = 16;

export interface BuiltinProviderDeps {
  store: Store;
  clock: Clock;
  logger: Logger;
  engine: Engine;
  /** Why builtin is in use when chronos was configured (fallback), for /api/status. */
  reason?: string | null;
  debounceMs?: number;
  /** The shortest and the longest claim lead: CLAIM_LEAD_MS and CLAIM_LEAD_MAX_MS unless a test says otherwise. */
  claimLeadMs?: number;
  claimLeadMaxMs?: number;
}

/**
 * In-process trigger: ONE precise timer set for the earliest armed instant of all jobs, re-armed whenever
 * jobs change — not a 60 s tick. It never lets the process exit while idle (the timer stays referenced).
 * Fires go through the same claim as NAS fires, so the two can never both run an occurrence.
 */
export class BuiltinProvider implements SchedulerProvider {
  readonly name = 'builtin' as const;
  private readonly desired = new Map<string, number>();
  private timer: TimerHandle | undefined;
  /** Timers retrying what the store could not do (a claim, a reconcile); cleared on stop. */
  private readonly retries = new Set<TimerHandle>();
  private wakeAt: number | null = null;
  private stopped = false;
  private lastReconcile: ReconcileSummary | null = null;
  private lastArmAt: number | null = null;
  private readonly reconciler: SingleFlight;
  private readonly claimLeadMs: number;
  private readonly claimLeadMaxMs: number;
  /** How long the claims of the last few instants took, from the moment their timer was due. */
  private readonly claimTimes: number[] = [];
  private lead: number;
  /** When the pending timer is due (the instant's claim lead before wakeAt, or when it was set). */
  private timerDueAt = 0;
  reason: string | null;

  constructor(private readonly deps: BuiltinProviderDeps) {
    this.reason = deps.reason ?? null;
    this.claimLeadMs = Math.max(0, deps.claimLeadMs ?? CLAIM_LEAD_MS);
    this.claimLeadMaxMs = Math.max(this.claimLeadMs, deps.claimLeadMaxMs ?? CLAIM_LEAD_MAX_MS);
    this.lead = this.claimLeadMs;
    this.reconciler = new SingleFlight(
      deps.clock,
      deps.debounceMs ?? 50,
      async () => {
        await this.reconcile();
      },
      (err) => {
        // The store could not be read: keep the trigger alive and try again shortly.
        deps.logger.error({ err }, 'builtin reconcile failed; retrying shortly');
        this.later(() => this.reconciler.request());
      },
    );
  }

  isAvailable(): { ok: true } {
    return { ok: true };
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.reconciler.runNow();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.reconciler.cancel();
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.wakeAt = null;
    for (const retry of this.retries) this.deps.clock.clearTimeout(retry);
    this.retries.clear();
  }

  onJobsChanged(): void {
    if (!this.stopped) this.reconciler.request();
  }

  async reconcile(): Promise<ReconcileSummary> {
    const started = this.deps.clock.now();
    let jobs = await this.deps.store.listJobs();
    const misfires = await this.deps.engine.applyMisfires(jobs);
    if (misfires > 0) jobs = await this.deps.store.listJobs();
    const before = new Map(this.desired);
    this.desired.clear();
    let armed = 0;
    let unchanged = 0;
    let failed = 0;
    for (const job of jobs) {
      let at: number | null;
      try {
        at = armedInstant(job);
      } catch (err) {
        // One job whose next instant cannot be computed must not leave every other job without a timer.
        failed += 1;
        this.deps.logger.error({ err, job_id: job.id }, 'cannot compute the next occurrence of this job');
        continue;
      }
      if (at === null) continue;
      this.desired.set(job.id, at);
      if (before.get(job.id) === at) unchanged += 1;
      else armed += 1;
    }
    const cancelled = [...before.keys()].filter((id) => !this.desired.has(id)).length;
    this.reschedule();
    const now = this.deps.clock.now();
    this.lastReconcile = {
      armed,
      cancelled,
      unchanged,
      failed,
      misfires,
      trusted: true,
      at: now,
      durationMs: now - started,
    };
    // One after every fire: a pass that changed nothing is a detail (debug); one that did is news.
    this.deps.logger[armed + cancelled + failed + misfires > 0 ? 'info' : 'debug'](
      {
        provider: 'builtin',
        armed,
        cancelled,
        unchanged,
        failed,
        misfires,
        next_wake: formatInstant(this.wakeAt),
      },
      'reconcile',
    );
    return this.lastReconcile;
  }

  async arm(job: Job): Promise<void> {
    const at = armedInstant(job);
    if (at === null) this.desired.delete(job.id);
    else this.desired.set(job.id, at);
    this.lastArmAt = this.deps.clock.now();
    this.reschedule();
  }

  async disarm(jobId: string): Promise<void> {
    this.desired.delete(jobId);
    this.reschedule();
  }

  isArmed(jobId: string): boolean {
    return this.desired.has(jobId);
  }

  settled(): boolean {
    return true;
  }

  status(): ProviderStatus {
    return {
      provider: 'builtin',
      reason: this.reason,
      nasReachable: null,
      lastReconcile: this.lastReconcile,
      armedCount: this.desired.size,
      desiredCount: this.desired.size,
      lastArmAt: this.lastArmAt,
      nextWakeAt: this.wakeAt,
      unconfirmed: [],
    };
  }

  /** The current claim lead (ms before an instant its claim is made). */
  claimLead(): number {
    return this.lead;
  }

  private later(fn: () => void): void {
    if (this.stopped) return;
    const retry = this.deps.clock.setTimeout(() => {
      this.retries.delete(retry);
      if (!this.stopped) fn();
    }, RETRY_DELAY_MS);
    this.retries.add(retry);
  }

  private reschedule(): void {
    if (this.stopped) return;
    let earliest: number | null = null;
    for (const at of this.desired.values()) if (earliest === null || at < earliest) earliest = at;
    if (earliest === this.wakeAt && this.timer) return;
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
    // wakeAt is the occurrence's instant (what status reports); the timer goes off the claim lead before it.
    this.wakeAt = earliest;
    if (earliest === null) return;
    const now = this.deps.clock.now();
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, earliest - this.lead - now));
    this.timerDueAt = now + delay;
    this.timer = this.deps.clock.setTimeout(() => this.onTimer(), delay);
  }

  /** One instant's claims took `ms` from their timer's due time: the lead follows the slowest recent one. */
  private noteClaimTime(ms: number): void {
    this.claimTimes.push(ms);
    if (this.claimTimes.length > CLAIM_LEAD_HISTORY) this.claimTimes.shift();
    const slowest = Math.max(...this.claimTimes);
    const lead = Math.min(this.claimLeadMaxMs, Math.max(this.claimLeadMs, Math.ceil(2 * slowest)));
    if (lead === this.lead) return;
    this.deps.logger.debug(
      { provider: 'builtin', lead_ms: lead, previous_lead_ms: this.lead, slowest_claim_ms: slowest },
      'claim lead changed',
    );
    this.lead = lead;
    // The timer already set for the next instant follows the new lead.
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.reschedule();
  }

  private onTimer(): void {
    this.timer = undefined;
    this.wakeAt = null;
    const now = this.deps.clock.now();
    const dueAt = this.timerDueAt;
    const due = [...this.desired].filter(([, at]) => at <= now + this.lead);
    if (due.length === 0) {
      this.reschedule();
      return;
    }
    // One gate per instant: every run claimed for it starts in the same timer callback, so no run's start
    // waits behind the bookkeeping of another one started just before it.
    const gates = new Map<number, Promise<void>>();
    const claims: Promise<void>[] = [];
    for (const [jobId, at] of due) {
      // Forget the instant before claiming so a failed claim cannot spin; the claim re-arms what is current.
      this.desired.delete(jobId);
      let gate: Promise<void> | undefined;
      if (at > now) {
        gate = gates.get(at) ?? this.gate(at - now);
        gates.set(at, gate);
      }
      claims.push(this.fire(jobId, at, gate));
    }
    void Promise.all(claims).then(() => this.noteClaimTime(this.deps.clock.now() - Math.min(dueAt, now)));
    this.reschedule();
  }

  /**
   * Resolves `ms` from now on the clock's own timer, whatever the wall clock does meanwhile: a run claimed
   * ahead waits at most the claim lead. Not cleared by stop(): a claimed run still starts (shutdown waits
   * for it, and aborts it once its grace period is over), never before its instant.
   */
  private gate(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.deps.clock.setTimeout(resolve, ms);
    });
  }

  private async fire(jobId: string, at: number, startAfter?: Promise<void>): Promise<void> {
    try {
      const outcome = await this.deps.engine.fireLocal(jobId, at, 'builtin', startAfter);
      if (outcome.kind === 'stale' || outcome.kind === 'duplicate' || outcome.kind === 'early') {
        const job = await this.deps.store.getJob(jobId);
        if (job) await this.arm(job);
      }
    } catch (err) {
      this.deps.logger.error({ err, job_id: jobId }, 'builtin fire failed; retrying shortly');
      // The store could not take the claim: try the same instant again soon rather than lose it.
      this.later(() => {
        if (!this.desired.has(jobId)) {
          this.desired.set(jobId, at);
          this.reschedule();
        }
      });
    }
  }
}
