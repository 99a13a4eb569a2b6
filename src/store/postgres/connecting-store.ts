import type { Clock, TimerHandle } from '../../clock.js';
import { ChronosError, isChronosError } from '../../errors.js';
import type { Job, RunRecord } from '../../jobs/model.js';
import type { ArmLock, ArmLockContext } from '../arm-lock.js';
import { LeaseArmLock, type LeaseBackend } from '../lease-arm-lock.js';
import type {
  DamagedRecord,
  JobTxnView,
  JobTxnWrite,
  LedgerEntry,
  Owner,
  Store,
  TransactOptions,
} from '../store.js';
import { PostgresStore, type PostgresStoreOptions } from './postgres-store.js';

/*
 * The PostgreSQL store as the server holds it: a database that cannot be reached at start must not keep the
 * process from listening (NAS would see connection errors and a platform a crash loop). Until the first
 * connection and migration succeed, every call fails at once with `store_unavailable` (the fire route and
 * the admin API answer 503 with Retry-After, and NAS delivers again), while connecting is retried with
 * backoff on the injected clock. Once open, the driver reconnects by itself after a lost connection or a
 * database restart; a call in flight at that moment fails `store_unavailable` and its transaction is rolled
 * back by the server.
 */

export const CONNECT_BACKOFF_FIRST_MS = 500;
export const CONNECT_BACKOFF_MAX_MS = 30_000;

export interface ConnectingStoreOptions extends PostgresStoreOptions {
  clock: Clock;
  /** Each failed attempt (the next one is in `retryInMs`). */
  onAttemptFailed?: (err: ChronosError, attempt: number, retryInMs: number) => void;
  /** Connected and migrated, after `attempts` attempts. */
  onReady?: (attempts: number) => void;
  /** The database turned out to be newer than this code after start: nothing will make it work. */
  onFatal?: (err: ChronosError) => void;
  /** Overrides PostgresStore.open (tests). */
  open?: (options: PostgresStoreOptions) => Promise<Store>;
}

export class ConnectingStore implements Store {
  readonly kind = 'postgres';
  private inner: Store | undefined;
  private lastError: ChronosError | undefined;
  private attempts = 0;
  private timer: TimerHandle | undefined;
  private closed = false;
  private readonly readyPromise: Promise<void>;
  private markReady: () => void = () => {};
  private readonly firstAttempt: Promise<void>;

  private constructor(private readonly options: ConnectingStoreOptions) {
    this.readyPromise = new Promise((resolve) => {
      this.markReady = resolve;
    });
    this.firstAttempt = this.attempt();
  }

  /**
   * Makes the first attempt and returns: connected, or still trying in the background. Throws only when the
   * database is reachable and refuses this code (`store_schema_newer`): then the start must fail.
   */
  static async start(options: ConnectingStoreOptions): Promise<ConnectingStore> {
    const store = new ConnectingStore(options);
    await store.firstAttempt;
    if (store.lastError && isChronosError(store.lastError, 'store_schema_newer')) throw store.lastError;
    return store;
  }

  /** Resolves once connected and migrated (never, if closed before). */
  whenReady(): Promise<void> {
    return this.readyPromise;
  }

  get ready(): boolean {
    return this.inner !== undefined;
  }

  private async attempt(): Promise<void> {
    if (this.closed) return;
    this.attempts += 1;
    try {
      const store = await (this.options.open ?? PostgresStore.open)(this.options);
      if (this.closed) {
        await store.close();
        return;
      }
      this.inner = store;
      this.lastError = undefined;
      this.options.onReady?.(this.attempts);
      this.markReady();
    } catch (err) {
      const error = isChronosError(err)
        ? err
        : new ChronosError('store_unavailable', `PostgreSQL store: ${String(err)}`, undefined, {
            cause: err,
          });
      this.lastError = error;
      if (error.code === 'store_schema_newer') {
        // At start, ConnectingStore.start throws it; later it is the caller's to stop the process.
        if (this.attempts > 1) this.options.onFatal?.(error);
        return;
      }
      const retryIn = Math.min(CONNECT_BACKOFF_MAX_MS, CONNECT_BACKOFF_FIRST_MS * 2 ** (this.attempts - 1));
      this.options.onAttemptFailed?.(error, this.attempts, retryIn);
      this.timer = this.options.clock.setTimeout(() => void this.attempt(), retryIn);
      this.timer.unref();
    }
  }

