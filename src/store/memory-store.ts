import type { Job, RunRecord } from '../jobs/model.js';
import {
  assertSameId,
  assertWithinLimits,
  DEFAULT_LEDGER_RETENTION,
  DEFAULT_RUN_RETENTION,
  jobExists,
  jobNotFound,
  makeView,
  mergeLedger,
  resolveTxnWrite,
  runNotFound,
} from './ledger.js';
import type { DamagedRecord, JobTxnView, JobTxnWrite, LedgerEntry, Owner, Store } from './store.js';

export interface MemoryStoreOptions {
  /** Runs kept per job, newest first (default 100). */
  runRetention?: number;
  /** Settled ledger rows kept per job beside every `claimed` one (default 200). */
  ledgerRetention?: number;
}

interface JobRecord {
  job: Job;
  /** Newest first. */
  ledger: LedgerEntry[];
}

const copy = <T>(value: T): T => structuredClone(value);

/**
 * The Store contract without durability: for tests and for embedding Chronos where losing state on
 * exit is acceptable. Every method completes its work synchronously before its promise settles, so
 * each one is atomic with respect to the others. Values are copied in and out: callers can never
 * mutate stored state through a reference.
 */
export class MemoryStore implements Store {
  readonly kind = 'memory';
  private readonly records = new Map<string, JobRecord>();
  /** Newest first. */
  private readonly runs = new Map<string, RunRecord[]>();
  private readonly runRetention: number;
  private readonly ledgerRetention: number;

  constructor(options: MemoryStoreOptions = {}) {
    this.runRetention = options.runRetention ?? DEFAULT_RUN_RETENTION;
    this.ledgerRetention = options.ledgerRetention ?? DEFAULT_LEDGER_RETENTION;
  }

  async listJobs(): Promise<Job[]> {
    return [...this.records.values()].map((r) => copy(r.job));
  }

  async getJob(id: string): Promise<Job | undefined> {
    const record = this.records.get(id);
    return record && copy(record.job);
  }

  async createJob(job: Job): Promise<Job> {
    if (this.records.has(job.id)) throw jobExists(job.id);
    assertWithinLimits(job);
    this.records.set(job.id, { job: copy(job), ledger: [] });
    return copy(job);
  }

  async updateJob(id: string, mutate: (job: Job) => Job): Promise<Job> {
    const record = this.records.get(id);
    if (!record) throw jobNotFound(id);
    const next = mutate(copy(record.job));
    assertSameId(id, next.id, 'job');
    assertWithinLimits(next);
    record.job = copy(next);
    return copy(next);
  }

  async removeJob(id: string): Promise<boolean> {
    this.runs.delete(id);
    return this.records.delete(id);
  }

  /** Nothing held in memory can be damaged: every write is checked, and nothing is parsed back. */
  async damaged(): Promise<DamagedRecord[]> {
    return [];
  }

  async removeDamagedJob(): Promise<string | undefined> {
    return undefined;
  }

  async transact<T>(jobId: string, fn: (view: JobTxnView) => JobTxnWrite<T>): Promise<T> {
    const record = this.records.get(jobId);
    const write = fn(makeView(record && copy(record.job), record ? copy(record.ledger) : []));
    const job = resolveTxnWrite(jobId, record?.job, write);
    if (job === undefined) return write.result;
    assertWithinLimits(job);
    const ledger = mergeLedger(record?.ledger ?? [], copy(write.ledger ?? []), this.ledgerRetention);
    this.records.set(jobId, { job: copy(job), ledger });
    return write.result;
  }

  async peek(jobId: string): Promise<JobTxnView> {
    const record = this.records.get(jobId);
    return makeView(record && copy(record.job), record ? copy(record.ledger) : []);
  }

  async getLedgerEntry(jobId: string, fireAt: number): Promise<LedgerEntry | undefined> {
    const row = this.records.get(jobId)?.ledger.find((r) => r.fire_at === fireAt);
    return row && copy(row);
  }

  async listClaimed(): Promise<LedgerEntry[]> {
    const claimed: LedgerEntry[] = [];
    for (const record of this.records.values()) {
      for (const row of record.ledger) if (row.status === 'claimed') claimed.push(copy(row));
    }
    return claimed;
  }

  async renewClaims(owner: Owner, until: number): Promise<number> {
    let renewed = 0;
    for (const record of this.records.values()) {
      for (const row of record.ledger) {
        if (row.status !== 'claimed' || row.owner.boot_id !== owner.boot_id || row.expires_at >= until)
          continue;
        row.expires_at = until;
        renewed += 1;
      }
    }
    return renewed;
  }

  async appendRun(run: RunRecord): Promise<void> {
    if (!this.records.has(run.job_id)) throw jobNotFound(run.job_id);
    const existing = this.runs.get(run.job_id) ?? [];
    const next = [copy(run), ...existing.filter((r) => r.run_id !== run.run_id)].slice(0, this.runRetention);
    this.runs.set(run.job_id, next);
  }

  async updateRun(jobId: string, runId: string, mutate: (run: RunRecord) => RunRecord): Promise<RunRecord> {
    const runs = this.runs.get(jobId);
    const index = runs?.findIndex((r) => r.run_id === runId) ?? -1;
    if (!runs || index < 0) throw runNotFound(jobId, runId);
    const next = mutate(copy(runs[index]!));
    assertSameId(runId, next.run_id, 'run');
    assertSameId(jobId, next.job_id, 'job');
    runs[index] = copy(next);
    return copy(next);
  }

  async listRuns(jobId: string, limit?: number): Promise<RunRecord[]> {
    const runs = this.runs.get(jobId) ?? [];
    return copy(limit === undefined ? runs : runs.slice(0, Math.max(0, limit)));
  }

  async getRun(jobId: string, runId: string): Promise<RunRecord | undefined> {
    const run = this.runs.get(jobId)?.find((r) => r.run_id === runId);
    return run && copy(run);
  }

  async close(): Promise<void> {}
}
