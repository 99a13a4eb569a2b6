import type { Clock, TimerHandle } from '../clock.js';
import type { Logger } from '../logger.js';
import type { SchedulerProvider } from '../occurrence/provider.js';
import type { Activity } from './activity.js';

export interface IdleExitDeps {
  clock: Clock;
  activity: Activity;
  logger: Logger;
  provider: () => SchedulerProvider;
  idleMs: number;
  /** Called once when the process may stop: nothing in flight and every desired job armed at NAS. */
  onIdle: () => void;
}

/**
 * Scale to zero (docs/architecture.md, Never sleep with an unarmed job): with the chronos provider only, exit after `idleMs` with no request in flight,
 * no run going, no NAS call pending, and every desired job confirmed armed. Never with builtin: nothing
 * would wake the process again.
 */
export class IdleExit {
  private timer: TimerHandle | undefined;
  private recheck: TimerHandle | undefined;
  private fired = false;
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly deps: IdleExitDeps) {}

  start(): void {
    // Any activity restarts the countdown: idle time counts from the last thing that happened.
    this.unsubscribe = this.deps.activity.onChange(() => {
      this.clear();
      this.schedule();
    });
    this.schedule();
  }

  stop(): void {
    this.unsubscribe?.();
    this.clear();
    if (this.recheck) this.deps.clock.clearTimeout(this.recheck);
    this.recheck = undefined;
  }

  /** Whether the process could stop right now, and if not, why (for logs and /api/status). */
  blocker(): string | null {
    const provider = this.deps.provider();
    if (provider.name !== 'chronos') return 'builtin provider in use';
    if (this.deps.activity.busy) return 'work in flight';
    if (!provider.settled()) return 'not every job is confirmed armed';
    return null;
  }

  /** Re-evaluate after the current turn: state that activity changes report is updated just after them. */
  private schedule(): void {
    if (this.recheck || this.fired) return;
    this.recheck = this.deps.clock.setTimeout(() => {
      this.recheck = undefined;
      this.evaluate();
    }, 0);
  }

  private evaluate(): void {
    if (this.blocker() !== null) {
      this.clear();
      return;
    }
    if (this.timer) return;
    this.timer = this.deps.clock.setTimeout(() => {
      this.timer = undefined;
      const blocker = this.blocker();
      if (blocker !== null || this.fired) return;
      this.fired = true;
      this.deps.logger.info({ idle_ms: this.deps.idleMs }, 'idle and every job armed; exiting');
      this.deps.onIdle();
    }, this.deps.idleMs);
  }

  private clear(): void {
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}
