import { type Clock, formatInstant, type TimerHandle } from '../clock.js';
import type { Logger } from '../logger.js';
import type { SchedulerProvider } from '../occurrence/provider.js';
import type { Activity } from './activity.js';

/**
 * Why this process is awake: the first request it received before it first settled (`fire`: NAS's fire
 * endpoint; `admin`: the admin API, the CLI or the status page; `other`: any other path), or `start` when
 * it settled before any request came (a deploy, a restart, a health check).
 */
export type WakeCause = 'fire' | 'admin' | 'other' | 'start';
/** What one request says about who wants the process awake. */
export type RequestCause = Exclude<WakeCause, 'start'>;

/** This wake, as `/api/status` and the exit line report it. */
export interface WakeReport {
  cause: WakeCause;
  /** When this process started (epoch ms). */
  wokeAt: number;
  /** Since when nothing has been left to do and every job confirmed armed; null while that is not so. */
  settledAt: number | null;
  awakeMs: number;
  /** What keeps the process up now (work, an unconfirmed arm, the idle window), or null: it is exiting. */
  awakeBecause: string | null;
  /** When it exits if nothing else happens; null when it will not (not settled, or idle exit off). */
  exitAt: number | null;
}

export interface IdleExitDeps {
  clock: Clock;
  activity: Activity;
  logger: Logger;
  provider: () => SchedulerProvider;
  /** CHRONOS_IDLE_EXIT_SECONDS in ms; 0 turns idle exit off (the wake is still reported). */
  idleMs: number;
  /** When this process started (epoch ms); the clock's now when absent. */
  wokeAt?: number;
  /** Called once when the process may stop: settled, nothing in flight, its idle window (if any) over. */
  onIdle: () => void;
}

/**
 * Scale to zero (docs/architecture.md, Awake only while there is work): the one place that decides when the
 * process stops. It may stop only when it is **settled** (no run, NAS call, reconcile or alert delivery in
 * flight, and every desired job confirmed armed at NAS: Never sleep with an unarmed job) and no request is
 * being answered. A wake caused by a fire (or by any request that is not a person's) then stops at once,
 * unless an occurrence is due within the idle window; a wake caused by a person (admin API, CLI, status page), or by a start without any request, waits
 * out the idle window after the last activity, since people send follow-ups. Only with the chronos
 * provider: with builtin nothing would wake the process again.
 */
