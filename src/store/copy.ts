import { isDeepStrictEqual } from 'node:util';
import { isChronosError } from '../errors.js';
import type { Job } from '../jobs/model.js';
import type { LedgerEntry, Store } from './store.js';

/*
 * Moving a Chronos from a data directory to a database (`chronos store copy`): jobs, their ledger and their
 * run history, from one store into another. Idempotent: run twice, the second run changes nothing. It never
 * overwrites newer state: a job whose `updated_at` in the target is later than in the source (changed
 * there since, e.g. by a Chronos already running on the target) is left as it is, with its ledger and runs,
 * and reported. Ledger rows and runs already in the target are kept as they are (the target's copy of an
 * occurrence is never replaced); only the missing ones are added.
 */

export interface CopyReport {
  jobs: { copied: string[]; updated: string[]; unchanged: string[] };
  /** Jobs left alone, with why. */
  refused: { job_id: string; reason: string }[];
  ledgerRows: number;
  runs: number;
}

export interface CopySource {
  store: Store;
  /** Every ledger row of a job (the Store interface reads rows one occurrence at a time). */
  ledger(jobId: string): Promise<LedgerEntry[]>;
}

export async function copyStore(source: CopySource, target: Store): Promise<CopyReport> {
  const report: CopyReport = {
    jobs: { copied: [], updated: [], unchanged: [] },
    refused: [],
    ledgerRows: 0,
    runs: 0,
  };
  for (const damaged of await source.store.damaged('job')) {
    report.refused.push({ job_id: damaged.job_id, reason: `damaged in the source (${damaged.error})` });
  }
  for (const job of await source.store.listJobs()) {
    let existing: Job | undefined;
    try {
      existing = await target.getJob(job.id);
    } catch (err) {
      if (!isChronosError(err, 'store_corrupt')) throw err;
      report.refused.push({
        job_id: job.id,
        reason: 'damaged in the target: restore or delete it there first',
      });
      continue;
    }
    if (existing && existing.updated_at > job.updated_at) {
      report.refused.push({
        job_id: job.id,
        reason:
          `newer in the target (updated_at ${new Date(existing.updated_at).toISOString()} > ` +
          `${new Date(job.updated_at).toISOString()}): left as it is`,
      });
      continue;
    }
    const rows = await source.ledger(job.id);
    const added = await target.transact(job.id, (view) => {
      const missing = rows.filter((row) => view.entry(row.fire_at) === undefined);
      const sameJob = view.job !== undefined && isDeepStrictEqual(view.job, job);
      if (sameJob && missing.length === 0) return { result: 0 };
      return { job: sameJob ? undefined : job, ledger: missing, result: missing.length };
    });
    report.ledgerRows += added;
    if (!existing) report.jobs.copied.push(job.id);
    else if (isDeepStrictEqual(existing, job)) report.jobs.unchanged.push(job.id);
    else report.jobs.updated.push(job.id);

    // Oldest first, so that the newest ends up first in the target's history, as in the source's.
    const runs = (await source.store.listRuns(job.id)).reverse();
    for (const run of runs) {
      if (await target.getRun(job.id, run.run_id)) continue;
      await target.appendRun(run);
      report.runs += 1;
    }
  }
  return report;
}
