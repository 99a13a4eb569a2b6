import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, fstatSync, openSync, writeSync } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, rename } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ChronosError, errorMessage, isChronosError } from '../errors.js';
import { jobLimitProblems } from '../jobs/limits.js';
import { JOB_ID_PATTERN, type Job, type RunRecord } from '../jobs/model.js';
import {
  DIR_MODE,
  errnoCode,
  FILE_MODE,
  readTextIfExists,
  removeIfExists,
  removeTempFiles,
  replaceFile,
  SyncBatcher,
  syncDir,
  unavailable,
} from './atomic-file.js';
import {
  assertSameId,
  assertWithinLimits,
  DEFAULT_LEDGER_RETENTION,
  DEFAULT_RUN_RETENTION,
  jobDamaged,
  jobExists,
  jobNotFound,
  makeView,
  mergeLedger,
  resolveTxnWrite,
  runNotFound,
} from './ledger.js';
import { type BrokenLock, FileLock } from './lock.js';
import { currentOwner } from './owner.js';
import type { DamagedRecord, JobTxnView, JobTxnWrite, LedgerEntry, Store, TransactOptions } from './store.js';
import { WriteQueue } from './write-queue.js';

/*
 * Data directory layout (format version 1):
 *
 *   jobs/<id>.json   { "version": 1, "job": Job, "ledger": LedgerEntry[] }  ledger newest first
 *   runs/<id>.json   { "version": 1, "runs": RunRecord[] }                   newest first, ≤ runRetention
 *   chronos.lock     exists while a writer (any process) holds the store; JSON owner + acquired_at +
 *                    lease_ms, its mtime renewed by the holder (a lock not renewed within its lease is broken)
 *   chronos.lock.break   exists for a few syscalls while a dead writer's lock is being removed
 *   write-token      random value replaced after every job-file write (see "List cache" below)
 *   .<name>.<hex>.tmp    temp files of in-progress atomic writes; leftovers of a crash are deleted at open
 *   damaged/jobs/<id>.<time>.<hex>.json   a damaged job file, moved here when the job is deleted
 *   damaged/runs/<id>.<time>.<hex>.json   a damaged run history, moved here when it was found
 *
 * A job and its ledger share one file so that a claim (ledger row + advanced next_run_at + repeat
 * count) is a single atomic file replacement whose cost depends on that job alone, not on how many
 * jobs exist. Run history lives apart because it is larger and written on a different rhythm.
 *
 * Writers: one in-process queue, then the cross-process lock file; every read-modify-write re-reads
 * its file after taking the lock. Readers take no lock: atomic renames mean they always see a whole
 * file.
 *
 * List cache: listJobs/listClaimed read every job file once and keep {job, claimed rows}. Own writes
 * patch it. Another process's write is detected through `write-token`: each writer replaces it after
 * its job-file write, still under the lock. A list compares the token with the one its cache matches,
 * and a writer compares (under the lock, before writing) the current token with its cache's: any
 * difference means someone else wrote, and the cache is dropped. Unlike a directory mtime, a token
 * cannot collide when two writes land within one file-system timestamp tick.
 *
 * Damage: a job file that cannot be read (bad JSON, a directory in its place, a job over the bounds of
 * src/jobs/limits.ts) belongs to its job alone. Listing leaves it out and reports it (`damaged()`, and
 * `onDamaged` once per file and problem); reads of that job throw `store_corrupt`; nothing ever writes over
 * it; deleting the job moves it to damaged/jobs/. A damaged run history is moved to damaged/runs/ the first
 * time it is read or written, and the job goes on with a new one.
 */