export class IdleExit {
  private readonly wokeAt: number;
  private cause: WakeCause | undefined;
  /** The last request of a person during this wake: from then on, the idle window applies. */
  private personAt: number | undefined;
  private watching = false;
  private settledAt: number | undefined;
  private timer: { handle: TimerHandle; at: number } | undefined;
  private recheck: TimerHandle | undefined;
  private fired = false;
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly deps: IdleExitDeps) {
    this.wokeAt = deps.wokeAt ?? deps.clock.now();
  }

  /** A request arrived (health checks excepted): the first one before the process settled says why it woke. */
  noteRequest(cause: RequestCause): void {
    if (this.cause === undefined) this.cause = cause;
    if (cause === 'admin') this.personAt = this.deps.clock.now();
  }

  /** Begin watching, once the start-up work is done: before it, nothing is known to be armed. */
  start(): void {
    if (this.watching) return;
    this.watching = true;
    // Any activity restarts the countdown: idle time counts from the last thing that happened.
    this.unsubscribe = this.deps.activity.onChange(() => {
      this.clear();
      this.schedule();
    });
    this.schedule();
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.clear();
    if (this.recheck) this.deps.clock.clearTimeout(this.recheck);
    this.recheck = undefined;
  }

  /** Whether the process could stop right now (its idle window aside), and if not, why. */
  blocker(): string | null {
    const unsettled = this.unsettled();
    if (unsettled !== null) return unsettled;
    return this.deps.activity.snapshot().request > 0 ? 'work in flight' : null;
  }

  report(): WakeReport {
    const now = this.deps.clock.now();
    const unsettled = this.unsettled();
    const settledAt = unsettled === null ? (this.settledAt ?? now) : null;
    let awakeBecause: string | null = unsettled;
    let exitAt: number | null = null;
    if (unsettled === null) {
      if (!this.exitEnabled()) awakeBecause = 'idle exit is off (CHRONOS_IDLE_EXIT_SECONDS=0)';
      else {
        const window = this.window(now);
        const requests = this.deps.activity.snapshot().request > 0;
        awakeBecause = window.why ?? (requests ? 'a request is being answered' : null);
        // A request being answered (this report's own, say) restarts the countdown when it ends.
        exitAt = this.timer && !requests ? this.timer.at : now + window.ms;
      }
    }
    return {
      cause: this.cause ?? 'start',
      wokeAt: this.wokeAt,
      settledAt,
      awakeMs: Math.max(0, now - this.wokeAt),
      awakeBecause,
      exitAt,
    };
  }

  /**
   * Settled: the start-up work done, no run, NAS call, reconcile or alert delivery in flight, and every
   * desired job confirmed armed. Requests do not count: answering one (a status read) is not work left.
   */
  private unsettled(): string | null {
    if (!this.watching) return 'start-up work (recovery, first reconcile) not finished';
    const provider = this.deps.provider();
    if (provider.name !== 'chronos') return 'builtin provider in use';
    const { request: _request, ...work } = this.deps.activity.snapshot();
    if (Object.values(work).some((count) => count > 0)) return 'work in flight';
    if (!provider.settled()) return 'not every job is confirmed armed';
    return null;
  }

  private exitEnabled(): boolean {
    return this.deps.idleMs > 0 && this.deps.provider().name === 'chronos';
  }

  /** How long a settled, quiet process still waits before it stops, and why it waits at all. */
  private window(now: number): { ms: number; why: string | null } {
    const idleMs = this.deps.idleMs;
    const seconds = `${idleMs / 1000} s`;
    if (this.personAt !== undefined)
      return {
        ms: idleMs,
        why: `a person used the admin API (last at ${formatInstant(this.personAt)}): the ${seconds} idle window runs from the last activity`,
      };
    const cause = this.cause ?? 'start';
    if (cause === 'start')
      return {
        ms: idleMs,
        why: `started without a request: the ${seconds} idle window runs from the last activity`,
      };
    const next = this.deps.provider().nextDueAt?.() ?? null;
    if (next !== null && next <= now + idleMs)
      return {
        ms: idleMs,
        why: `an occurrence is due at ${formatInstant(next)}, within the ${seconds} idle window`,
      };
    return { ms: 0, why: null };
  }

  /** Re-evaluate after the current turn: state that activity changes report is updated just after them. */
  private schedule(): void {
    // The builtin provider never settles (its timer is the only trigger): nothing to watch for.
    if (this.recheck || this.fired || this.deps.provider().name !== 'chronos') return;
    this.recheck = this.deps.clock.setTimeout(() => {
      this.recheck = undefined;
      this.evaluate();
    }, 0);
  }

  private evaluate(): void {
    const now = this.deps.clock.now();
    if (this.unsettled() !== null) {
      this.settledAt = undefined;
      this.clear();
      return;
    }
    this.settledAt ??= now;
    // Settled before any request came: a deploy, a restart or a health check started it.
    this.cause ??= 'start';
    if (this.blocker() !== null || !this.exitEnabled()) {
      this.clear();
      return;
    }
    if (this.timer) return;
    const waitMs = this.window(now).ms;
    const handle = this.deps.clock.setTimeout(() => {
      this.timer = undefined;
      if (this.blocker() !== null || this.fired) return;
      this.fired = true;
      const report = this.report();
      this.deps.logger.info(
        {
          wake_cause: report.cause,
          woke_at: formatInstant(report.wokeAt),
          settled_at: formatInstant(report.settledAt),
          awake_seconds: roundSeconds(report.awakeMs),
          idle_ms: waitMs,
        },
        'idle and every job armed; exiting',
      );
      this.deps.onIdle();
    }, waitMs);
    this.timer = { handle, at: now + waitMs };
  }

  private clear(): void {
    if (this.timer) this.deps.clock.clearTimeout(this.timer.handle);
    this.timer = undefined;
  }
}

/** Seconds with one decimal: what a wake costs is read in tenths. */
export function roundSeconds(ms: number): number {
  return Math.round(ms / 100) / 10;
}
