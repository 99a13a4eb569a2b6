// src/scheduler/ owns the two providers that trigger fires (chronos: arms at NAS, this file; builtin: one
// in-process timer), what is in flight (activity.ts) and idle exit. Both feed src/occurrence/engine.ts.
import { type Clock, formatInstant, type TimerHandle } from '../clock.js';
import { errorMessage, isChronosError } from '../errors.js';
import { armedInstant, pastMisfireGrace } from '../jobs/lifecycle.js';
import type { Job } from '../jobs/model.js';
import type { Logger } from '../logger.js';
import { type ArmedList, isNasError, type NasClient } from '../nas/nas.js';
import { computeBackoff, MAX_RETRY_AFTER_MS } from '../nas/retry.js';
import type { Engine } from '../occurrence/engine.js';
import type {
  ProviderStatus,
  ReconcileSummary,
  SchedulerProvider,
  UnconfirmedArm,
} from '../occurrence/provider.js';
import {
  type ArmBelief,
  type ArmLock,
  type ArmViewUpdate,
  SINGLE_PROCESS_ARM_LOCK,
} from '../store/arm-lock.js';
import type { Store } from '../store/store.js';
import type { Activity } from './activity.js';
import { SingleFlight } from './debounce.js';

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
  /** Backoff between reconcile rounds while some arm keeps failing or stays unconfirmed. */
  healBackoff?: { base: number; max: number };
  /**
   * How long after answering a delivery NAS may still change the job's row (its post-delivery
   * bookkeeping). A `list` confirms a job's arm only when made at least this long after its last delivery.
   */
  deliverySettleMs?: number;
  /** An awake process that has not received the fire for an instant this long after it asks NAS why. */
  dueSlackMs?: number;
  random?: () => number;
  /**
   * A job's arm has kept failing for `armingAlertAfterMs` (CHRONOS_ARMING_ALERT_SECONDS): called once per
   * failing stretch, from the heal path's retry, with when the stretch began and the last error.
   */
  onArmingFailed?: (jobId: string, since: number, error: string) => void;
  armingAlertAfterMs?: number;
  /** Serialises arming with other replicas on the same ledger; the single-process lock when absent. */
  armLock?: ArmLock;
}

/** See `deliverySettleMs`. */
export const DEFAULT_DELIVERY_SETTLE_MS = 1_500;
/** See `dueSlackMs`. */
export const DEFAULT_DUE_SLACK_MS = 5_000;
/** Timers are re-evaluated at least this often (Node timers overflow past ~24.8 days). */
const MAX_TIMER_MS = 3_600_000;

/** What one `list` showed, and when it was sent relative to our own calls. */
interface ListSnapshot {
  /** Call sequence number taken when the list was sent: calls that completed before it are reflected. */
  seq: number;
  sentAt: number;
  view: Map<string, number>;
  unreadable: Set<string>;
  /** Jobs for which the list contradicted an arm NAS had acknowledged to us. */
  contradicted: Set<string>;
}

/**
 * NAS-mediated trigger. `start()` reconciles and returns. While the process is awake it keeps timers only
 * to retry failed arms, to confirm arms with a `list`, and to notice an instant whose fire never came
 * (docs/architecture.md, "Never sleep with an unarmed job"); a sleeping process keeps nothing.
 *
 * Two views of NAS are kept apart: `armed` is what NAS acknowledged (our own calls, or a list), and
 * `confirmed` is what a `list` sent after the job's last call, and after NAS had time to finish the
 * job's last delivery, showed at exactly the instant we want. Only `confirmed` lets the process sleep.
 */
