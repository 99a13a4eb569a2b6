import type { Clock, TimerHandle } from '../clock.js';
import { ChronosError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { ArmLock, ArmLockHold } from './arm-lock.js';

/**
 * Where the arm lease lives: one row shared by every replica (PostgreSQL: a table, judged by the
 * database's clock, so the replicas' clocks need not agree). Holding it needs no open connection.
 */
export interface LeaseBackend {
  /**
   * Takes the lease for `holder` for `ttlMs` when it is free, expired, or already `holder`'s. Returns the
   * lease's generation, bumped by every take, or null while another holder has it.
   */
  tryAcquire(holder: string, ttlMs: number): Promise<number | null>;
  /** Extends `holder`'s lease; false when it is no longer `holder`'s (it expired and was taken). */
  renew(holder: string, ttlMs: number): Promise<boolean>;
  /** Frees the lease if `holder` still has it. */
  release(holder: string): Promise<void>;
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
    const generation = await this.acquire();
    const othersSince = this.lastGeneration === undefined || generation !== this.lastGeneration + 1;
    this.lastGeneration = generation;
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
              // The next hold sees a generation jump and re-reads what NAS holds.
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
    try {
      return await fn({ othersSince });
    } finally {
      held = false;
      if (renewTimer) clock.clearTimeout(renewTimer);
      // A release that fails leaves the lease to expire; this process may take it again before then.
      await backend.release(holder).catch((err) => logger.warn({ err }, 'releasing the arm lease failed'));
    }
  }

  private async acquire(): Promise<number> {
    const { backend, holder, clock } = this.options;
    const poll = this.options.pollMs ?? { min: 20, max: 500 };
    const maxWait = this.options.maxWaitMs ?? 2 * this.ttlMs;
    const started = clock.now();
    let delay = poll.min;
    for (;;) {
      const generation = await backend.tryAcquire(holder, this.ttlMs);
      if (generation !== null) return generation;
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
 * The lease kept in memory: replicas that share one MemoryStore in a process (tests, embedding). Time
 * is the injected clock's.
 */
export class MemoryLeaseBackend implements LeaseBackend {
  private holder: string | null = null;
  private expiresAt = 0;
  private generation = 0;

  constructor(private readonly clock: Clock) {}

  async tryAcquire(holder: string, ttlMs: number): Promise<number | null> {
    const now = this.clock.now();
    if (this.holder !== null && this.holder !== holder && this.expiresAt > now) return null;
    this.holder = holder;
    this.expiresAt = now + ttlMs;
    this.generation += 1;
    return this.generation;
  }

  async renew(holder: string, ttlMs: number): Promise<boolean> {
    if (this.holder !== holder) return false;
    this.expiresAt = this.clock.now() + ttlMs;
    return true;
  }

  async release(holder: string): Promise<void> {
    if (this.holder === holder) this.holder = null;
  }

  /** Who holds it now (tests). */
  current(): string | null {
    return this.holder !== null && this.expiresAt > this.clock.now() ? this.holder : null;
  }
}
