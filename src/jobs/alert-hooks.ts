import type { AlertRecord } from './alerts.js';
import type { Job, RunRecord } from './model.js';

// What the run path (src/run/, src/occurrence/) needs of alerts, declared here so it stays inward of
// src/alerts/, which implements it; main.ts connects the two.

/**
 * How a run ended, as alerts see it. `final_failure`: failed (or timed out) with no retry left;
 * `retrying`: failed with a retry pending; `missed`: skipped by the misfire rule, or interrupted by the end
 * of its process; `other`: nothing alerts follow (skipped by concurrency, replaced by a newer run).
 */
export type RunAlertKind = 'success' | 'final_failure' | 'retrying' | 'missed' | 'other';

/** The alert hooks the run path calls. Implemented by AlertService (src/alerts/service.ts); main.ts hands it to the runner and the engine. */
export interface RunAlerts {
  /** The alerts a run's end raises, on `job` as it will be after the run (summary applied, alert state not yet). */
  raise(job: Job, run: RunRecord, kind: RunAlertKind, now: number): AlertRecord[];
  /**
   * Under the job's lock, on the fresh job after the run's summary: its alert state after this run, pointing
   * at the run when `run.alerts` holds one still pending (so a starting process finds it).
   */
  settle(job: Job, run: RunRecord, kind: RunAlertKind, now: number): Job;
  /** Hands alerts already written with their run to delivery. Never awaited by the run. */
  dispatch(jobId: string, runId: string, alerts: readonly AlertRecord[]): void;
}
