import type { Clock, TimerHandle } from '../clock.js';
import type { RunRecord } from '../jobs/model.js';
import type { Logger } from '../logger.js';

export interface OrphanSweepOptions {
  clock: Clock;
  logger: Logger;
  /** Records the runs whose owner is gone `interrupted` (JobRunner.recoverInterrupted). */
  recover: () => Promise<RunRecord[]>;
  /** How often an awake process looks for claims another replica left behind. */
  everyMs?: number;
}

/** Below the claim lease (60 s): a claim left by a dead replica is settled within about a lease and a half. */
export const DEFAULT_ORPHAN_SWEEP_MS = 30_000;

/**
 * Replicas on one database (docs/deploy-postgres.md): a replica that dies mid-run leaves its claim
 * `claimed`, and boot recovery only runs when a process starts. The replicas still running look for
 * such claims while they are awake (every `everyMs`, and after each fire they accepted), and record
 * their runs `interrupted` once the claim's lease has expired (or its owner is provably gone). A started
 * run is never run again. The timer never keeps a process awake: a sleeping deployment settles them at
 * its next start.
 */
export class OrphanSweep {
  private timer: TimerHandle | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = true;

  constructor(private readonly options: OrphanSweepOptions) {}

  start(): void {
    this.stopped = false;
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) this.options.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Sweeps now, or once more after the sweep in progress. */
  soon(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.sweepOnce();
        } while (this.again && !this.stopped);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  private async sweepOnce(): Promise<void> {
    try {
      const recovered = await this.options.recover();
      if (recovered.length > 0)
        this.options.logger.warn(
          {
            count: recovered.length,
            runs: recovered.map((run) => ({ job_id: run.job_id, run_id: run.run_id })),
          },
          'runs interrupted on another replica (its claim lease expired)',
        );
    } catch (err) {
      this.options.logger.warn({ err }, 'looking for runs left by another replica failed; will retry');
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.options.clock.setTimeout(() => {
      this.timer = undefined;
      void this.soon().finally(() => this.schedule());
    }, this.options.everyMs ?? DEFAULT_ORPHAN_SWEEP_MS);
    this.timer.unref();
  }
}
