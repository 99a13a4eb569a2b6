import { jobAfterInterruptedRun, jobAfterRun, type RunVerdict } from '../jobs/lifecycle.js';
import type { Job, RunRecord } from '../jobs/model.js';
import type { LedgerEntry, LedgerStatus, Store } from '../store/store.js';

// Settling an occurrence: the end of its ledger row's life, written together with what the run leaves
// in the job (summary, retry, completion: src/jobs/lifecycle.ts), so a crash cannot leave one without
// the other.

/**
 * Sets the status of an occurrence's row (typically `claimed` → `finished` or `interrupted`).
 * Returns the updated row, or undefined when the row (or its job) no longer exists.
 */
export async function settleOccurrence(
  store: Store,
  jobId: string,
  fireAt: number,
  status: LedgerStatus,
): Promise<LedgerEntry | undefined> {
  return store.transact(jobId, (view) => {
    const row = view.entry(fireAt);
    if (view.job === undefined || row === undefined) return { result: undefined };
    const settled: LedgerEntry = { ...row, status };
    return { ledger: [settled], result: settled };
  });
}

/**
 * Settles a row still `claimed` (by `runId`, when given) without touching the job; a row someone else
 * already settled, or claimed again since, is left as it is.
 */
export async function settleClaimed(
  store: Store,
  jobId: string,
  fireAt: number,
  status: LedgerStatus,
  runId?: string,
): Promise<void> {
  await store.transact(jobId, (view) => {
    const row = view.entry(fireAt);
    if (view.job === undefined || row?.status !== 'claimed' || (runId !== undefined && row.run_id !== runId))
      return { result: undefined };
    return { ledger: [{ ...row, status }], result: undefined };
  });
}

/**
 * A run recorded to its end: its row settles `finished` and the job takes the run's summary, retry and
 * completion in one write. Returns the job as stored, or `gone` when it was removed meanwhile.
 */
export function settleRun(
  store: Store,
  jobId: string,
  fireAt: number,
  run: RunRecord,
  verdict: RunVerdict,
  /** Applied last, in the same write: the job's alert state after the run (src/alerts/). */
  then?: (job: Job) => Job,
): Promise<Job | 'gone'> {
  return store.transact<Job | 'gone'>(jobId, (view) => {
    const current = view.job;
    if (current === undefined) return { result: 'gone' };
    const row = view.entry(fireAt);
    // Written again after a commit whose reply was lost (the runner retries while the store is
    // unavailable): the run is already counted, and counting it twice would double a failure streak.
    const counted =
      row?.status === 'finished' &&
      row.run_id === run.run_id &&
      current.last_run_at === run.started_at &&
      current.last_status === run.status;
    if (counted) return { result: current };
    // `interrupted` too: another process may have given up on this run after its TTL, wrongly.
    const settle = row !== undefined && (row.status === 'claimed' || row.status === 'interrupted');
    const summarised = jobAfterRun(current, run, verdict);
    const next = then ? then(summarised) : summarised;
    return { job: next, ledger: settle ? [{ ...row, status: 'finished' }] : [], result: next };
  });
}

/**
 * Boot recovery recorded `run` interrupted: its row settles `interrupted` and the run enters the job's
 * summary. Only the claim the run belonged to: another process may have recovered the occurrence since.
 */
export async function settleInterrupted(
  store: Store,
  row: LedgerEntry,
  run: RunRecord,
  /** Applied last, in the same write: the job's alert state after the run (src/alerts/). */
  then?: (job: Job) => Job,
): Promise<void> {
  await store.transact(row.job_id, (view) => {
    const job = view.job;
    const current = view.entry(row.fire_at);
    if (job === undefined || current?.status !== 'claimed' || current.run_id !== row.run_id)
      return { result: undefined };
    const next = jobAfterInterruptedRun(job, run);
    return {
      job: then ? then(next) : next,
      ledger: [{ ...current, status: 'interrupted' }],
      result: undefined,
    };
  });
}
