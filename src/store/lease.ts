import type { Clock, TimerHandle } from '../clock.js';
import type { Owner, Store } from './store.js';

/*
 * The claim lease (docs/architecture.md, "The claim lease"). A claim protects its occurrence until its
 * `expires_at`; across hosts nothing else can tell a live owner from a dead one (a pid means nothing on
 * another machine). So a claim is taken for CLAIM_LEASE_MS, and the process holding runs renews the lease
 * of all its claims every LEASE_RENEW_EVERY_MS while any run is going. A process that dies stops renewing:
 * within one lease its claims may be taken over (if their run had not started) or recorded `interrupted`
 * (if it had; a started run is never run again).
 */

/** How long a claim protects its occurrence without renewal. */
export const CLAIM_LEASE_MS = 60_000;
/** Three renewals per lease: one lost to a slow or failed write still leaves two. */
export const LEASE_RENEW_EVERY_MS = 20_000;
/**
 * A renewal that failed (the database restarting) is tried again after 1 s, 2 s, 4 s… up to the period:
 * once the database is back, the claims of runs that lived through the outage are renewed within seconds,
 * before another replica's orphan sweep can take their expired lease for a dead owner's.
 */
export const LEASE_RENEW_RETRY_MS = 1_000;

export interface LeaseKeeperOptions {
  store: Pick<Store, 'renewClaims'>;
  owner: Owner;
  clock: Clock;
  /** Whether runs of this process are going (no renewal is written otherwise). */
  busy: () => boolean;
  leaseMs?: number;
  everyMs?: number;
  onError?: (err: unknown) => void;
}

/** Renews this process's claims while it has runs going. The timer never keeps the process alive. */
export class LeaseKeeper {
  private timer: TimerHandle | undefined;
  private stopped = false;
  /** Renewals failed in a row: the next one comes sooner than the period (LEASE_RENEW_RETRY_MS). */
  private failures = 0;
  private readonly leaseMs: number;
  private readonly everyMs: number;

  constructor(private readonly options: LeaseKeeperOptions) {
    this.leaseMs = options.leaseMs ?? CLAIM_LEASE_MS;
    this.everyMs = options.everyMs ?? LEASE_RENEW_EVERY_MS;
  }

  start(): void {
    this.stopped = false;
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) this.options.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** One renewal now (the timer calls it); returns the rows renewed. */
  async renew(): Promise<number> {
    if (!this.options.busy()) return 0;
    return this.options.store.renewClaims(this.options.owner, this.options.clock.now() + this.leaseMs);
  }

  private schedule(delayMs: number = this.everyMs): void {
    if (this.stopped) return;
    this.timer = this.options.clock.setTimeout(() => {
      void this.renew().then(
        () => {
          this.failures = 0;
          this.schedule();
        },
        (err: unknown) => {
          this.failures += 1;
          this.options.onError?.(err);
          this.schedule(Math.min(this.everyMs, LEASE_RENEW_RETRY_MS * 2 ** (this.failures - 1)));
        },
      );
    }, delayMs);
    this.timer.unref();
  }
}
