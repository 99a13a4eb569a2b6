// src/store/ owns durable state: the Store interface (this file), the file and memory stores, atomic
// writes, the cross-process lock, ledger retention and claim owners. It decides no job or occurrence rule.
import type { Job, RunRecord, Trigger } from '../jobs/model.js';

/**
 * The process that holds a claim. `boot_id` is random per process: inside containers Chronos is
 * often pid 1 on every start, so a pid alone cannot tell a dead owner from a live one.
 */
export interface Owner {
  boot_id: string;
  pid: number;
  host: string;
}

/**
 * `claimed`: a run for this occurrence is (or was) in flight.
 * `finished`: it ran to an end (any run status). `skipped` / `missed`: recorded without a run.
 * `interrupted`: its owner died before finishing.
 */
export type LedgerStatus = 'claimed' | 'finished' | 'skipped' | 'missed' | 'interrupted';

/** One row of the fire ledger, keyed by (job_id, fire_at). Admits each occurrence once. */
export interface LedgerEntry {
  job_id: string;
  fire_at: number;
  status: LedgerStatus;
  trigger: Trigger;
  run_id: string;
  owner: Owner;
  claimed_at: number;
  /** After this instant a still-`claimed` entry may be recovered even if its owner looks alive. */
  expires_at: number;
}

/** The state a per-job transaction sees: the job and its ledger, read fresh under the job's lock. */
export interface JobTxnView {
  readonly job: Job | undefined;
  entry(fire_at: number): LedgerEntry | undefined;
  /** The entry with the latest fire_at, whatever its status. */
  latest(): LedgerEntry | undefined;
  /** Entries still `claimed` (runs in flight or orphaned by a dead owner). */
  claimed(): LedgerEntry[];
}

export interface TransactOptions {
  /** Go ahead of queued ordinary writes: claims, which a run's start and NAS's 202 wait for. */
  urgent?: boolean;
  /**
   * The caller's own first look at this job: its `peek`, just made, or its `remembered` view. A store may
   * decide on it and write only if nothing was written to the job since (a compare-and-set: PostgreSQL
   * saves its lock round trips so), deciding again on fresh state otherwise; `fn` may then be called more
   * than once, and a decision to write nothing may be taken on a fresh lock-free read. Stores that read
   * fresh state cheaply ignore it.
   */
  basis?: JobTxnView;
}

export interface JobTxnWrite<T> {
  /** Replace the job (it must exist in the view, or be created by this write). */
  job?: Job;
  /** Insert or replace ledger rows (by fire_at). */
  ledger?: LedgerEntry[];
  result: T;
}

/**
 * A stored job or run history that cannot be read as one: it does not parse, cannot be opened, or breaks
 * the job bounds (src/jobs/limits.ts). Damage stays with its job: every other job is listed, armed and
 * fired as usual. What Chronos does with each kind: docs/operations.md, "What Chronos does when…".
 */
export interface DamagedRecord {
  job_id: string;
  /**
   * `job`: the job itself; it is left where it is (never overwritten), is not listed, armed or run, and
   * stays reported until it is restored or deleted. `history`: its run history, moved aside; the job runs
   * on with a new history, and the report stays until the operator removes the moved file.
   */
  kind: 'job' | 'history';
  /** Where its bytes are now (a path for the file store). */
  file: string;
  /** Why it cannot be read: the parse error, the I/O error, or the bound it breaks. */
  error: string;
}

/**
 * Durable state. Every method is atomic; writes are serialised within the process and across
 * processes sharing the same backing storage. Implementations: src/store/file-store.ts; all pass
 * test/store/contract.ts.
 */
export interface Store {
  readonly kind: string;