export class ChronosProvider implements SchedulerProvider {
  readonly name = 'chronos' as const;
  private readonly armed = new Map<string, number>();
  /** Jobs for which NAS is known to hold nothing (a cancel, a consumed delivery), even without a list. */
  private readonly absent = new Set<string>();
  private readonly desired = new Map<string, number>();
  private readonly confirmedAt = new Map<string, number>();
  private readonly unconfirmedWhy = new Map<string, string>();
  private readonly failed = new Set<string>();
  /** When each job's provisions started failing (cleared by a success or a disarm), and those alerted. */
  private readonly armingSince = new Map<string, number>();
  private readonly armingAlerted = new Set<string>();
  /** Bumped by every arm/disarm decision, so a reconcile can tell which jobs changed after its list. */
  private readonly versions = new Map<string, number>();
  private readonly perJob = new Map<string, Promise<boolean>>();
  /** Sequence number of each job's last completed NAS call; `list` snapshots compare against it. */
  private readonly lastCallSeq = new Map<string, number>();
  private seq = 0;
  /** Clock time of the last delivery answered for each job. */
  private readonly deliveredAt = new Map<string, number>();
  /** Jobs whose belief (`armed` / `absent`) changed since this process last recorded them under the arm lock. */
  private readonly beliefsChanged = new Set<string>();
  /** Deliveries answered since the last record: each consumed the arm others may still record as held. */
  private readonly deliveredUnrecorded = new Map<string, number | undefined>();
  private reconcileFailed = false;
  private listed = false;
  private needList = false;
  private disabled = false;
  private stopped = false;
  private nasReachable: boolean | null = null;
  private lastReconcile: ReconcileSummary | null = null;
  private lastArmAt: number | null = null;
  private healTimer: TimerHandle | undefined;
  private healAttempt = 0;
  private verifyTimer: { handle: TimerHandle; at: number } | undefined;
  private verifyAttempt = 0;
  private dueTimer: { handle: TimerHandle; at: number } | undefined;
  /** Consecutive due watches that found an instant overdue (NAS still retrying it): they back off. */
  private dueAttempt = 0;
  /** The longest Retry-After NAS sent since the last heal was scheduled. */
  private retryAfterMs: number | undefined;
  private readonly reconciler: SingleFlight;

  constructor(private readonly deps: ChronosProviderDeps) {
    // Tracked as activity so that idle exit re-checks when a reconcile ends, even one that made no call.
    this.reconciler = new SingleFlight(deps.clock, deps.debounceMs ?? 50, async () => {
      await deps.activity.track('arming', () => this.reconcile());
    });
  }

  private get settleMs(): number {
    return this.deps.deliverySettleMs ?? DEFAULT_DELIVERY_SETTLE_MS;
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
    this.clearVerify();
    this.clearDue();
  }

  onJobsChanged(): void {
    if (!this.stopped && !this.disabled) this.reconciler.request();
  }

  onDelivered(jobId: string, fireAt: number | undefined): void {
    const now = this.deps.clock.now();
    this.deliveredAt.set(jobId, now);
    this.deliveredUnrecorded.set(jobId, fireAt);
    // A call in flight for the job replaces the delivered arm, whatever it was.
    if (!this.perJob.has(jobId)) this.consumeDelivered(jobId, fireAt);
    // Whatever NAS holds for the job can still change until its delivery bookkeeping is done.
    this.unconfirm(jobId, 'NAS delivered a fire; waiting for it to finish before confirming the next arm');
    if (this.stopped || this.disabled) return;
    // This runs before every fire's and duplicate's reply. The job is now unconfirmed and delivered now, so
    // scheduleVerify would compute a list no earlier than now + settle: a list already due by then stays,
    // and its pass over every job (O(jobs) per delivery) is skipped.
    if (this.verifyTimer && this.desired.has(jobId) && this.verifyTimer.at <= now + this.settleMs) return;
    this.scheduleVerify(false);
  }

