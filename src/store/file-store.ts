import { randomUUID } from 'node:crypto';
import { closeSync, fstatSync, openSync, writeSync } from 'node:fs';
import { type FileHandle, mkdir, open, readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ChronosError } from '../errors.js';
import { JOB_ID_PATTERN, type Job, type RunRecord } from '../jobs/model.js';
import {
  DIR_MODE,
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
  DEFAULT_LEDGER_RETENTION,
  DEFAULT_RUN_RETENTION,
  jobExists,
  jobNotFound,
  makeView,
  mergeLedger,
  resolveTxnWrite,
  runNotFound,
} from './ledger.js';
import { type BrokenLock, FileLock } from './lock.js';
import { currentOwner } from './owner.js';
import type { JobTxnView, JobTxnWrite, LedgerEntry, Store, TransactOptions } from './store.js';
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
}

const FORMAT_VERSION = 1;
/** Longest the write lock is kept across consecutive rounds before it is released for others. */
const LOCK_MAX_HOLD_MS = 500;
const LOCK_YIELD_MS = 10;
/** Job files read at once when listing. */
const LIST_READ_BATCH = 64;

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

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
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

  private cache: Map<string, CachedJob> | undefined;
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
    return [...all.values()]
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
      if (await this.readJobDoc(job.id)) throw jobExists(job.id);
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
    return this.exclusive(id, async (pending) => {
      // Parsing first: a corrupt file is the operator's to recover, never silently deleted.
      const doc = await this.readJobDoc(id);
      // Job file first: a crash between the two leaves only orphaned history, which createJob clears.
      if (doc) {
        await removeIfExists(this.jobPath(id));
        pending.set(id, null);
        await syncDir(this.jobsDir, this.jobsDirHandle);
      }
      if (await removeIfExists(this.runsPath(id))) await syncDir(this.runsDir, this.runsDirHandle);
      return doc !== undefined;
    });
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
    return [...all.values()].flatMap((entry) => entry.claimed.map((row) => structuredClone(row)));
  }

  // ---- runs ----

  async appendRun(run: RunRecord): Promise<void> {
    await this.exclusive(run.job_id, async () => {
      if (!(await this.readJobDoc(run.job_id))) throw jobNotFound(run.job_id);
      const runs = (await this.readRunsDoc(run.job_id))?.runs ?? [];
      const next = [run, ...runs.filter((r) => r.run_id !== run.run_id)].slice(0, this.runRetention);
      await this.writeRunsDoc(run.job_id, next);
    });
  }

  async updateRun(jobId: string, runId: string, mutate: (run: RunRecord) => RunRecord): Promise<RunRecord> {
    return this.exclusive(jobId, async () => {
      const runs = (await this.readRunsDoc(jobId))?.runs ?? [];
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
    const runs = (await this.readRunsDoc(jobId))?.runs ?? [];
    return limit === undefined ? runs : runs.slice(0, Math.max(0, limit));
  }

  async getRun(jobId: string, runId: string): Promise<RunRecord | undefined> {
    this.assertOpen();
    return (await this.readRunsDoc(jobId))?.runs.find((r) => r.run_id === runId);
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
      if (entry === null) this.cache.delete(id);
      else this.cache.set(id, entry);
    }
    this.cacheToken = token;
  }

  private async readToken(): Promise<string> {
    return (await readTextIfExists(this.tokenPath)) ?? '';
  }

  private async loadAll(): Promise<Map<string, CachedJob>> {
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
    const fresh = new Map<string, CachedJob>();
    const ids = names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -'.json'.length));
    const valid = ids.filter((id) => JOB_ID_PATTERN.test(id));
    // Bounded: opening 10,000 files at once exceeds a container's usual 1024 open-file limit (EMFILE).
    for (let i = 0; i < valid.length; i += LIST_READ_BATCH) {
      const docs = await Promise.all(valid.slice(i, i + LIST_READ_BATCH).map((id) => this.readJobDoc(id)));
      for (const doc of docs) if (doc) fresh.set(doc.job.id, cacheEntry(doc));
    }
    if (seq === this.writeSeq) {
      this.cache = fresh;
      this.cacheToken = token;
    }
    return fresh;
  }

  private async readJobDoc(id: string): Promise<JobDoc | undefined> {
    // An id that fails the pattern can never name a file this store wrote; never build a path from it.
    if (!JOB_ID_PATTERN.test(id)) return undefined;
    const path = this.jobPath(id);
    const text = await readTextIfExists(path);
    if (text === undefined) return undefined;
    const doc = this.parseVersioned(path, text);
    const job = doc['job'];
    if (!isRecord(job) || job['id'] !== id || !Array.isArray(doc['ledger'])) {
      throw this.corrupt(path, `expected {"version":1,"job":{"id":"${id}",...},"ledger":[...]}`);
    }
    return doc as unknown as JobDoc;
  }

  private async readRunsDoc(jobId: string): Promise<RunsDoc | undefined> {
    if (!JOB_ID_PATTERN.test(jobId)) return undefined;
    const path = this.runsPath(jobId);
    const text = await readTextIfExists(path);
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
      throw this.corrupt(path, (err as Error).message);
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
      `store file ${path} cannot be read: ${problem}. Chronos will not overwrite or delete it. ` +
        `Restore it from a backup, or move it out of ${this.dir} to drop that job, then start Chronos again.`,
      { path },
    );
  }

  private async writeJobDoc(doc: JobDoc, pending: PendingCacheChanges): Promise<void> {
    try {
      await replaceFile(this.jobsDir, `${doc.job.id}.json`, JSON.stringify(doc), this.syncs);
      this.unsyncedDirs.add(this.jobsDirHandle);
    } catch (err) {
      // A write can fail after its rename (the directory fsync): the file may hold the new content, so
      // the list cache can no longer be trusted; the next list reads the files again.
      this.cache = undefined;
      throw err;
    }
    // The caller keeps references to what it passed in; the cache must not share them.
    pending.set(doc.job.id, structuredClone(cacheEntry(doc)));
  }

  private async writeRunsDoc(jobId: string, runs: RunRecord[]): Promise<void> {
    const doc: RunsDoc = { version: FORMAT_VERSION, runs };
    await replaceFile(this.runsDir, `${jobId}.json`, JSON.stringify(doc), this.syncs);
    this.unsyncedDirs.add(this.runsDirHandle);
  }
}
