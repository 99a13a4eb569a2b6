import { ChronosError } from '../errors.js';
import { jobLimitProblems } from '../jobs/limits.js';
import type { Job } from '../jobs/model.js';
import type { JobTxnView, JobTxnWrite, LedgerEntry } from './store.js';

/**
 * Rules shared by every Store implementation, so the memory and file stores cannot drift apart.
 */

export const DEFAULT_RUN_RETENTION = 100;
export const DEFAULT_LEDGER_RETENTION = 200;

/**
 * Applies `updates` (keyed by fire_at) to `existing` and trims it: every `claimed` row is kept (it is
 * the only trace of a run in flight or orphaned), plus the newest `retention` settled rows. Result is
 * newest first. A replay of an occurrence older than the retained rows is still refused by the fire
 * path, because its fire_at no longer matches the job's next_run_at (stale).
 */
export function mergeLedger(
  existing: LedgerEntry[],
  updates: LedgerEntry[],
  retention: number,
): LedgerEntry[] {
  const byFireAt = new Map<number, LedgerEntry>();
  for (const row of existing) byFireAt.set(row.fire_at, row);
  for (const row of updates) byFireAt.set(row.fire_at, row);
  const rows = [...byFireAt.values()].sort((a, b) => b.fire_at - a.fire_at);
  let settledKept = 0;
  return rows.filter((row) => {
    if (row.status === 'claimed') return true;
    settledKept += 1;
    return settledKept <= retention;
  });
}

/**
 * A view over `ledger`. With `readAt`, `ledger` holds only the row a `peek(jobId, readAt)` read (the row at
 * `readAt`, if any): any other question (another instant, the latest row, the claimed rows) throws, since
 * an answer would be a guess.
 */
export function makeView(job: Job | undefined, ledger: LedgerEntry[], readAt?: number): JobTxnView {
  const unread = (what: string) =>
    new Error(`this view of the ledger was read for instant ${readAt} only, not for ${what}`);
  let index: Map<number, LedgerEntry> | undefined;
  return {
    job,
    entry(fireAt) {
      if (readAt !== undefined && fireAt !== readAt) throw unread(`instant ${fireAt}`);
      index ??= new Map(ledger.map((row) => [row.fire_at, row]));
      return index.get(fireAt);
    },
    latest() {
      if (readAt !== undefined) throw unread('the latest row');
      let newest: LedgerEntry | undefined;
      for (const row of ledger) if (!newest || row.fire_at > newest.fire_at) newest = row;
      return newest;
    },
    claimed() {
      if (readAt !== undefined) throw unread('the claimed rows');
      return ledger.filter((row) => row.status === 'claimed');
    },
  };
}

/**
 * Checks a transaction's write against the job it targets and returns the job to persist, or
 * undefined when the write is empty. Ledger rows cannot exist without their job (they live in the
 * job's record), so a ledger-only write to a missing job is `job_not_found`.
 */
export function resolveTxnWrite<T>(
  jobId: string,
  current: Job | undefined,
  write: JobTxnWrite<T>,
): Job | undefined {
  if (write.job === undefined && write.ledger === undefined) return undefined;
  const job = write.job ?? current;
  if (job === undefined) throw jobNotFound(jobId);
  if (job.id !== jobId) {
    throw new ChronosError('internal', `transaction on job "${jobId}" tried to write job "${job.id}"`);
  }
  for (const row of write.ledger ?? []) {
    if (row.job_id !== jobId) {
      throw new ChronosError(
        'internal',
        `transaction on job "${jobId}" tried to write a ledger row of job "${row.job_id}"`,
      );
    }
  }
  return job;
}

export function assertSameId(expected: string, actual: string, what: 'job' | 'run'): void {
  if (expected !== actual) {
    throw new ChronosError(
      'internal',
      `a ${what} update may not change its id ("${expected}" → "${actual}")`,
    );
  }
}

export function jobNotFound(jobId: string): ChronosError {
  return new ChronosError('job_not_found', `job "${jobId}" does not exist`, { job_id: jobId });
}

export function runNotFound(jobId: string, runId: string): ChronosError {
  return new ChronosError('job_not_found', `run "${runId}" of job "${jobId}" does not exist`, {
    job_id: jobId,
    run_id: runId,
  });
}

export function jobExists(jobId: string): ChronosError {
  return new ChronosError('job_exists', `a job with id "${jobId}" already exists`, { job_id: jobId });
}

/**
 * Every store refuses to write a job over the bounds (src/jobs/limits.ts), whoever built it: one such job
 * once made listing overflow the stack for every job, so it must never reach storage.
 */
export function assertWithinLimits(job: Job): void {
  const problems = jobLimitProblems(job);
  if (problems.length === 0) return;
  const summary = problems.map((p) => `${p.path}: ${p.message}`).join('; ');
  throw new ChronosError('validation_failed', `invalid job: ${summary}`, { problems });
}

export function jobDamaged(id: string, file: string, error: string): ChronosError {
  return new ChronosError(
    'job_damaged',
    `job "${id}" is damaged and cannot be used: ${file}: ${error}. Restore the file from a backup and ` +
      `restart, or delete the job (chronos jobs rm ${id}; its file is moved aside, not destroyed).`,
    { id, file, damage: error },
  );
}
