import type { Clock, TimerHandle } from '../clock.js';
import { ChronosError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { ArmBelief, ArmLock, ArmLockHold, ArmViewUpdate } from './arm-lock.js';

/**
 * Where the arm lease lives, with the view of NAS's arms its holders record (PostgreSQL: a row judged by
 * the database's clock, so the replicas' clocks need not agree, and a table of beliefs per job). Holding
 * it needs no open connection.
 */
export interface LeaseBackend {
  /**
   * Takes the lease for `holder` for `ttlMs` when it is free, expired, or already `holder`'s. Every take
   * bumps the lease's generation. Null while another holder has it.
   */
  tryAcquire(holder: string, ttlMs: number): Promise<LeaseTake | null>;
  /** Extends `holder`'s lease; false when it is no longer `holder`'s (it expired and was taken). */
  renew(holder: string, ttlMs: number): Promise<boolean>;
  /**
   * If `holder` still has the lease: records `changes` in the view (tagged with this hold's generation)
   * and frees the lease, in one step. Otherwise does nothing.
   */
  release(holder: string, changes: ReadonlyMap<string, ArmBelief>): Promise<void>;
  /** The beliefs recorded by holds after generation `after`; every recorded belief when null. */
  readView(after: number | null): Promise<Map<string, ArmBelief>>;
  /** Empties the view and notes `generation` as the reset, if `holder` has the lease. */
  resetView(holder: string, generation: number): Promise<void>;
}

export interface LeaseTake {
  generation: number;
  /**
   * The previous hold ended with its release (which recorded its view). False when it expired instead:
   * its holder died or lost the lease mid-section, and its NAS calls may be missing from the view.
   */
  previousReleased: boolean;
  /** The generation of the hold that last emptied the view (0: never). */
  viewResetAt: number;
}

export interface LeaseArmLockOptions {
  backend: LeaseBackend;
  /** Unique per process: the replica name and its boot id. */
  holder: string;
  clock: Clock;
  logger: Logger;
  /** A holder that dies keeps the others waiting this long at most (renewed while held). */
  ttlMs?: number;
  /** Poll interval while another replica holds the lease: from `min`, doubling up to `max`. */
  pollMs?: { min: number; max: number };
  /** Give up waiting after this long (the caller's heal timer retries the whole section). */
  maxWaitMs?: number;
}

/** Long enough for a section's NAS calls with their retries; renewed every third of it. */
export const DEFAULT_ARM_LEASE_TTL_MS = 30_000;

/**
 * The arm lock of replicas sharing one database: a lease row taken for the duration of each arming
 * section (docs/architecture.md, "Replicas"). Sections of this process queue in memory first, so at
 * most one of its sections polls the lease at a time.
 */
export class LeaseArmLock implements ArmLock {
  readonly shared = true;
  private tail: Promise<unknown> = Promise.resolve();
  /** The generation of this process's last hold: the next hold is `othersSince` unless it is one more. */
  private lastGeneration: number | undefined;
  private readonly ttlMs: number;

  constructor(private readonly options: LeaseArmLockOptions) {
    this.ttlMs = options.ttlMs ?? DEFAULT_ARM_LEASE_TTL_MS;
  }

  hold<T>(fn: (held: ArmLockHold) => Promise<T>): Promise<T> {
    const run = this.tail.then(
      () => this.holdOnce(fn),
      () => this.holdOnce(fn),
    );
    this.tail = run.catch(() => {});
    return run;
  }

  private async holdOnce<T>(fn: (held: ArmLockHold) => Promise<T>): Promise<T> {
    const { backend, holder, clock, logger } = this.options;
    const take = await this.acquire();
    const last = this.lastGeneration;
    this.lastGeneration = take.generation;
    let renewTimer: TimerHandle | undefined;
    let held = true;
    const renew = () => {
      renewTimer = clock.setTimeout(() => {
        void backend.renew(holder, this.ttlMs).then(
          (ok) => {
            if (!ok && held) {
              logger.warn(
                { holder, ttl_ms: this.ttlMs },
                'arm lease lost while held (this section outlived it); another replica may arm meanwhile',
              );
              // This hold's record is not written (the lease is not ours): the next holder, this process
              // included, starts from an empty view.
              this.lastGeneration = undefined;
            }
            if (held) renew();
          },
          (err) => {
            logger.warn({ err }, 'renewing the arm lease failed; retrying');
            if (held) renew();
          },
        );
      }, this.ttlMs / 3);
      renewTimer.unref();
    };
    renew();
    let changes: ReadonlyMap<string, ArmBelief> = new Map();
    try {
      const view = await this.viewSince(take, last).catch((err: unknown) => {
        // Nothing was adopted: the next hold reads the whole view again.
        this.lastGeneration = undefined;
        throw err;
      });
      return await fn({
        othersSince: view !== null,
        view,
        record: (recorded) => {
          changes = recorded;
        },
      });
    } finally {
      held = false;
      if (renewTimer) clock.clearTimeout(renewTimer);
      // A release that fails leaves the lease to expire, unreleased: the next holder (this process
      // included) then distrusts the view and starts from nothing.
      await backend
        .release(holder, changes)
        .catch((err) => logger.warn({ err }, 'releasing the arm lease failed'));
    }
  }

  /** What the other holders recorded since `last` (this process's previous generation), or null. */
  private async viewSince(take: LeaseTake, last: number | undefined): Promise<ArmViewUpdate | null> {
    const { backend, holder, logger } = this.options;
    if (!take.previousReleased) {
      // Its holder may have called NAS and died before recording it: nobody's view can be trusted.
      logger.info(
        { holder, generation: take.generation },
        'the arm lease was taken over after it expired; what replicas knew of NAS arms is dropped, a NAS list re-establishes it',
      );
      await backend.resetView(holder, take.generation);
      return { reset: true, beliefs: new Map() };
    }
    if (last === undefined || take.viewResetAt > last)
      return { reset: true, beliefs: await backend.readView(null) };
    if (take.generation !== last + 1) return { reset: false, beliefs: await backend.readView(last) };
    return null;
  }

  private async acquire(): Promise<LeaseTake> {
    const { backend, holder, clock } = this.options;
    const poll = this.options.pollMs ?? { min: 20, max: 500 };
    const maxWait = this.options.maxWaitMs ?? 2 * this.ttlMs;
    const started = clock.now();
    let delay = poll.min;
    for (;;) {
      const take = await backend.tryAcquire(holder, this.ttlMs);
      if (take !== null) return take;
      if (clock.now() - started >= maxWait) {
        throw new ChronosError(
          'store_unavailable',
          `another replica has held the arm lease for over ${maxWait} ms; arming is retried later`,
          { holder },
        );
      }
      await new Promise<void>((resolve) => clock.setTimeout(resolve, delay));
      delay = Math.min(poll.max, delay * 2);
    }
  }
}

/**
 * The lease and its view kept in memory: replicas that share one MemoryStore in a process (tests,
 * embedding). Time is the injected clock's.
 */
export class MemoryLeaseBackend implements LeaseBackend {
  private holder: string | null = null;
  private expiresAt = 0;
  private generation = 0;
  private releasedGeneration = 0;
  private viewResetAt = 0;
  private readonly view = new Map<string, { belief: ArmBelief; generation: number }>();

  constructor(private readonly clock: Clock) {}

  async tryAcquire(holder: string, ttlMs: number): Promise<LeaseTake | null> {
    const now = this.clock.now();
    if (this.holder !== null && this.holder !== holder && this.expiresAt > now) return null;
    this.holder = holder;
    this.expiresAt = now + ttlMs;
    this.generation += 1;
    return {
      generation: this.generation,
      previousReleased: this.releasedGeneration === this.generation - 1,
      viewResetAt: this.viewResetAt,
    };
  }

  async renew(holder: string, ttlMs: number): Promise<boolean> {
    if (this.holder !== holder) return false;
    this.expiresAt = this.clock.now() + ttlMs;
    return true;
  }

  async release(holder: string, changes: ReadonlyMap<string, ArmBelief>): Promise<void> {
    if (this.holder !== holder) return;
    for (const [jobId, belief] of changes) this.view.set(jobId, { belief, generation: this.generation });
    this.holder = null;
    this.releasedGeneration = this.generation;
  }

  async readView(after: number | null): Promise<Map<string, ArmBelief>> {
    const out = new Map<string, ArmBelief>();
    for (const [jobId, row] of this.view)
      if (after === null || row.generation > after) out.set(jobId, row.belief);
    return out;
  }

  async resetView(holder: string, generation: number): Promise<void> {
    if (this.holder !== holder) return;
    this.view.clear();
    this.viewResetAt = generation;
  }

  /** Who holds it now (tests). */
  current(): string | null {
    return this.holder !== null && this.expiresAt > this.clock.now() ? this.holder : null;
  }
}