export interface FileStoreOptions {
  dir: string;
  /** Runs kept per job, newest first (default 100). */
  runRetention?: number;
  /** Settled ledger rows kept per job beside every `claimed` one (default 200). */
  ledgerRetention?: number;
  /**
   * Longest wait for another process's write lock before `store_locked` (default 5000 ms), when that
   * process keeps renewing it. A lock that is not renewed is waited out until its lease ends, then broken.
   */
  lockTimeoutMs?: number;
  /** How long the write lock stays valid without renewal (default DEFAULT_LOCK_LEASE_MS, 10 s). */
  lockLeaseMs?: number;
  /** Told when a lock left by another process is broken (its holder dead, or its lease run out). */
  onLockBroken?: (broken: BrokenLock) => void;
  /**
   * How long the write lock is kept after the last write (default 50 ms): writes that follow each other
   * closely (a fire's claim, its run record, its summary) then skip creating and deleting the lock file,
   * which costs ~0.2 ms here. Another process waits at most this much longer after a quiet moment, and
   * at most ~500 ms under a steady stream of writes (the lock is then released between rounds).
   */
  lockLingerMs?: number;
  /** Told once per damaged file and problem, as it is found (the server logs it). */
  onDamaged?: (record: DamagedRecord) => void;
}

const FORMAT_VERSION = 1;
/** Longest the write lock is kept across consecutive rounds before it is released for others. */
const LOCK_MAX_HOLD_MS = 500;
const LOCK_YIELD_MS = 10;
/** Job files read at once when listing. */
const LIST_READ_BATCH = 64;
/**
 * Read errors that belong to one file (something is wrong with it, or in its place), not to the store as a
 * whole: EMFILE, ENOMEM and the like pass, and fail the operation rather than condemn the file.
 */
const FILE_DAMAGE_ERRNOS = new Set(['EISDIR', 'EACCES', 'EPERM', 'EIO', 'ELOOP', 'EINVAL', 'EFBIG']);

interface JobDoc {
  version: 1;
  job: Job;
  ledger: LedgerEntry[];
}

interface RunsDoc {
  version: 1;
  runs: RunRecord[];
}

interface CachedJob {
  job: Job;
  claimed: LedgerEntry[];
}

/** Job-file changes made by one locked write, applied to the list cache once the write is done. */
type PendingCacheChanges = Map<string, CachedJob | null>;

interface ListCache {
  jobs: Map<string, CachedJob>;
  /** Job files that could not be read, by job id. */
  damaged: Map<string, DamagedRecord>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const INSTANTS = ['created_at', 'updated_at'] as const;
const OPTIONAL_INSTANTS = ['next_run_at', 'retry_at', 'last_run_at'] as const;

/**
 * The fields every loop over jobs and every API view relies on, checked cheaply: a hand-edited file with an
 * instant that is not a number would otherwise throw a RangeError (toISOString) in the middle of a list.
 */
function jobShapeProblem(job: Record<string, unknown>): string | null {
  for (const field of ['schedule', 'timezone', 'state'] as const) {
    if (typeof job[field] !== 'string') return `${field} must be a string`;
  }
  if (typeof job['enabled'] !== 'boolean') return 'enabled must be true or false';
  const target = job['target'];
  if (!isRecord(target) || typeof target['type'] !== 'string') return 'target must be an object with a type';
  for (const field of ['repeat', 'misfire'] as const) {
    if (!isRecord(job[field])) return `${field} must be an object`;
  }
  const isInstant = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && Math.abs(v) <= 8.64e15;
  for (const field of INSTANTS) if (!isInstant(job[field])) return `${field} must be an instant (epoch ms)`;
  for (const field of OPTIONAL_INSTANTS) {
    if (job[field] !== null && !isInstant(job[field]))
      return `${field} must be an instant (epoch ms) or null`;
  }
  return null;
}

function cacheEntry(doc: JobDoc): CachedJob {
  return { job: doc.job, claimed: doc.ledger.filter((row) => row.status === 'claimed') };
}

export class FileStore implements Store {
  readonly kind = 'file';
  readonly dir: string;
  private readonly jobsDir: string;
  private readonly runsDir: string;
  private readonly tokenPath: string;
  private tokenFd: number | undefined;
  private readonly lockLingerMs: number;
  private lingering: NodeJS.Timeout | undefined;
  private yieldUntil = 0;
  private readonly syncs = new SyncBatcher();
  /** Directories renamed into during the current round, fsynced once at its end. */
  private readonly unsyncedDirs = new Set<FileHandle>();
  private readonly runRetention: number;
  private readonly ledgerRetention: number;
  private readonly lock: FileLock;
  private readonly queue: WriteQueue<PendingCacheChanges>;
  private closed = false;
  private readonly onDamaged: ((record: DamagedRecord) => void) | undefined;
  /** `file` + problem already told to onDamaged. */
  private readonly reported = new Set<string>();
  /** Where damaged files are moved (damaged/jobs/, damaged/runs/); nothing there is ever deleted. */
  private readonly damagedDir: string;