  async reconcile(): Promise<ReconcileSummary> {
    const started = this.deps.clock.now();
    try {
      const result = await this.withArmLock(() => this.reconcileOnce(started));
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
    const { logger, store, engine, clock } = this.deps;
    const summary = { armed: 0, cancelled: 0, unchanged: 0, failed: 0, misfires: 0 };
    if (this.disabled || this.stopped) return this.finish(summary, started);
    this.clearHeal();

    let list: ListSnapshot | null = null;
    // A list asked for by the verify timer is skipped when a list made meanwhile confirmed everything.
    const listFirst = !this.listed || (this.needList && this.unconfirmedCount() > 0);
    this.needList = false;
    if (listFirst) {
      // The first list of a process woken by a fire waits for that delivery to settle: it is then also
      // the list that confirms the next arm, and a quiet wake costs one list.
      if (!this.listed) await this.waitForDeliveries();
      list = await this.listNas();
      if (list === null) {
        summary.failed += 1;
        this.needList = true; // the heal round lists again
      }
    }
    if (this.disabled || this.stopped) return this.finish(summary, started);

    const seen = new Map(this.versions);
    let jobs = await store.listJobs();
    summary.misfires = await engine.applyMisfires(jobs);
    if (summary.misfires > 0) jobs = await store.listJobs();
    // A damaged job is neither armed nor cancelled: NAS keeps whatever arm it holds, so a job whose file the
    // operator restores fires again without anyone re-creating it (a fire meanwhile answers 503).
    const leaveAlone = new Set((await store.damaged('job')).map((record) => record.job_id));

    // A job armed or disarmed since the jobs were read (a fire, a mutation) keeps that newer decision:
    // the read may predate it and would re-arm an instant that was just claimed.
    const changedSince = (jobId: string) => (this.versions.get(jobId) ?? 0) !== (seen.get(jobId) ?? 0);
    const wanted = new Map<string, number>();
    const byId = new Map<string, Job>();
    for (const job of jobs) {
      byId.set(job.id, job);
      try {
        const at = armedInstant(job);
        if (at !== null) wanted.set(job.id, at);
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
      if (!wanted.has(jobId) && !changedSince(jobId)) this.forget(jobId);
    }
    for (const [jobId, at] of wanted) if (!changedSince(jobId)) this.setDesired(jobId, at);
    let mismatched = 0;
    if (list) mismatched = this.confirmFrom(list);

    const now = clock.now();
    const calls: Array<() => Promise<'armed' | 'cancelled' | 'failed' | 'misfires' | 'unchanged'>> = [];
    for (const [jobId, at] of this.desired) {
      // Instants, not strings: an arm NAS lists as 02:00-05:00 is the same as our 07:00Z.
      if (this.holds(jobId, at)) summary.unchanged += 1;
      else if (at <= now) {
        // NAS may have consumed this key (delivered it, given up, or dropped it): provisioning it again
        // can arm nothing. The occurrence is claimed and run here instead (docs/contract.md).
        const job = byId.get(jobId);
        if (job) calls.push(() => this.catchUp(job, at));
      } else calls.push(() => this.provision(jobId, at).then((ok) => (ok ? 'armed' : 'failed')));
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
    // Arms made now (or before this round without a list since) are confirmed at once, unless NAS may still
    // be finishing a delivery of the job: those wait for their own list (scheduleVerify).
    if (summary.failed === 0 && this.confirmableNow(list) > 0) {
      list = await this.listNas();
      if (list === null) summary.failed += 1;
      else mismatched += this.confirmFrom(list);
    }
    if (this.disabled) return this.finish(summary, started);
    if (summary.failed > 0) this.scheduleHeal();
    else this.healAttempt = 0;
    if (list && mismatched === 0 && this.unconfirmedCount() === 0) this.verifyAttempt = 0;
    if (mismatched > 0) this.verifyAttempt += 1;
    if (this.unconfirmedCount() === 0) this.clearVerify();
    else if (summary.failed === 0) this.scheduleVerify(mismatched > 0);
    this.scheduleDueWatch();
    const result = this.finish(summary, started);
    // One after every fire: a pass that changed nothing is a detail (debug); one that did is news.
    const changed = summary.armed + summary.cancelled + summary.failed + summary.misfires > 0;
    logger[changed ? 'info' : 'debug'](
      {
        provider: 'chronos',
        ...summary,
        trusted: this.listed,
        listed: list !== null,
        unconfirmed: this.unconfirmedCount(),
        duration_ms: result.durationMs,
        ...(leaveAlone.size > 0 ? { left_alone: [...leaveAlone].sort() } : {}),
      },
      `reconcile: armed ${summary.armed} / cancelled ${summary.cancelled} / unchanged ${summary.unchanged} / failed ${summary.failed}`,
    );
    if (list && this.desired.size > 0 && this.unconfirmedCount() === 0)
      logger.debug({ jobs: this.desired.size }, 'every arm confirmed by NAS list');
    return result;
  }

  async arm(job: Job): Promise<void> {
    await this.withArmLock(async (shared) => {
      // Another replica may have claimed, changed or removed the job since `job` was read: arming the
      // stored job keeps this call from undoing a newer replica's arm.
      const current = shared ? await this.deps.store.getJob(job.id) : job;
      if (current === undefined) return this.disarmHeld(job.id);
      return this.armHeld(current);
    });
  }

  private async armHeld(job: Job): Promise<void> {
    const at = armedInstant(job);
    if (at === null) return this.disarmHeld(job.id);
    this.bump(job.id);
    this.setDesired(job.id, at);
    if (this.disabled || this.holds(job.id, at)) return;
    if (at <= this.deps.clock.now()) {
      // Never re-provision a key NAS may have consumed: let reconcile claim it here.
      this.onJobsChanged();
      return;
    }
    if (!(await this.provision(job.id, at))) this.scheduleHeal();
    else this.scheduleVerify(false);
  }

  async disarm(jobId: string): Promise<void> {
    await this.withArmLock(async (shared) => {
      // A replica's disarm (a fire that found the job gone or paused) must not cancel the arm another
      // replica made since for a job that exists again or was resumed.
      const current = shared ? await this.deps.store.getJob(jobId) : undefined;
      if (current !== undefined) return this.armHeld(current);
      return this.disarmHeld(jobId);
    });
  }

  /**
   * Runs an arming section under the arm lock. With replicas, the section starts from what the other
   * holders recorded of NAS's arms since this process's last hold, and records what it changed itself
   * when it ends (docs/architecture.md, "Replicas"): a replica never provisions an instant another
   * has had acknowledged, nor trusts an arm another has replaced or cancelled.
   */
  private withArmLock<T>(section: (shared: boolean) => Promise<T>): Promise<T> {
    const lock = this.deps.armLock ?? SINGLE_PROCESS_ARM_LOCK;
    return lock.hold(async (held) => {
      if (held.view) this.adoptView(held.view);
      try {
        return await section(lock.shared);
      } finally {
        held.record(this.takeBeliefChanges());
      }
    });
  }

  private adoptView(view: ArmViewUpdate): void {
    if (view.reset) this.forgetNasView();
    for (const [jobId, belief] of view.beliefs) {
      if (this.beliefOf(jobId) === belief) continue;
      this.believe(jobId, belief);
      // Another replica called NAS for this job: only a list made after that confirms it.
      if (this.desired.has(jobId))
        this.unconfirm(
          jobId,
          'another replica called NAS for this job since; waiting for a NAS list to confirm it',
        );
      // A delivery this process answered since then may have consumed the arm the other recorded.
      if (this.deliveredUnrecorded.has(jobId))
        this.consumeDelivered(jobId, this.deliveredUnrecorded.get(jobId));
      // What the view already says needs no recording again.
      if (this.beliefOf(jobId) === belief) this.beliefsChanged.delete(jobId);
    }
  }

  private forgetNasView(): void {
    this.armed.clear();
    this.absent.clear();
    this.listed = false;
    for (const jobId of this.desired.keys())
      this.unconfirm(jobId, 'another replica called NAS since; waiting for a NAS list to confirm the arm');
  }

  /** The changed beliefs to record with the arm lock's release; none are pending afterwards. */
  private takeBeliefChanges(): Map<string, ArmBelief> {
    const changes = new Map<string, ArmBelief>();
    for (const jobId of this.beliefsChanged) changes.set(jobId, this.beliefOf(jobId));
    this.beliefsChanged.clear();
    this.deliveredUnrecorded.clear();
    return changes;
  }

  private beliefOf(jobId: string): ArmBelief {
    return this.armed.get(jobId) ?? (this.absent.has(jobId) ? 'absent' : 'unknown');
  }

  private believe(jobId: string, belief: ArmBelief): void {
    if (this.beliefOf(jobId) === belief) return;
    this.armed.delete(jobId);
    this.absent.delete(jobId);
    if (typeof belief === 'number') this.armed.set(jobId, belief);
    else if (belief === 'absent') this.absent.add(jobId);
    this.beliefsChanged.add(jobId);
  }

  /**
   * A delivered arm is consumed. NAS holds one arm per job, so unless another instant was armed since
   * (that call replaced it), NAS now holds nothing for the job and a cancel would be wasted.
   */
  private consumeDelivered(jobId: string, fireAt: number | undefined): void {
    const held = this.armed.get(jobId);
    if (held === undefined || fireAt === undefined || held === fireAt) this.believe(jobId, 'absent');
  }

  private async disarmHeld(jobId: string): Promise<void> {
    this.bump(jobId);
    this.forget(jobId);
    this.failed.delete(jobId);
    if (this.disabled) return;
    // NAS holds nothing we need to remove (its delivery consumed the arm, or we cancelled it already).
    if (this.holdsNothing(jobId)) return;
    if (!(await this.cancel(jobId))) this.scheduleHeal();
  }

  isArmed(jobId: string): boolean {
    const at = this.desired.get(jobId);
    return at !== undefined && this.armed.get(jobId) === at && !this.failed.has(jobId);
  }

  settled(): boolean {
    if (this.disabled) return false;
    if (this.reconciler.pending || this.reconcileFailed || this.failed.size > 0) return false;
    for (const [jobId, at] of this.desired) if (this.confirmedAt.get(jobId) !== at) return false;
    return true;
  }

  nextDueAt(): number | null {
    let earliest: number | null = null;
    for (const at of this.desired.values()) if (earliest === null || at < earliest) earliest = at;
    return earliest;
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
      unconfirmed: this.unconfirmed(),
    };
  }

  /** Without building the report: this runs on every fire, before its reply is sent. */
  private unconfirmedCount(): number {
    let count = 0;
    for (const [jobId, at] of this.desired) if (this.confirmedAt.get(jobId) !== at) count += 1;
    return count;
  }

  private unconfirmed(): UnconfirmedArm[] {
    const out: UnconfirmedArm[] = [];
    for (const [jobId, at] of this.desired) {
      if (this.confirmedAt.get(jobId) === at) continue;
      let reason = this.unconfirmedWhy.get(jobId);
      if (this.failed.has(jobId)) reason = 'the last NAS call for this job failed; retrying with backoff';
      out.push({ job_id: jobId, fire_at: at, reason: reason ?? 'not yet seen in a NAS list' });
    }
    return out.sort((a, b) => a.job_id.localeCompare(b.job_id));
  }

  private setDesired(jobId: string, at: number): void {
    if (this.desired.get(jobId) === at) return;
    this.desired.set(jobId, at);
    if (this.confirmedAt.get(jobId) !== at) this.unconfirm(jobId, 'not yet seen in a NAS list');
  }

  private forget(jobId: string): void {
    this.armingSince.delete(jobId);
    this.armingAlerted.delete(jobId);
    this.desired.delete(jobId);
    this.confirmedAt.delete(jobId);
    this.unconfirmedWhy.delete(jobId);
  }

  private unconfirm(jobId: string, reason: string): void {
    this.confirmedAt.delete(jobId);
    this.unconfirmedWhy.set(jobId, reason);
  }

  /** NAS acknowledged `at` for the job and no call for it is pending. */
  private holds(jobId: string, at: number): boolean {
    return this.armed.get(jobId) === at && !this.failed.has(jobId) && !this.perJob.has(jobId);
  }

  private holdsNothing(jobId: string): boolean {
    if (this.perJob.has(jobId) || this.armed.has(jobId)) return false;
    return this.listed || this.absent.has(jobId);
  }

  /** Unconfirmed desired jobs that a list sent now could confirm, and that `since` (if any) could not. */
  private confirmableNow(since: ListSnapshot | null): number {
    const now = this.deps.clock.now();
    let count = 0;
    for (const [jobId, at] of this.desired) {
      if (this.confirmedAt.get(jobId) === at || this.failed.has(jobId) || this.perJob.has(jobId)) continue;
      if (since && this.listReflects(since, jobId)) continue;
      const delivered = this.deliveredAt.get(jobId);
      if (delivered === undefined || now >= delivered + this.settleMs) count += 1;
    }
    return count;
  }

  /** Before the first list of a process woken by a fire: give NAS time to finish that delivery. */
  private async waitForDeliveries(): Promise<void> {
    let latest = Number.NEGATIVE_INFINITY;
    for (const at of this.deliveredAt.values()) latest = Math.max(latest, at);
    const wait = Math.min(this.settleMs, latest + this.settleMs - this.deps.clock.now());
    if (!(wait > 0)) return;
    await new Promise<void>((resolve) => this.deps.clock.setTimeout(resolve, wait));
  }

  private async listNas(): Promise<ListSnapshot | null> {
    const seq = ++this.seq;
    const sentAt = this.deps.clock.now();
    let reply: ArmedList;
    try {
      const nas = await this.deps.nas();
      reply = await this.deps.activity.track('nas', () => nas.list());
    } catch (err) {
      this.noteFailure(err, 'list');
      return null;
    }
    const unreadable = new Set(reply.unreadableJobIds);
    const view = new Map<string, number>();
    for (const entry of reply.entries) view.set(entry.job_id, entry.fire_at);
    const snapshot: ListSnapshot = { seq, sentAt, view, unreadable, contradicted: new Set() };
    // Our belief of what NAS holds follows the list, except for jobs whose calls are newer than it.
    const jobs = new Set([...this.armed.keys(), ...view.keys()]);
    for (const jobId of jobs) {
      if (!this.listReflects(snapshot, jobId) || unreadable.has(jobId)) continue;
      const at = view.get(jobId);
      const believed = this.armed.get(jobId);
      if (believed !== undefined && believed !== at) snapshot.contradicted.add(jobId);
      this.believe(jobId, at ?? 'absent');
    }
    this.listed = true;
    this.nasReachable = true;
    return snapshot;
  }

  /** The list was sent after the job's last call completed, and no call for it is in flight. */
  private listReflects(list: ListSnapshot, jobId: string): boolean {
    return !this.perJob.has(jobId) && (this.lastCallSeq.get(jobId) ?? 0) < list.seq;
  }

  /** Confirm desired arms from a list; returns how many it showed missing or at another instant. */
  private confirmFrom(list: ListSnapshot): number {
    let mismatched = 0;
    for (const [jobId, want] of this.desired) {
      if (this.confirmedAt.get(jobId) === want) continue;
      if (!this.listReflects(list, jobId)) continue;
      if (list.unreadable.has(jobId)) {
        this.unconfirm(jobId, "NAS's list item for this job is unreadable; asking again with backoff");
        mismatched += 1;
        continue;
      }
      const delivered = this.deliveredAt.get(jobId);
      if (delivered !== undefined && list.sentAt < delivered + this.settleMs) continue;
      const nasAt = list.view.get(jobId);
      if (nasAt === want) {
        this.confirmedAt.set(jobId, want);
        this.unconfirmedWhy.delete(jobId);
      } else {
        mismatched += 1;
        const reason =
          nasAt === undefined
            ? `NAS's list has no arm for this job (wanted ${formatInstant(want)}); re-arming`
            : `NAS's list has ${formatInstant(nasAt)}, not ${formatInstant(want)}; re-arming`;
        this.unconfirm(jobId, reason);
        // Only an arm NAS had acknowledged and then lost is news; a job never armed yet is routine.
        const level = list.contradicted.has(jobId) ? 'warn' : 'debug';
        this.deps.logger[level](
          {
            job_id: jobId,
            wanted: formatInstant(want),
            listed: nasAt === undefined ? null : formatInstant(nasAt),
          },
          'NAS list does not confirm the arm',
        );
      }
    }
    return mismatched;
  }

  /**
   * The desired instant has come and NAS does not hold it: claim and run it here (the same claim NAS's
   * fire would take, so still one run), or let the misfire policy decide once it is past its grace.
   */
  private async catchUp(job: Job, at: number): Promise<'misfires' | 'unchanged' | 'failed'> {
    const now = this.deps.clock.now();
    try {
      if (pastMisfireGrace(job, at, now)) {
        return (await this.deps.engine.applyMisfires([job])) > 0 ? 'misfires' : 'unchanged';
      }
      const outcome = await this.deps.engine.fireLocal(job.id, at, 'misfire');
      this.deps.logger.warn(
        { job_id: job.id, fire_at: formatInstant(at), outcome: outcome.kind },
        'NAS does not hold a due occurrence; claimed it here',
      );
      return outcome.kind === 'accepted' ? 'misfires' : 'unchanged';
    } catch (err) {
      this.deps.logger.error({ err, job_id: job.id }, 'claiming a due occurrence failed');
      return 'failed';
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
      // Calls queued behind the one that met invalid_client must not be sent (docs/contract.md: NAS is not called again).
      if (this.disabled) return false;
      if (this.desired.get(jobId) !== at) return true; // superseded: the newer decision makes its own call
      if (this.armed.get(jobId) === at && !this.failed.has(jobId)) return true;
      try {
        const nas = await this.deps.nas();
        await this.deps.activity.track('nas', () => nas.provision({ job_id: jobId, fire_at: at }));
        this.lastCallSeq.set(jobId, ++this.seq);
        this.believe(jobId, at);
        this.failed.delete(jobId);
        this.armingSince.delete(jobId);
        this.armingAlerted.delete(jobId);
        this.unconfirm(jobId, 'armed; waiting for a NAS list to confirm it');
        this.nasReachable = true;
        this.lastArmAt = this.deps.clock.now();
        this.deps.logger.debug({ job_id: jobId, fire_at: formatInstant(at) }, 'armed at NAS');
        return true;
      } catch (err) {
        if (this.desired.get(jobId) === at) {
          this.failed.add(jobId);
          this.noteArmingFailure(jobId, err);
        }
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
        this.lastCallSeq.set(jobId, ++this.seq);
        this.believe(jobId, 'absent');
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

  private bump(jobId: string): void {
    this.versions.set(jobId, (this.versions.get(jobId) ?? 0) + 1);
  }

  private noteFailure(err: unknown, op: string, jobId?: string): void {
    if (isChronosError(err, 'nas_invalid_client')) {
      if (!this.disabled) {
        this.disabled = true;
        this.clearHeal();
        this.clearVerify();
        this.clearDue();
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

  private noteArmingFailure(jobId: string, err: unknown): void {
    const now = this.deps.clock.now();
    const since = this.armingSince.get(jobId) ?? now;
    this.armingSince.set(jobId, since);
    const after = this.deps.armingAlertAfterMs;
    if (after === undefined || this.deps.onArmingFailed === undefined) return;
    if (now - since < after || this.armingAlerted.has(jobId)) return;
    this.armingAlerted.add(jobId);
    try {
      this.deps.onArmingFailed(jobId, since, errorMessage(err));
    } catch (hookErr) {
      this.deps.logger.error({ err: hookErr, job_id: jobId }, 'arming_failed alert hook threw');
    }
  }

  /** Failed arms are retried with backoff while awake; idle exit waits until they succeed. */
  private scheduleHeal(): void {
    if (this.healTimer || this.stopped || this.disabled) return;
    this.healAttempt += 1;
    // NAS's own Retry-After wins over our backoff when it asks for longer, beyond the backoff's cap too
    // (up to MAX_RETRY_AFTER_MS): retrying earlier than asked is refused again.
    const delay = Math.max(
      this.backoff(this.healAttempt),
      Math.min(this.retryAfterMs ?? 0, MAX_RETRY_AFTER_MS),
    );
    this.retryAfterMs = undefined;
    this.deps.logger.info({ attempt: this.healAttempt, delay_ms: delay }, 'will retry failed NAS calls');
    this.healTimer = this.deps.clock.setTimeout(() => {
      this.healTimer = undefined;
      void this.reconciler.runNow();
    }, delay);
  }

  private get bounds(): { base: number; max: number } {
    return this.deps.healBackoff ?? { base: 1_000, max: 60_000 };
  }

  private backoff(attempt: number): number {
    return Math.max(this.bounds.base / 2, computeBackoff(attempt, this.bounds, this.deps.random));
  }

  /**
   * A `list` to confirm unconfirmed arms: once NAS has had time to finish the deliveries of those jobs,
   * and, after a list that contradicted us, with backoff.
   */
  private scheduleVerify(withBackoff: boolean): void {
    if (this.stopped || this.disabled) return;
    const now = this.deps.clock.now();
    let at = now + (this.deps.debounceMs ?? 50);
    for (const [jobId, wanted] of this.desired) {
      if (this.confirmedAt.get(jobId) === wanted) continue;
      const delivered = this.deliveredAt.get(jobId);
      if (delivered !== undefined) at = Math.max(at, delivered + this.settleMs);
    }
    if (withBackoff) at = Math.max(at, now + this.backoff(this.verifyAttempt));
    if (this.verifyTimer && this.verifyTimer.at <= at) return;
    this.clearVerify();
    const handle = this.deps.clock.setTimeout(
      () => {
        this.verifyTimer = undefined;
        // Another list may have confirmed everything meanwhile (the start-up list of a woken process).
        if (this.unconfirmedCount() === 0) return;
        this.needList = true;
        void this.reconciler.runNow();
      },
      Math.min(at - now, MAX_TIMER_MS),
    );
    this.verifyTimer = { handle, at };
  }

  private clearVerify(): void {
    if (this.verifyTimer) this.deps.clock.clearTimeout(this.verifyTimer.handle);
    this.verifyTimer = undefined;
  }

  /**
   * An awake process expects each desired instant's fire. If it has not come `dueSlackMs` after the
   * instant, NAS may have given up on it or dropped it: a list tells, and reconcile claims it here if NAS
   * no longer holds it. A sleeping process keeps no such timer.
   */
  private scheduleDueWatch(): void {
    if (this.stopped || this.disabled) return;
    const slack = this.deps.dueSlackMs ?? DEFAULT_DUE_SLACK_MS;
    const now = this.deps.clock.now();
    let earliest = Number.POSITIVE_INFINITY;
    for (const at of this.desired.values()) earliest = Math.min(earliest, at);
    if (earliest === Number.POSITIVE_INFINITY) return;
    // An instant already overdue (NAS still holds it, retrying its delivery) is asked about again later.
    const at = Math.max(
      earliest + slack,
      now + (this.dueAttempt === 0 ? slack : this.backoff(this.dueAttempt)),
    );
    if (this.dueTimer && this.dueTimer.at === at) return;
    if (this.dueTimer) this.deps.clock.clearTimeout(this.dueTimer.handle);
    const handle = this.deps.clock.setTimeout(
      () => {
        this.dueTimer = undefined;
        const t = this.deps.clock.now();
        let overdue = 0;
        for (const [jobId, want] of this.desired) {
          if (want + slack > t) continue;
          overdue += 1;
          this.unconfirm(jobId, `no fire arrived for ${formatInstant(want)}; asking NAS`);
        }
        if (overdue === 0) {
          this.dueAttempt = 0;
          return this.scheduleDueWatch();
        }
        this.dueAttempt += 1;
        this.needList = true;
        void this.reconciler.runNow();
      },
      Math.min(at - now, MAX_TIMER_MS),
    );
    this.dueTimer = { handle, at };
  }

  private clearDue(): void {
    if (this.dueTimer) this.deps.clock.clearTimeout(this.dueTimer.handle);
    this.dueTimer = undefined;
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
