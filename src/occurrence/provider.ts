import type { Job } from '../jobs/model.js';

export interface ReconcileSummary {
  armed: number;
  cancelled: number;
  unchanged: number;
  failed: number;
  /** Misfire handling done during this reconcile (runs started or occurrences recorded missed). */
  misfires: number;
  /** Whether NAS's own list of arms was known (orphans can only be cancelled then). */
  trusted: boolean;
  at: number;
  durationMs: number;
}

export interface ProviderStatus {
  provider: 'chronos' | 'builtin';
  /** Why this provider is in use when it is not the one configured (fallback). */
  reason: string | null;
  /** Last observed NAS reachability: null when never called (or builtin). */
  nasReachable: boolean | null;
  lastReconcile: ReconcileSummary | null;
  armedCount: number;
  desiredCount: number;
  lastArmAt: number | null;
  /** Builtin: when the in-process timer fires next. */
  nextWakeAt: number | null;
  /** Desired jobs whose arm no NAS `list` has confirmed yet, with the reason (always empty for builtin). */
  unconfirmed: UnconfirmedArm[];
}

export interface UnconfirmedArm {
  job_id: string;
  /** The instant Chronos wants armed. */
  fire_at: number;
  reason: string;
}

/**
 * What triggers fires (docs/architecture.md). `chronos` arms one-shots at NAS and is woken by its webhook; `builtin` holds
 * one precise in-process timer. Both feed the same claim → run path (src/occurrence/engine.ts).
 */
export interface SchedulerProvider {
  readonly name: 'chronos' | 'builtin';
  /** Decided without any network call. */
  isAvailable(): { ok: true } | { ok: false; reason: string };
  /** Reconciles once and returns; the chronos provider leaves no periodic timer behind. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** A job was created, changed, paused or removed: reconcile soon (debounced, single-flight). */
  onJobsChanged(): void;
  reconcile(): Promise<ReconcileSummary>;
  /** Make sure this job's current instant (next run or pending retry) is armed, or disarmed if none. */
  arm(job: Job): Promise<void>;
  /** The job is gone or inactive: remove its arm. */
  disarm(jobId: string): Promise<void>;
  /** Whether NAS acknowledged the job's current instant (a `list` may still have to confirm it). */
  isArmed(jobId: string): boolean;
  /**
   * NAS delivered a fire for this job and got a 2xx (any status: accepted, duplicate, stale, gone,
   * inactive): that arm is consumed, and NAS may still be finishing the delivery's bookkeeping.
   */
  onDelivered?(jobId: string, fireAt: number | undefined): void;
  /** Every desired job is confirmed armed and nothing is pending (idle exit needs this). */
  settled(): boolean;
  /**
   * The earliest instant this provider wants armed (overdue ones included), or null: a process woken by
   * a fire stays up for one that is due soon (src/scheduler/idle-exit.ts).
   */
  nextDueAt?(): number | null;
  status(): ProviderStatus;
}