  private cache: ListCache | undefined;
  /** The write-token value the cache is known to reflect. */
  private cacheToken: string | undefined;
  /** Bumped by each own job-file write; a list reload started before a write must not install. */
  private writeSeq = 0;

  private constructor(
    options: FileStoreOptions,
    private readonly jobsDirHandle: FileHandle,
    private readonly runsDirHandle: FileHandle,
  ) {
    this.dir = resolve(options.dir);
    this.jobsDir = join(this.dir, 'jobs');
    this.runsDir = join(this.dir, 'runs');
    this.tokenPath = join(this.dir, 'write-token');
    this.runRetention = options.runRetention ?? DEFAULT_RUN_RETENTION;
    this.ledgerRetention = options.ledgerRetention ?? DEFAULT_LEDGER_RETENTION;
    this.lock = new FileLock(
      join(this.dir, 'chronos.lock'),
      currentOwner(),
      options.lockTimeoutMs ?? 5000,
      undefined,
      options.lockLeaseMs,
      options.onLockBroken,
    );
    this.queue = new WriteQueue((round) => this.commitRound(round));
    this.lockLingerMs = options.lockLingerMs ?? 50;
    this.onDamaged = options.onDamaged;
    this.damagedDir = join(this.dir, 'damaged');
  }

  /**
   * Creates the directories if needed and removes temp files left by a crashed writer (under the
   * lock, so a live writer's temp file is never taken away). Job files are read lazily.
   */
  static async open(options: FileStoreOptions): Promise<FileStore> {
    const dir = resolve(options.dir);
    const jobsDir = join(dir, 'jobs');
    const runsDir = join(dir, 'runs');
    let jobsHandle: FileHandle | undefined;
    let runsHandle: FileHandle | undefined;
    try {
      await mkdir(jobsDir, { recursive: true, mode: DIR_MODE });
      await mkdir(runsDir, { recursive: true, mode: DIR_MODE });
      jobsHandle = await open(jobsDir, 'r');
      runsHandle = await open(runsDir, 'r');
    } catch (err) {
      await jobsHandle?.close();
      throw unavailable('open data directory', dir, err);
    }
    const store = new FileStore(options, jobsHandle, runsHandle);
    try {
      await store.exclusive('*', async () => {
        await removeTempFiles(jobsDir);
        await removeTempFiles(runsDir);
      });
    } catch (err) {
      await store.close();
      throw err instanceof ChronosError ? err : unavailable('clean up', dir, err);
    }
    return store;
  }

  // ---- jobs ----

