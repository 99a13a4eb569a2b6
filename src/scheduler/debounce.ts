import type { Clock, TimerHandle } from '../clock.js';

/**
 * Debounced, single-flight execution: calls within `delayMs` collapse into one run; a call made while a
 * run is going schedules exactly one more run after it, so no change is ever missed and runs never overlap.
 */
export class SingleFlight {
  private timer: TimerHandle | undefined;
  private running: Promise<void> | undefined;
  private again = false;

  constructor(
    private readonly clock: Clock,
    private readonly delayMs: number,
    private readonly task: () => Promise<void>,
    /** A failing task must not become an unhandled rejection (it would end the process). */
    private readonly onError: (err: unknown) => void = () => {},
  ) {}

  request(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      void this.runNow();
    }, this.delayMs);
  }

  /** Run now (or join the run in progress and then run once more). */
  runNow(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    if (this.timer) {
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.task().catch(this.onError);
        } while (this.again);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  get pending(): boolean {
    return this.timer !== undefined || this.running !== undefined;
  }

  cancel(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}