  private store(): Store {
    if (this.inner) return this.inner;
    if (this.closed) throw new ChronosError('store_unavailable', 'the PostgreSQL store is closed');
    throw new ChronosError(
      'store_unavailable',
      `the database is not reachable yet; Chronos keeps trying to connect (attempt ${this.attempts}` +
        `${this.lastError ? `: ${this.lastError.message}` : ''})`,
      { reason: 'database_unreachable' },
    );
  }

  listJobs(): Promise<Job[]> {
    return this.call((s) => s.listJobs());
  }
  getJob(id: string): Promise<Job | undefined> {
    return this.call((s) => s.getJob(id));
  }
  createJob(job: Job): Promise<Job> {
    return this.call((s) => s.createJob(job));
  }
  updateJob(id: string, mutate: (job: Job) => Job): Promise<Job> {
    return this.call((s) => s.updateJob(id, mutate));
  }
  removeJob(id: string): Promise<boolean> {
    return this.call((s) => s.removeJob(id));
  }
  damaged(kind?: DamagedRecord['kind']): Promise<DamagedRecord[]> {
    return this.call((s) => s.damaged(kind));
  }
  removeDamagedJob(id: string): Promise<string | undefined> {
    return this.call((s) => s.removeDamagedJob(id));
  }
  transact<T>(
    jobId: string,
    fn: (view: JobTxnView) => JobTxnWrite<T>,
    options?: TransactOptions,
  ): Promise<T> {
    return this.call((s) => s.transact(jobId, fn, options));
  }
  getLedgerEntry(jobId: string, fireAt: number): Promise<LedgerEntry | undefined> {
    return this.call((s) => s.getLedgerEntry(jobId, fireAt));
  }
  peek(jobId: string, fireAt?: number): Promise<JobTxnView> {
    return this.call((s) => s.peek(jobId, fireAt));
  }
  remembered(jobId: string, fireAt: number): JobTxnView | undefined {
    return this.inner?.remembered?.(jobId, fireAt);
  }
  listClaimed(): Promise<LedgerEntry[]> {
    return this.call((s) => s.listClaimed());
  }
  renewClaims(owner: Owner, until: number): Promise<number> {
    return this.call((s) => s.renewClaims(owner, until));
  }
  appendRun(run: RunRecord): Promise<void> {
    return this.call((s) => s.appendRun(run));
  }
  updateRun(jobId: string, runId: string, mutate: (run: RunRecord) => RunRecord): Promise<RunRecord> {
    return this.call((s) => s.updateRun(jobId, runId, mutate));
  }
  listRuns(jobId: string, limit?: number): Promise<RunRecord[]> {
    return this.call((s) => s.listRuns(jobId, limit));
  }
  getRun(jobId: string, runId: string): Promise<RunRecord | undefined> {
    return this.call((s) => s.getRun(jobId, runId));
  }

  /**
   * Replicas arm one at a time under the database's arm lease (docs/architecture.md, "Replicas"); until the
   * database is reached, taking it fails `store_unavailable` like every other call (arming is retried).
   */
  armLock(context: ArmLockContext): ArmLock {
    const lease = (): LeaseBackend => {
      const inner = this.store();
      if (inner instanceof PostgresStore) return inner.leaseBackend();
      throw new ChronosError('store_unavailable', `a ${inner.kind} store keeps no arm lease`);
    };
    return new LeaseArmLock({
      ...context,
      backend: {
        tryAcquire: (holder, ttlMs) => lease().tryAcquire(holder, ttlMs),
        renew: (holder, ttlMs) => lease().renew(holder, ttlMs),
        release: (holder, changes) => lease().release(holder, changes),
        readView: (after) => lease().readView(after),
        resetView: (holder, generation) => lease().resetView(holder, generation),
      },
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) this.options.clock.clearTimeout(this.timer);
    await this.inner?.close();
  }

  private async call<T>(fn: (store: Store) => Promise<T>): Promise<T> {
    return fn(this.store());
  }
}