  async listJobs(): Promise<Job[]> {
    const all = await this.loadAll();
    return [...all.jobs.values()]
      .map((entry) => structuredClone(entry.job))
      .sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  async getJob(id: string): Promise<Job | undefined> {
    this.assertOpen();
    return (await this.readJobDoc(id))?.job;
  }

  async createJob(job: Job): Promise<Job> {
    if (!JOB_ID_PATTERN.test(job.id)) {
      throw new ChronosError('validation_failed', `invalid job id "${job.id}"`, { job_id: job.id });
    }
    return this.exclusive(job.id, async (pending) => {
      let existing: JobDoc | undefined;
      try {
        existing = await this.readJobDoc(job.id);
      } catch (err) {
        // A damaged file is someone's job, waiting to be restored or deleted: never written over.
        if (isChronosError(err, 'store_corrupt')) throw this.asJobDamaged(job.id, err);
        throw err;
      }
      if (existing) throw jobExists(job.id);
      // History of an earlier job with this id whose removal was cut short must not be inherited, nor
      // come back after a crash: the removal is made durable like any other change.
      if (await removeIfExists(this.runsPath(job.id))) this.unsyncedDirs.add(this.runsDirHandle);
      await this.writeJobDoc({ version: FORMAT_VERSION, job, ledger: [] }, pending);
      return structuredClone(job);
    });
  }

  async updateJob(id: string, mutate: (job: Job) => Job): Promise<Job> {
    return this.exclusive(id, async (pending) => {
      const doc = await this.readJobDoc(id);
      if (!doc) throw jobNotFound(id);
      const next = mutate(doc.job);
      assertSameId(id, next.id, 'job');
      await this.writeJobDoc({ ...doc, job: next }, pending);
      return structuredClone(next);
    });
  }

  async removeJob(id: string): Promise<boolean> {
    if (!JOB_ID_PATTERN.test(id)) return false;
    return this.exclusive(id, async (pending) => (await this.removeLocked(id, pending)) !== undefined);
  }

  async removeDamagedJob(id: string): Promise<string | undefined> {
    if (!JOB_ID_PATTERN.test(id)) return undefined;
    return this.exclusive(id, async (pending) => {
      const removed = await this.removeLocked(id, pending, true);
      return typeof removed === 'string' ? removed : undefined;
    });
  }

  /**
   * Under the job's lock: a healthy job's files are deleted (true); a damaged job's file is moved aside
   * (its new path). Undefined when there was no job, or (`onlyDamaged`) no damaged one.
   */
  private async removeLocked(
    id: string,
    pending: PendingCacheChanges,
    onlyDamaged = false,
  ): Promise<true | string | undefined> {
    let doc: JobDoc | undefined;
    let damaged = false;
    try {
      doc = await this.readJobDoc(id);
    } catch (err) {
      if (!isChronosError(err, 'store_corrupt')) throw err;
      damaged = true;
    }
    if (onlyDamaged && !damaged) return undefined;
    let removed: true | string | undefined;
    // Job file first: a crash between the two leaves only orphaned history, which createJob clears.
    if (damaged) {
      // The operator's to recover: its bytes are kept under damaged/, never destroyed.
      removed = await this.moveAside('jobs', id, this.jobPath(id), this.jobsDirHandle);
      pending.set(id, null);
    } else if (doc) {
      await removeIfExists(this.jobPath(id));
      pending.set(id, null);
      await syncDir(this.jobsDir, this.jobsDirHandle);
      removed = true;
    }
    await this.removeHistoryFile(id);
    return removed;
  }

  /** A history that cannot even be deleted (a directory in its place) is moved aside like a damaged one. */
  private async removeHistoryFile(id: string): Promise<void> {
    try {
      if (await removeIfExists(this.runsPath(id))) await syncDir(this.runsDir, this.runsDirHandle);
    } catch (err) {
      const code = errnoCode((err as { cause?: unknown }).cause);
      if (code === undefined || !FILE_DAMAGE_ERRNOS.has(code)) throw err;
      await this.moveAside('runs', id, this.runsPath(id), this.runsDirHandle);
    }
  }

  async damaged(kind?: DamagedRecord['kind']): Promise<DamagedRecord[]> {
    const jobs = kind === 'history' ? [] : [...(await this.loadAll()).damaged.values()];
    const histories = kind === 'job' ? [] : await this.listMovedHistories();
    return [...jobs, ...histories].sort((a, b) =>
      a.job_id === b.job_id ? (a.file < b.file ? -1 : 1) : a.job_id < b.job_id ? -1 : 1,
    );
  }

  async transact<T>(
    jobId: string,
    fn: (view: JobTxnView) => JobTxnWrite<T>,
    options?: TransactOptions,
  ): Promise<T> {
    return this.exclusive(
      jobId,
      async (pending) => {
        const doc = await this.readJobDoc(jobId);
        const write = fn(makeView(doc?.job, doc?.ledger ?? []));
        const job = resolveTxnWrite(jobId, doc?.job, write);
        if (job === undefined) return write.result;
        if (!JOB_ID_PATTERN.test(jobId)) {
          throw new ChronosError('validation_failed', `invalid job id "${jobId}"`, { job_id: jobId });
        }
        const ledger = mergeLedger(doc?.ledger ?? [], write.ledger ?? [], this.ledgerRetention);
        await this.writeJobDoc({ version: FORMAT_VERSION, job, ledger }, pending);
        return write.result;
      },
      options?.urgent,
    );
  }

  async peek(jobId: string): Promise<JobTxnView> {
    this.assertOpen();
    const doc = await this.readJobDoc(jobId);
    return makeView(doc?.job, doc?.ledger ?? []);
  }

  async getLedgerEntry(jobId: string, fireAt: number): Promise<LedgerEntry | undefined> {
    this.assertOpen();
    return (await this.readJobDoc(jobId))?.ledger.find((row) => row.fire_at === fireAt);
  }

  async listClaimed(): Promise<LedgerEntry[]> {
    const all = await this.loadAll();
    return [...all.jobs.values()].flatMap((entry) => entry.claimed.map((row) => structuredClone(row)));
  }

  // ---- runs ----

  async appendRun(run: RunRecord): Promise<void> {
    await this.exclusive(run.job_id, async () => {
      if (!(await this.readJobDoc(run.job_id))) throw jobNotFound(run.job_id);
      const runs = (await this.readHistoryLocked(run.job_id))?.runs ?? [];
      const next = [run, ...runs.filter((r) => r.run_id !== run.run_id)].slice(0, this.runRetention);
      await this.writeRunsDoc(run.job_id, next);
    });
  }

  async updateRun(jobId: string, runId: string, mutate: (run: RunRecord) => RunRecord): Promise<RunRecord> {
    return this.exclusive(jobId, async () => {
      const runs = (await this.readHistoryLocked(jobId))?.runs ?? [];
      const index = runs.findIndex((r) => r.run_id === runId);
      if (index < 0) throw runNotFound(jobId, runId);
      const next = mutate(runs[index]!);
      assertSameId(runId, next.run_id, 'run');
      assertSameId(jobId, next.job_id, 'job');
      runs[index] = next;
      await this.writeRunsDoc(jobId, runs);
      return structuredClone(next);
    });
  }

  async listRuns(jobId: string, limit?: number): Promise<RunRecord[]> {
    this.assertOpen();
    const runs = (await this.readHistory(jobId))?.runs ?? [];
    return limit === undefined ? runs : runs.slice(0, Math.max(0, limit));
  }

  async getRun(jobId: string, runId: string): Promise<RunRecord | undefined> {
    this.assertOpen();
    return (await this.readHistory(jobId))?.runs.find((r) => r.run_id === runId);
  }

  /** Lock-free, like every read; a damaged history is moved aside under the job's lock, then read again. */
  private async readHistory(jobId: string): Promise<RunsDoc | undefined> {
    try {
      return await this.readRunsDoc(jobId);
    } catch (err) {
      if (!isChronosError(err, 'store_corrupt')) throw err;
      return this.exclusive(jobId, () => this.readHistoryLocked(jobId));
    }
  }

  /**
   * Under the job's lock. A damaged history is moved to damaged/runs/ and the job starts a new one:
   * refusing to record runs would lose every later run of a job that still fires, while the old bytes
   * stay recoverable and reported by `damaged()` until the operator removes them.
   */
  private async readHistoryLocked(jobId: string): Promise<RunsDoc | undefined> {
    try {
      return await this.readRunsDoc(jobId);
    } catch (err) {
      if (!isChronosError(err, 'store_corrupt')) throw err;
      const problem = String(err.details?.['problem'] ?? err.message);
      const movedTo = await this.moveAside('runs', jobId, this.runsPath(jobId), this.runsDirHandle);
      this.report({ job_id: jobId, kind: 'history', file: movedTo, error: problem });
      return undefined;
    }
  }

  /**
   * Renames a damaged file (or whatever is in its place) into damaged/<kind>/, durably, and returns its new
   * path. A timestamp and a random part keep every moved file: the same id may be damaged again later.
   */
  private async moveAside(
    kind: 'jobs' | 'runs',
    jobId: string,
    path: string,
    dirHandle: FileHandle,
  ): Promise<string> {
    const folder = join(this.damagedDir, kind);
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const target = join(folder, `${jobId}.${stamp}.${randomBytes(2).toString('hex')}.json`);
    try {
      await mkdir(folder, { recursive: true, mode: DIR_MODE });
      await rename(path, target);
    } catch (err) {
      throw unavailable('move aside', path, err);
    }
    await syncDir(folder);
    await syncDir(kind === 'jobs' ? this.jobsDir : this.runsDir, dirHandle);
    return target;
  }

  /** Histories in damaged/runs/, with what is wrong with each (read again: they are few and small). */
  private async listMovedHistories(): Promise<DamagedRecord[]> {
    const folder = join(this.damagedDir, 'runs');
    let names: string[];
    try {
      names = await readdir(folder);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      throw unavailable('list', folder, err);
    }
    const records: DamagedRecord[] = [];
    for (const name of names.sort()) {
      const jobId = name.slice(0, name.indexOf('.'));
      if (!JOB_ID_PATTERN.test(jobId)) continue;
      const file = join(folder, name);
      records.push({ job_id: jobId, kind: 'history', file, error: await this.diagnoseHistory(file) });
    }
    return records;
  }

  private async diagnoseHistory(file: string): Promise<string> {
    try {
      const text = await this.readStoredText(file);
      const doc = this.parseVersioned(file, text ?? '');
      if (!Array.isArray(doc['runs'])) return 'expected {"version":1,"runs":[...]}';
      return 'moved aside; it reads as a run history now';
    } catch (err) {
      return isChronosError(err) ? String(err.details?.['problem'] ?? err.message) : String(err);
    }
  }

  private report(record: DamagedRecord): void {
    const key = `${record.file}\n${record.error}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.onDamaged?.(record);
  }

  private asJobDamaged(id: string, err: ChronosError): ChronosError {
    return jobDamaged(
      id,
      String(err.details?.['path'] ?? this.jobPath(id)),
      String(err.details?.['problem']),
    );
  }

  /** Waits for queued writes, then releases the directory handles. Later calls fail `store_unavailable`. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue.whenIdle();
    if (this.lingering) clearTimeout(this.lingering);
    await this.lock.release();
    if (this.tokenFd !== undefined) closeSync(this.tokenFd);
    this.cache = undefined;
    await this.jobsDirHandle.close().catch(() => {});
    await this.runsDirHandle.close().catch(() => {});
  }

  // ---- internals ----

  private assertOpen(): void {
    if (this.closed) throw new ChronosError('store_unavailable', `the store at ${this.dir} is closed`);
  }

  private jobPath(id: string): string {
    return join(this.jobsDir, `${id}.json`);
  }

  private runsPath(id: string): string {
    return join(this.runsDir, `${id}.json`);
  }

  /**
   * Runs `fn` (a write to one job's files, `key` = its id) in the next group commit: with the cross-process
   * lock held and concurrently with writes to other jobs. `pending` collects the round's job-file changes;
   * afterwards the write token is replaced and the list cache patched or dropped.
   */
  private exclusive<T>(
    key: string,
    fn: (pending: PendingCacheChanges) => Promise<T>,
    urgent = false,
  ): Promise<T> {
    this.assertOpen();
    return this.queue.run(key, fn, urgent);
  }

  /** One group commit: the lock held once for the round's writes, the token published once after them. */
  private async commitRound(round: (pending: PendingCacheChanges) => Promise<void>): Promise<void> {
    if (this.lingering) clearTimeout(this.lingering);
    this.lingering = undefined;
    const wait = this.yieldUntil - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    await this.lock.acquire();
    try {
      const tokenBefore = this.cache ? await this.readToken() : undefined;
      const pending: PendingCacheChanges = new Map();
      try {
        await round(pending);
        // One directory fsync per directory for the whole round makes its renames durable; callers
        // resume only after it (WriteQueue settles them when this session ends).
        const dirs = [...this.unsyncedDirs];
        this.unsyncedDirs.clear();
        await Promise.all(
          dirs.map((handle) => syncDir(handle === this.jobsDirHandle ? this.jobsDir : this.runsDir, handle)),
        );
      } finally {
        this.unsyncedDirs.clear();
        if (pending.size > 0) await this.publishWrite(tokenBefore, pending);
      }
    } finally {
      // Kept for close writes, but never for long: under a steady stream of writes another process must
      // still get its turn within about LOCK_MAX_HOLD_MS.
      const heldFor = Date.now() - (this.lock.heldSince ?? Date.now());
      if (this.lockLingerMs <= 0 || heldFor >= LOCK_MAX_HOLD_MS) {
        await this.lock.release();
        // Leave a waiting process a moment to take it (it polls at most every 5 ms).
        if (heldFor >= LOCK_MAX_HOLD_MS) this.yieldUntil = Date.now() + LOCK_YIELD_MS;
      } else {
        this.lingering = setTimeout(() => void this.lock.release(), this.lockLingerMs);
        this.lingering.unref();
      }
    }
  }

  private async publishWrite(tokenBefore: string | undefined, pending: PendingCacheChanges): Promise<void> {
    const token = randomUUID();
    let published = true;
    try {
      // A descriptor kept open, rewritten in place (tokens have one length): no open per write. If the
      // file was deleted meanwhile, writing to the open descriptor would reach nobody: open it again.
      if (this.tokenFd !== undefined && fstatSync(this.tokenFd).nlink === 0) {
        closeSync(this.tokenFd);
        this.tokenFd = undefined;
      }
      this.tokenFd ??= openSync(this.tokenPath, 'w', FILE_MODE);
      writeSync(this.tokenFd, token, 0);
    } catch {
      // The job write itself is durable; failing it now would turn a claim that exists into a 503
      // and the occurrence would never run. Other processes may list stale data until the next
      // write that manages to publish.
      published = false;
    }
    this.writeSeq += 1;
    const cacheMatches =
      this.cache !== undefined && tokenBefore !== undefined && tokenBefore === this.cacheToken;
    if (!published || !cacheMatches || this.cache === undefined) {
      this.cache = undefined;
      this.cacheToken = undefined;
      return;
    }
    for (const [id, entry] of pending) {
      // Whatever was damaged under this id has just been replaced or removed by a write of ours.
      this.cache.damaged.delete(id);
      if (entry === null) this.cache.jobs.delete(id);
      else this.cache.jobs.set(id, entry);
    }
    this.cacheToken = token;
  }

  private async readToken(): Promise<string> {
    return (await readTextIfExists(this.tokenPath)) ?? '';
  }

  private async loadAll(): Promise<ListCache> {
    this.assertOpen();
    // Token before files: a write we miss here has published a different token after we read it.
    const token = await this.readToken();
    if (this.cache !== undefined && token === this.cacheToken) return this.cache;
    const seq = this.writeSeq;
    let names: string[];
    try {
      names = await readdir(this.jobsDir);
    } catch (err) {
      throw unavailable('list', this.jobsDir, err);
    }
    const fresh: ListCache = { jobs: new Map(), damaged: new Map() };
    const ids = names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -'.json'.length));
    const valid = ids.filter((id) => JOB_ID_PATTERN.test(id));
    // Bounded: opening 10,000 files at once exceeds a container's usual 1024 open-file limit (EMFILE).
    for (let i = 0; i < valid.length; i += LIST_READ_BATCH) {
      const reads = await Promise.all(
        valid.slice(i, i + LIST_READ_BATCH).map((id) =>
          this.readJobDoc(id).then(
            (doc) => ({ id, doc, err: undefined }),
            (err: unknown) => ({ id, doc: undefined, err }),
          ),
        ),
      );
      for (const { id, doc, err } of reads) {
        if (doc) fresh.jobs.set(doc.job.id, cacheEntry(doc));
        else if (isChronosError(err, 'store_corrupt')) fresh.damaged.set(id, this.damagedJobRecord(id, err));
        // Anything else (EMFILE, ENOMEM) is about the store, not this file: the list fails and is retried.
        else if (err !== undefined) throw err;
      }
    }
    if (seq === this.writeSeq) {
      this.cache = fresh;
      this.cacheToken = token;
    }
    return fresh;
  }

  private damagedJobRecord(id: string, err: ChronosError): DamagedRecord {
    return {
      job_id: id,
      kind: 'job',
      file: String(err.details?.['path'] ?? this.jobPath(id)),
      error: String(err.details?.['problem'] ?? err.message),
    };
  }

  /**
   * Throws `store_corrupt` for a damaged file (reported once through onDamaged), `store_unavailable` when
   * the store itself cannot be read.
   */
  private async readJobDoc(id: string): Promise<JobDoc | undefined> {
    // An id that fails the pattern can never name a file this store wrote; never build a path from it.
    if (!JOB_ID_PATTERN.test(id)) return undefined;
    const path = this.jobPath(id);
    try {
      const text = await this.readStoredText(path);
      if (text === undefined) return undefined;
      const doc = this.parseVersioned(path, text);
      const job = doc['job'];
      if (!isRecord(job) || job['id'] !== id || !Array.isArray(doc['ledger'])) {
        throw this.corrupt(path, `expected {"version":1,"job":{"id":"${id}",...},"ledger":[...]}`);
      }
      const shape = jobShapeProblem(job);
      if (shape !== null) throw this.corrupt(path, `job ${shape}`);
      // Stored before the bounds existed, or written by hand: served, it would overflow the stack of
      // whatever copies or encodes it (listing, reconcile, the API), for every job at once.
      const problem = jobLimitProblems(job as unknown as Job)[0];
      if (problem) throw this.corrupt(path, `job ${problem.path} ${problem.message}`);
      return doc as unknown as JobDoc;
    } catch (err) {
      if (isChronosError(err, 'store_corrupt')) {
        const record = this.damagedJobRecord(id, err);
        this.report(record);
        // Damaged behind our back (no write token changed): the cached list must not keep serving it.
        if (this.cache?.jobs.delete(id)) this.cache.damaged.set(id, record);
      }
      throw err;
    }
  }

  /** A file's text, or undefined when it does not exist; an error of this file alone is `store_corrupt`. */
  private async readStoredText(path: string): Promise<string | undefined> {
    try {
      return await readTextIfExists(path);
    } catch (err) {
      const code = errnoCode((err as { cause?: unknown }).cause);
      if (code !== undefined && FILE_DAMAGE_ERRNOS.has(code))
        throw this.corrupt(path, `cannot be read (${code})`);
      throw err;
    }
  }

  private async readRunsDoc(jobId: string): Promise<RunsDoc | undefined> {
    if (!JOB_ID_PATTERN.test(jobId)) return undefined;
    const path = this.runsPath(jobId);
    const text = await this.readStoredText(path);
    if (text === undefined) return undefined;
    const doc = this.parseVersioned(path, text);
    if (!Array.isArray(doc['runs'])) throw this.corrupt(path, 'expected {"version":1,"runs":[...]}');
    return doc as unknown as RunsDoc;
  }

  private parseVersioned(path: string, text: string): Record<string, unknown> {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw this.corrupt(path, errorMessage(err));
    }
    if (!isRecord(value)) throw this.corrupt(path, 'expected a JSON object');
    if (value['version'] !== FORMAT_VERSION) {
      throw this.corrupt(
        path,
        `unknown format version ${JSON.stringify(value['version'])} (this Chronos reads version ${FORMAT_VERSION})`,
      );
    }
    return value;
  }

  private corrupt(path: string, problem: string): ChronosError {
    return new ChronosError(
      'store_corrupt',
      `store file ${path} cannot be read: ${problem}. Chronos will not overwrite it, and every other job ` +
        'goes on. Restore it from a backup and restart Chronos, or delete the job (chronos jobs rm <id>) ' +
        'to move the file aside.',
      { path, problem },
    );
  }

  private async writeJobDoc(doc: JobDoc, pending: PendingCacheChanges): Promise<void> {
    // Everything that can refuse or throw comes before the file is replaced: a failed write stores nothing.
    assertWithinLimits(doc.job);
    const text = JSON.stringify(doc);
    const entry = structuredClone(cacheEntry(doc));
    try {
      await replaceFile(this.jobsDir, `${doc.job.id}.json`, text, this.syncs);
      this.unsyncedDirs.add(this.jobsDirHandle);
    } catch (err) {
      // A write can fail after its rename (the directory fsync): the file may hold the new content, so
      // the list cache can no longer be trusted; the next list reads the files again.
      this.cache = undefined;
      throw err;
    }
    // The caller keeps references to what it passed in; the cache must not share them.
    pending.set(doc.job.id, entry);
  }

  private async writeRunsDoc(jobId: string, runs: RunRecord[]): Promise<void> {
    const doc: RunsDoc = { version: FORMAT_VERSION, runs };
    await replaceFile(this.runsDir, `${jobId}.json`, JSON.stringify(doc), this.syncs);
    this.unsyncedDirs.add(this.runsDirHandle);
  }
}