  // Jobs
  /** Every readable job; damaged ones are left out and reported by `damaged()`. */
  listJobs(): Promise<Job[]>;
  /** Throws `store_corrupt` (with `details.job_id`, `details.path`, `details.problem`) for a damaged job. */
  getJob(id: string): Promise<Job | undefined>;
  /**
   * Throws ChronosError `job_exists` when the id is taken, `job_damaged` when a damaged record holds it (it
   * is never replaced), and `validation_failed` for a job over the bounds of src/jobs/limits.ts (which
   * every write checks: nothing over them is ever stored).
   */
  createJob(job: Job): Promise<Job>;
  /** Read-modify-write under the job's lock. Throws `job_not_found`. */
  updateJob(id: string, mutate: (job: Job) => Job): Promise<Job>;
  /**
   * Removes the job with its ledger and run history. A damaged job's record is moved aside, not destroyed
   * (as `removeDamagedJob` does). Returns false when it did not exist.
   */
  removeJob(id: string): Promise<boolean>;
  /**
   * Jobs and histories that cannot be read, found by listing or by any read (newest knowledge); only one
   * kind when `kind` is given (reconcile needs the jobs, and moved histories cost a read each).
   */
  damaged(kind?: DamagedRecord['kind']): Promise<DamagedRecord[]>;
  /**
   * Moves a damaged job's record aside (never deletes its bytes) and forgets the job with its history.
   * Returns where the bytes went, or undefined when `id` is not a damaged job.
   */
  removeDamagedJob(id: string): Promise<string | undefined>;

  /**
   * The one primitive the fire path needs: read the job and its ledger fresh, decide, and persist the
   * job and ledger rows in ONE durable write (claim + advance + count together, docs/architecture.md). `fn` must be
   * synchronous and free of side effects; its return value's `result` is passed through. When `fn`
   * returns neither `job` nor `ledger`, nothing is written.
   */
  transact<T>(jobId: string, fn: (view: JobTxnView) => JobTxnWrite<T>, options?: TransactOptions): Promise<T>;

  /** Ledger row lookup without taking a lock (fast path for duplicates; the claim re-checks under lock). */
  getLedgerEntry(jobId: string, fireAt: number): Promise<LedgerEntry | undefined>;
  /**
   * The job and its ledger in one lock-free read: the fire path's first look, which decides most replies
   * (gone, inactive, duplicate, stale, early) without a write. A claim re-decides under the lock.
   * With `fireAt` (the occurrence a delivery names) a store may read only what deciding it needs: the job and
   * the row at `fireAt`. Any other question to that view (another instant, `latest()`, `claimed()`) may then
   * throw rather than guess; a caller that needs them peeks without `fireAt`.
   */
  peek(jobId: string, fireAt?: number): Promise<JobTxnView>;
  /**
   * Optional: the job as this process last read or wrote it, made without a read, with no row known at
   * `fireAt` (the view assumes none). Never the truth: only a claim may be decided on it, written with the
   * view as `basis`, whose compare-and-set fails when the job was written since or a row exists at the
   * instant written (the decision is then made again on fresh state). Any other answer needs a `peek`.
   * Undefined when the job is not remembered. PostgreSQL offers it: it saves a warm process's fire a round
   * trip.
   */
  remembered?(jobId: string, fireAt: number): JobTxnView | undefined;
  /** Every `claimed` row across all jobs (boot recovery of runs left by a dead process). */
  listClaimed(): Promise<LedgerEntry[]>;
  /**
   * Extends to `until` the lease (`expires_at`) of every row still `claimed` by `owner` whose lease ends
   * sooner: its runs are in progress (src/store/lease.ts). Returns the number of rows renewed.
   */
  renewClaims(owner: Owner, until: number): Promise<number>;

  // Run history, newest first, retained per job (oldest dropped beyond the retention).
  appendRun(run: RunRecord): Promise<void>;
  /** Throws `job_not_found` if the run does not exist. */
  updateRun(jobId: string, runId: string, mutate: (run: RunRecord) => RunRecord): Promise<RunRecord>;
  listRuns(jobId: string, limit?: number): Promise<RunRecord[]>;
  getRun(jobId: string, runId: string): Promise<RunRecord | undefined>;

  close(): Promise<void>;
}
