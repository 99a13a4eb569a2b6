import postgres, { type ReservedSql, type Sql } from 'postgres';
import { ChronosError, errorMessage, isChronosError } from '../../errors.js';
import { jobLimitProblems } from '../../jobs/limits.js';
import { JOB_ID_PATTERN, type Job, type RunRecord } from '../../jobs/model.js';
import type { ArmLock, ArmLockContext } from '../arm-lock.js';
import { isRecord, jobShapeProblem } from '../job-shape.js';
import { LeaseArmLock, type LeaseBackend } from '../lease-arm-lock.js';
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
} from '../ledger.js';
import type {
  DamagedRecord,
  JobTxnView,
  JobTxnWrite,
  LedgerEntry,
  Owner,
  Store,
  TransactOptions,
} from '../store.js';
import { PostgresLeaseBackend } from './arm-lease.js';
import { withReserved } from './reserved.js';
import { migrate, readSchemaState, type SchemaState, schemaNewerError } from './schema.js';

/*
 * The Store contract on PostgreSQL (schema: ./schema.ts). Several Chronos processes, on several hosts, may
 * share one database: every write is a transaction, and a per-job transaction (`transact`) holds the job
 * row's lock (SELECT ... FOR UPDATE) from its read to its COMMIT, so the compare-and-set of a claim is
 * decided on the newest state whichever process makes it.
 *
 * Round trips: queries sent together on one connection are pipelined by the driver, so `transact` costs
 * two once its statements are prepared on the connection: BEGIN + lock the job row + read its ledger, then
 * the writes + COMMIT. A transaction whose function writes nothing ends with a ROLLBACK (also two).
 *
 * Read committed isolation: the ledger read is a statement of its own after the row lock is granted, so it
 * sees whatever the previous holder of the lock committed (one statement combining both would read the
 * ledger with the snapshot taken before waiting for the lock).
 *
 * Damage: the database keeps jsonb well-formed, but a job document can still break the job bounds or the
 * shape every loop relies on (written by hand, or by another program). Such a job is left in place, left
 * out of lists, reported by `damaged()`, and never written over; `removeJob` moves it to chronos_damaged.
 * A run history entry that cannot be read is moved to chronos_damaged the first time it is read.
 */

export interface PostgresStoreOptions {
  /** postgres://user:password@host:port/database?sslmode=require */
  url: string;
  /** Connections kept at most (1–2: a process that sleeps between fires needs few). Default 2. */
  poolSize?: number;
  /** Upper bound of every statement, lock waits included (ms). Default 5000. */
  statementTimeoutMs?: number;
  /** Longest wait for a connection to open (ms). Default 5000. */
  connectTimeoutMs?: number;
  runRetention?: number;
  ledgerRetention?: number;
  /** Told once per damaged record and problem, as it is found (the server logs it). */
  onDamaged?: (record: DamagedRecord) => void;
  /** Shown in pg_stat_activity. */
  applicationName?: string;
}

export const DEFAULT_STATEMENT_TIMEOUT_MS = 5_000;
export const DEFAULT_POOL_SIZE = 2;

/**
 * A job row as `peek` read it (or as remembered, or as a failed compare-and-set found it): its row version
 * (`xmin`) says whether anything was written since.
 */
interface PeekedState {
  jobId: string;
  /** Undefined: the job did not exist when read. */
  job: Job | undefined;
  ledger: LedgerEntry[];
  /** The instant `ledger` was read for (then it holds that instant's row only, if any). */
  readAt: number | undefined;
  version: string;
  /** Read from the database just now, rather than remembered: a decision to write nothing may stand on it. */
  read: boolean;
}

/**
 * A job document as this process last read or wrote it, at a row version (`xmin`). Never taken for the
 * truth: a read sends the version and gets the document only if the row moved on; a claim decided on it
 * (`remembered`) is written by a compare-and-set on that version. Kept as text, so every use parses its own
 * copy and no caller can change what is remembered.
 */
interface KnownJob {
  version: string;
  text: string;
}

/** A `peek(jobId, fireAt)` waiting for the read on the wire to return, to go out with the others asked meanwhile. */
interface PendingPeek {
  jobId: string;
  readAt: number;
  known: KnownJob | undefined;
  resolve: (view: JobTxnView) => void;
  reject: (err: unknown) => void;
}

/** Jobs remembered at most: a warm process's jobs (~1 KB each), bounded for one with very many. */
const KNOWN_JOBS_MAX = 2_048;

const LEDGER_COLUMNS = `job_id, fire_at, status, trigger, run_id, owner_boot_id, owner_pid, owner_host,
  claimed_at, expires_at`;
/** The ledger columns of `l` (a join), named as in LedgerRow. */
const LEDGER_COLUMNS_OF_L = LEDGER_COLUMNS.split(',')
  .map((column) => `l.${column.trim()}`)
  .join(', ');

interface LedgerRow {
  job_id: string;
  fire_at: number;
  status: LedgerEntry['status'];
  trigger: LedgerEntry['trigger'];
  run_id: string;
  owner_boot_id: string;
  owner_pid: number;
  owner_host: string;
  claimed_at: number;
  expires_at: number;
}

function toEntry(row: LedgerRow): LedgerEntry {
  return {
    job_id: row.job_id,
    fire_at: row.fire_at,
    status: row.status,
    trigger: row.trigger,
    run_id: row.run_id,
    owner: { boot_id: row.owner_boot_id, pid: row.owner_pid, host: row.owner_host },
    claimed_at: row.claimed_at,
    expires_at: row.expires_at,
  };
}

function toRow(entry: LedgerEntry): LedgerRow {
  return {
    job_id: entry.job_id,
    fire_at: entry.fire_at,
    status: entry.status,
    trigger: entry.trigger,
    run_id: entry.run_id,
    owner_boot_id: entry.owner.boot_id,
    owner_pid: entry.owner.pid,
    owner_host: entry.owner.host,
    claimed_at: entry.claimed_at,
    expires_at: entry.expires_at,
  };
}

const RUN_STATUSES = new Set(['running', 'succeeded', 'failed', 'timed_out', 'skipped', 'interrupted']);

/** What is wrong with a stored run record, or null when it reads as one. */
function runShapeProblem(doc: unknown, jobId: string, runId: string): string | null {
  if (!isRecord(doc)) return 'expected a JSON object';
  if (doc['run_id'] !== runId || doc['job_id'] !== jobId) return 'run_id / job_id do not match the row';
  if (typeof doc['status'] !== 'string' || !RUN_STATUSES.has(doc['status']))
    return 'status is not a run status';
  if (typeof doc['started_at'] !== 'number' || typeof doc['fire_at'] !== 'number')
    return 'started_at and fire_at must be instants (epoch ms)';
  return null;
}

const sqlState = (err: unknown): string | undefined => {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
};

/**
 * A driver, socket or server error as the store's error: the database is what failed, not the request
 * (503, retried). Anything else (a ChronosError, or an error thrown by a caller's function) passes as it is.
 */
export function storeError(err: unknown, what: string): unknown {
  if (isChronosError(err)) return err;
  const code = sqlState(err);
  if (!(err instanceof postgres.PostgresError) && code === undefined) return err;
  const message = errorMessage(err);
  return new ChronosError(
    'store_unavailable',
    `PostgreSQL store: ${what} failed: ${message}${code === undefined ? '' : ` (${code})`}`,
    { sqlstate: code },
    { cause: err },
  );
}

/**
 * Seconds before the driver opens a connection again after one failed. The driver's own policy grows to
 * 20 s over an outage, and a fire waiting on that connection outlives NAS's delivery timeout: NAS then sees
 * a timeout rather than the 503 it retries, and the first fires after the database is back wait too. A pool
 * of one or two connections can afford to try again within a second.
 */
export function reconnectDelaySeconds(failures: number): number {
  const capped = Math.min(0.05 * 2 ** failures, 1);
  return capped * (0.5 + Math.random() / 2);
}

export function createSql(options: PostgresStoreOptions): Sql {
  const statementTimeout = options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
  return postgres(options.url, {
    max: options.poolSize ?? DEFAULT_POOL_SIZE,
    connect_timeout: Math.max(1, Math.ceil((options.connectTimeoutMs ?? 5_000) / 1000)),
    backoff: reconnectDelaySeconds,
    onnotice: () => {},
    // Instants are epoch ms in bigint columns: numbers well inside 2^53.
    types: {
      bigint: {
        to: 20,
        from: [20],
        serialize: (value: number) => String(value),
        parse: (value: string) => Number(value),
      },
    },
    connection: {
      application_name: options.applicationName ?? 'chronos',
      statement_timeout: statementTimeout,
      // A client that stops mid-transaction (a frozen VM, a cut network) must not hold a job's lock for good.
      idle_in_transaction_session_timeout: statementTimeout * 2,
    },
  });
}

export class PostgresStore implements Store {
  readonly kind = 'postgres';
  private readonly runRetention: number;
  private readonly ledgerRetention: number;
  private readonly onDamaged: ((record: DamagedRecord) => void) | undefined;
  private readonly reported = new Set<string>();
  /** What each view `peek` returned was read from, for a transaction that decides on it (`basis`). */
  private readonly peeked = new WeakMap<JobTxnView, PeekedState>();
  /** Jobs by id as last read or written here, oldest first (KnownJob). */
  private readonly known = new Map<string, KnownJob>();
  /** Reads of one instant asked for while another such read was on the wire, sent together next (peekAt). */
  private pendingPeeks: PendingPeek[] = [];
  private peeksInFlight = false;
  private closed = false;

  private constructor(
    private readonly sql: Sql,
    options: PostgresStoreOptions,
  ) {
    this.runRetention = options.runRetention ?? DEFAULT_RUN_RETENTION;
    this.ledgerRetention = options.ledgerRetention ?? DEFAULT_LEDGER_RETENTION;
    this.onDamaged = options.onDamaged;
  }

  /**
   * Connects, brings the schema up to date (under an advisory lock) and returns the store. Throws
   * `store_unavailable` when the database cannot be reached, `store_schema_newer` when a newer Chronos has
   * migrated it.
   */
  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    const sql = createSql(options);
    try {
      await migrate(sql);
    } catch (err) {
      await sql.end({ timeout: 1 }).catch(() => {});
      throw storeError(err, 'open');
    }
    return new PostgresStore(sql, options);
  }

  /** The schema state of the database at `url`, changing nothing (`chronos check`). */
  static async schemaState(options: PostgresStoreOptions): Promise<SchemaState> {
    const sql = createSql({ ...options, poolSize: 1 });
    try {
      return await readSchemaState(sql);
    } catch (err) {
      throw storeError(err, 'read the schema version');
    } finally {
      await sql.end({ timeout: 1 }).catch(() => {});
    }
  }

  static schemaNewerError = schemaNewerError;

  // ---- jobs ----

  async listJobs(): Promise<Job[]> {
    const rows = await this.query(
      'list jobs',
      (sql) =>
        sql`SELECT id, doc::text AS doc, xmin::text AS version FROM chronos_jobs ORDER BY id COLLATE "C"`,
    );
    const jobs: Job[] = [];
    for (const row of rows) {
      const id = row['id'] as string;
      const text = row['doc'] as string;
      const doc: unknown = JSON.parse(text);
      const problem = this.jobProblem(id, doc);
      if (problem === null) {
        jobs.push(doc as Job);
        this.remember(id, row['version'] as string, text);
      } else this.known.delete(id);
    }
    return jobs;
  }

  async getJob(id: string): Promise<Job | undefined> {
    if (!JOB_ID_PATTERN.test(id)) return undefined;
    const [row] = await this.query('read job', (sql) => sql`SELECT doc FROM chronos_jobs WHERE id = ${id}`);
    return row && this.readableJob(id, row['doc']);
  }

  async createJob(job: Job): Promise<Job> {
    if (!JOB_ID_PATTERN.test(job.id)) {
      throw new ChronosError('validation_failed', `invalid job id "${job.id}"`, { job_id: job.id });
    }
    assertWithinLimits(job);
    // Serialised once: the row and what is remembered of it are the same text. Sent as text and cast
    // (`::text::jsonb`): a parameter the server types jsonb would be JSON-encoded again by the driver.
    const text = JSON.stringify(job);
    const inserted = await this.query(
      'create job',
      (sql) =>
        sql`INSERT INTO chronos_jobs (id, doc) VALUES (${job.id}, ${text}::text::jsonb)
          ON CONFLICT (id) DO NOTHING RETURNING xmin::text AS version`,
    );
    if (inserted.length === 0) {
      const [row] = await this.query(
        'read job',
        (sql) => sql`SELECT doc FROM chronos_jobs WHERE id = ${job.id}`,
      );
      const problem = row ? this.jobProblem(job.id, row['doc']) : null;
      // A damaged row is someone's job, waiting to be restored or deleted: never written over.
      if (problem !== null) throw jobDamaged(job.id, this.jobLocation(job.id), problem);
      throw jobExists(job.id);
    }
    this.remember(job.id, inserted[0]?.['version'] as string, text);
    return structuredClone(job);
  }

  async updateJob(id: string, mutate: (job: Job) => Job): Promise<Job> {
    return this.transact(id, (view) => {
      if (view.job === undefined) throw jobNotFound(id);
      const next = mutate(view.job);
      assertSameId(id, next.id, 'job');
      return { job: next, result: structuredClone(next) };
    });
  }

  async removeJob(id: string): Promise<boolean> {
    if (!JOB_ID_PATTERN.test(id)) return false;
    return (await this.removeLocked(id, false)) !== undefined;
  }

  async removeDamagedJob(id: string): Promise<string | undefined> {
    if (!JOB_ID_PATTERN.test(id)) return undefined;
    const removed = await this.removeLocked(id, true);
    return typeof removed === 'string' ? removed : undefined;
  }

  /** Deletes a healthy job (true); moves a damaged one to chronos_damaged first (where it went). */
  private async removeLocked(id: string, onlyDamaged: boolean): Promise<true | string | undefined> {
    this.known.delete(id);
    return this.inTransaction('remove job', async (conn) => {
      const [row] = await conn`SELECT doc FROM chronos_jobs WHERE id = ${id} FOR UPDATE`;
      if (!row) return undefined;
      const problem = this.jobProblem(id, row['doc'], false);
      if (onlyDamaged && problem === null) return undefined;
      let removed: true | string = true;
      if (problem !== null) {
        const [moved] = await conn`INSERT INTO chronos_damaged (job_id, kind, doc, error, moved_at)
          VALUES (${id}, 'job', ${conn.json(row['doc'] as never)}, ${problem}, ${Date.now()}) RETURNING id`;
        removed = `chronos_damaged/${String(moved?.['id'])}`;
      }
      await conn`DELETE FROM chronos_jobs WHERE id = ${id}`;
      return removed;
    });
  }

  async damaged(kind?: DamagedRecord['kind']): Promise<DamagedRecord[]> {
    const records: DamagedRecord[] = [];
    if (kind !== 'history') {
      const rows = await this.query(
        'list jobs',
        (sql) => sql`SELECT id, doc FROM chronos_jobs ORDER BY id COLLATE "C"`,
      );
      for (const row of rows) {
        const id = row['id'] as string;
        const problem = this.jobProblem(id, row['doc']);
        if (problem !== null)
          records.push({ job_id: id, kind: 'job', file: this.jobLocation(id), error: problem });
      }
    }
    if (kind !== 'job') {
      const rows = await this.query(
        'list damaged histories',
        (sql) =>
          sql`SELECT id, job_id, error FROM chronos_damaged WHERE kind = 'history' ORDER BY job_id COLLATE "C", id`,
      );
      for (const row of rows) {
        records.push({
          job_id: row['job_id'] as string,
          kind: 'history',
          file: `chronos_damaged/${String(row['id'])}`,
          error: row['error'] as string,
        });
      }
    }
    return records.sort((a, b) => (a.job_id === b.job_id ? 0 : a.job_id < b.job_id ? -1 : 1));
  }

  // ---- the fire path ----

  async transact<T>(
    jobId: string,
    fn: (view: JobTxnView) => JobTxnWrite<T>,
    options?: TransactOptions,
  ): Promise<T> {
    if (!JOB_ID_PATTERN.test(jobId)) {
      // No row can exist: decide on an empty view; a write would be refused below anyway.
      const write = fn(makeView(undefined, []));
      if (resolveTxnWrite(jobId, undefined, write) !== undefined) {
        throw new ChronosError('validation_failed', `invalid job id "${jobId}"`, { job_id: jobId });
      }
      return write.result;
    }
    this.assertOpen();
    let basis = options?.basis && this.peeked.get(options.basis);
    // A compare-and-set that finds the job moved on reads it as it is now: one more try on that read.
    for (let tries = 0; basis !== undefined && basis.jobId === jobId && tries < 2; tries++) {
      const outcome = await this.transactOnBasis(jobId, fn, basis);
      if (outcome !== undefined && 'result' in outcome) return outcome.result;
      basis = outcome?.found;
    }
    try {
      return await withReserved(this.sql, async ({ conn }) => {
        // One round trip: the three statements are pipelined.
        const [, jobRows, ledgerRows] = await Promise.all([
          conn`BEGIN`,
          conn`SELECT doc FROM chronos_jobs WHERE id = ${jobId} FOR UPDATE`,
          conn<LedgerRow[]>`SELECT ${conn.unsafe(LEDGER_COLUMNS)} FROM chronos_ledger WHERE job_id = ${jobId}
            ORDER BY fire_at DESC`,
        ]);
        const jobRow = jobRows[0];
        const current = jobRow ? this.readableJob(jobId, jobRow['doc']) : undefined;
        const existing = ledgerRows.map(toEntry);
        const plan = this.planWrite(jobId, current, existing, fn);
        if (plan.job === undefined) {
          await conn`ROLLBACK`;
          return plan.result;
        }
        const { job, upserts, dropped } = plan;
        const text = JSON.stringify(job);
        const statements: Promise<unknown>[] = [
          current === undefined
            ? conn`INSERT INTO chronos_jobs (id, doc) VALUES (${jobId}, ${text}::text::jsonb)
                RETURNING xmin::text AS version`
            : conn`UPDATE chronos_jobs SET doc = ${text}::text::jsonb WHERE id = ${jobId}
                RETURNING xmin::text AS version`,
        ];
        if (upserts.length > 0) {
          statements.push(conn`INSERT INTO chronos_ledger ${conn(upserts as never[])}
            ON CONFLICT (job_id, fire_at) DO UPDATE SET status = excluded.status, trigger = excluded.trigger,
              run_id = excluded.run_id, owner_boot_id = excluded.owner_boot_id, owner_pid = excluded.owner_pid,
              owner_host = excluded.owner_host, claimed_at = excluded.claimed_at, expires_at = excluded.expires_at`);
        }
        if (dropped.length > 0) {
          statements.push(
            conn`DELETE FROM chronos_ledger WHERE job_id = ${jobId} AND fire_at = ANY(${dropped}::bigint[])`,
          );
        }
        // One round trip: the writes and the COMMIT are pipelined. A failed write turns the COMMIT into a
        // ROLLBACK on the server, and its own error rejects the batch.
        const results = await Promise.all([...statements, conn`COMMIT`]);
        const commit = results.at(-1) as { command?: string };
        if (commit.command !== 'COMMIT') {
          throw new ChronosError('store_unavailable', 'PostgreSQL store: the transaction was rolled back');
        }
        const [written] = results[0] as Array<{ version: string }>;
        if (written) this.remember(jobId, written.version, text);
        return plan.result;
      });
    } catch (err) {
      this.known.delete(jobId);
      if (sqlState(err) === '23505') throw jobExists(jobId);
      throw storeError(err, `transaction on job "${jobId}"`);
    }
  }

  /**
   * `fn` applied to the state a write would start from: the job to store (undefined: write nothing), the
   * ledger rows to upsert and the fire_at of the rows retention drops.
   */
  private planWrite<T>(
    jobId: string,
    current: Job | undefined,
    existing: LedgerEntry[],
    fn: (view: JobTxnView) => JobTxnWrite<T>,
  ): { result: T; job: Job | undefined; upserts: LedgerRow[]; dropped: number[] } {
    const write = fn(
      makeView(
        current && structuredClone(current),
        existing.map((e) => structuredClone(e)),
      ),
    );
    const job = resolveTxnWrite(jobId, current, write);
    if (job === undefined) return { result: write.result, job, upserts: [], dropped: [] };
    assertWithinLimits(job);
    const updates = write.ledger ?? [];
    const kept = mergeLedger(existing, updates, this.ledgerRetention);
    const keptAt = new Set(kept.map((row) => row.fire_at));
    const dropped = existing.filter((row) => !keptAt.has(row.fire_at)).map((row) => row.fire_at);
    const upserts = updates.filter((row) => keptAt.has(row.fire_at)).map(toRow);
    return { result: write.result, job, upserts, dropped };
  }

  /**
   * The compare-and-set of a transaction decided on the caller's lock-free read (`peek`) or on the job as
   * remembered (`remembered`): ONE statement writes the job and its ledger row only if the job row is still
   * the version the basis holds. Every transaction that writes a job's ledger rewrites its job row (a new
   * row version, a new `xmin`), so an unchanged version means the job and its ledger are as the basis has
   * them, and the decision stands; the statement's UPDATE waits for any lock holder and re-checks the
   * version on the row it commits. A row the basis does not hold must not exist either (a remembered basis
   * never read the ledger).
   *
   * It covers what a claim writes: the job and at most one `claimed` row. A claimed row does not count
   * towards the ledger retention, so such a write never has settled rows to trim, and the read need not
   * have seen them (`peek` with an instant reads that instant's row, not the job's whole ledger).
   *
   * Returns the result when written, or when `fn` writes nothing on a basis read just now. When the version
   * moved, the same statement has read the job and the row at the basis's instant as they are now:
   * `found`, to decide on again. Undefined when `fn` writes anything else, or throws (it may have asked
   * for a row the read left out): the caller then decides again under the row lock on the whole ledger.
   */
  private async transactOnBasis<T>(
    jobId: string,
    fn: (view: JobTxnView) => JobTxnWrite<T>,
    basis: PeekedState,
  ): Promise<{ result: T } | { found: PeekedState | undefined } | undefined> {
    let write: JobTxnWrite<T>;
    let job: Job | undefined;
    try {
      write = fn(
        makeView(
          basis.job && structuredClone(basis.job),
          basis.ledger.map((e) => structuredClone(e)),
          basis.readAt,
        ),
      );
      job = resolveTxnWrite(jobId, basis.job, write);
      if (job !== undefined) assertWithinLimits(job);
    } catch {
      // Decided on a read that may be old or partial: whatever `fn` objected to is judged again on fresh state.
      return undefined;
    }
    if (job === undefined) return basis.read ? { result: write.result } : undefined;
    const rows = write.ledger ?? [];
    if (basis.job === undefined || rows.length > 1 || rows.some((row) => row.status !== 'claimed'))
      return undefined;
    const row = rows[0] && toRow(rows[0]);
    const text = JSON.stringify(job);
    const unseen = row !== undefined && !basis.ledger.some((entry) => entry.fire_at === row.fire_at);
    const readAt = basis.readAt ?? null;
    const known = this.known.get(jobId);
    const [state] = await this.query(
      `transaction on job "${jobId}"`,
      (sql) => sql`WITH upd AS (
          UPDATE chronos_jobs SET doc = ${text}::text::jsonb
          WHERE id = ${jobId} AND xmin::text = ${basis.version}
            AND NOT (${unseen}::boolean AND EXISTS (SELECT 1 FROM chronos_ledger
              WHERE job_id = ${jobId} AND fire_at = ${row?.fire_at ?? 0}::bigint))
          RETURNING xmin::text AS version
        ), ins AS (
          INSERT INTO chronos_ledger (${sql.unsafe(LEDGER_COLUMNS)})
          SELECT ${row?.job_id ?? jobId}::text, ${row?.fire_at ?? 0}::bigint, ${row?.status ?? ''}::text,
            ${row?.trigger ?? ''}::text, ${row?.run_id ?? ''}::text, ${row?.owner_boot_id ?? ''}::text,
            ${row?.owner_pid ?? 0}::integer, ${row?.owner_host ?? ''}::text, ${row?.claimed_at ?? 0}::bigint,
            ${row?.expires_at ?? 0}::bigint
          FROM upd WHERE ${row !== undefined}::boolean
          ON CONFLICT (job_id, fire_at) DO UPDATE SET status = excluded.status, trigger = excluded.trigger,
            run_id = excluded.run_id, owner_boot_id = excluded.owner_boot_id, owner_pid = excluded.owner_pid,
            owner_host = excluded.owner_host, claimed_at = excluded.claimed_at, expires_at = excluded.expires_at
          RETURNING 1
        )
        SELECT u.version AS written, j.id IS NOT NULL AS found, j.xmin::text AS version,
          ${docUnlessAt(sql, known?.version)} AS doc, ${sql.unsafe(LEDGER_COLUMNS_OF_L)}
        FROM (SELECT 1) AS one
          LEFT JOIN upd u ON true
          LEFT JOIN chronos_jobs j ON u.version IS NULL AND ${readAt !== null}::boolean AND j.id = ${jobId}
          LEFT JOIN chronos_ledger l ON l.job_id = j.id AND l.fire_at = ${readAt ?? 0}::bigint`,
    );
    if (typeof state?.['written'] === 'string') {
      this.remember(jobId, state['written'], text);
      return { result: write.result };
    }
    // Read with the basis's instant only: a basis holding the whole ledger is decided again under the lock.
    if (state === undefined || basis.readAt === undefined) return undefined;
    if (state['found'] !== true) {
      this.known.delete(jobId);
      return { found: { ...basis, job: undefined, ledger: [], version: '', read: true } };
    }
    const version = state['version'] as string;
    return {
      found: {
        jobId,
        job: this.jobAt(jobId, known, version, state['doc']),
        ledger: state['job_id'] == null ? [] : [toEntry(state as unknown as LedgerRow)],
        readAt: basis.readAt,
        version,
        read: true,
      },
    };
  }

  /**
   * A view of the job as this process last read or wrote it, with no row known at `fireAt`, made without a
   * read. Only a basis for `transact`: its compare-and-set writes only if the job's version is still the
   * remembered one and no row exists at the instant written (Store.remembered).
   */
  remembered(jobId: string, fireAt: number): JobTxnView | undefined {
    const known = this.known.get(jobId);
    if (known === undefined || this.closed) return undefined;
    const job = JSON.parse(known.text) as Job;
    const view = makeView(job, [], fireAt);
    this.peeked.set(view, { jobId, job, ledger: [], readAt: fireAt, version: known.version, read: false });
    return view;
  }

  private remember(jobId: string, version: string, text: string): void {
    this.known.delete(jobId);
    if (this.known.size >= KNOWN_JOBS_MAX) this.known.delete(this.known.keys().next().value!);
    this.known.set(jobId, { version, text });
  }

  /**
   * The job a read found: the remembered document when the row is still at that version (the read then
   * sent none), else the one sent, remembered once it reads as a job. Throws `store_corrupt` for a damaged one.
   */
  private jobAt(jobId: string, known: KnownJob | undefined, version: string, sent: unknown): Job {
    // `known` is what the read was sent with: what is remembered now may be newer than the read.
    if (sent === null && known?.version === version) return JSON.parse(known.text) as Job;
    if (this.known.get(jobId) === known) this.known.delete(jobId);
    const job = this.readableJob(jobId, typeof sent === 'string' ? JSON.parse(sent) : sent);
    if (typeof sent === 'string') this.remember(jobId, version, sent);
    return job;
  }

  async peek(jobId: string, fireAt?: number): Promise<JobTxnView> {
    if (!JOB_ID_PATTERN.test(jobId)) return makeView(undefined, []);
    if (fireAt !== undefined && Number.isSafeInteger(fireAt)) return this.peekAt(jobId, fireAt);
    const known = this.known.get(jobId);
    // One statement, one snapshot: the job and its whole ledger as they were at one instant.
    const [row] = await this.query(
      'read job',
      (sql) => sql`SELECT ${docUnlessAt(sql, known?.version)} AS doc, j.xmin::text AS version,
          COALESCE((SELECT json_agg(json_build_object(
            'job_id', l.job_id, 'fire_at', l.fire_at, 'status', l.status, 'trigger', l.trigger,
            'run_id', l.run_id, 'owner_boot_id', l.owner_boot_id, 'owner_pid', l.owner_pid,
            'owner_host', l.owner_host, 'claimed_at', l.claimed_at, 'expires_at', l.expires_at)
            ORDER BY l.fire_at DESC) FROM chronos_ledger l WHERE l.job_id = j.id), '[]'::json) AS ledger
        FROM chronos_jobs j WHERE j.id = ${jobId}`,
    );
    if (!row) {
      this.known.delete(jobId);
      return makeView(undefined, []);
    }
    const version = row['version'] as string;
    const job = this.jobAt(jobId, known, version, row['doc']);
    const ledger = ((row['ledger'] ?? []) as LedgerRow[]).map(toEntry);
    const view = makeView(job, ledger, undefined);
    this.peeked.set(view, { jobId, job, ledger, readAt: undefined, version, read: true });
    return view;
  }

  /**
   * A delivery's instant: the job and that one ledger row, two primary-key lookups however long the
   * ledger. A read goes out at once when no other is on the wire; the reads asked for meanwhile
   * (concurrent deliveries, a burst of duplicates) go out together as ONE statement when it returns, each
   * answered from its own rows. A lone delivery never waits, and a process answering many deliveries at
   * once pays a statement's fixed cost once per batch rather than once per delivery.
   */
  private peekAt(jobId: string, readAt: number): Promise<JobTxnView> {
    return new Promise((resolve, reject) => {
      this.pendingPeeks.push({ jobId, readAt, known: this.known.get(jobId), resolve, reject });
      if (!this.peeksInFlight) void this.sendPeeks();
    });
  }

  private async sendPeeks(): Promise<void> {
    this.peeksInFlight = true;
    try {
      while (this.pendingPeeks.length > 0) await this.sendPeekBatch(this.pendingPeeks.splice(0));
    } finally {
      this.peeksInFlight = false;
    }
  }

  private async sendPeekBatch(batch: PendingPeek[]): Promise<void> {
    let rows: readonly Record<string, unknown>[];
    try {
      rows = await this.query(
        'read job',
        (sql) => sql`SELECT r.n, j.id IS NOT NULL AS found, j.xmin::text AS version,
            CASE WHEN j.xmin::text = r.known THEN NULL ELSE j.doc::text END AS doc,
            ${sql.unsafe(LEDGER_COLUMNS_OF_L)}
          FROM unnest(${batch.map((p) => p.jobId)}::text[], ${batch.map((p) => p.readAt)}::bigint[],
              ${batch.map((p) => p.known?.version ?? null)}::text[]) WITH ORDINALITY AS r(id, at, known, n)
            LEFT JOIN chronos_jobs j ON j.id = r.id
            LEFT JOIN chronos_ledger l ON l.job_id = j.id AND l.fire_at = r.at`,
      );
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    const byOrdinal = new Map(rows.map((row) => [Number(row['n']), row]));
    batch.forEach((p, i) => {
      const row = byOrdinal.get(i + 1);
      try {
        if (!row)
          throw new ChronosError('store_unavailable', 'PostgreSQL store: a read came back without its row');
        p.resolve(this.viewAt(p, row));
      } catch (err) {
        p.reject(err); // this job's document is damaged; the others' reads stand
      }
    });
  }

  /** The view one read of an instant found (`row`: that read's row of the batch). */
  private viewAt(p: PendingPeek, row: Record<string, unknown>): JobTxnView {
    if (row['found'] !== true) {
      if (this.known.get(p.jobId) === p.known) this.known.delete(p.jobId);
      return makeView(undefined, []);
    }
    const version = row['version'] as string;
    const job = this.jobAt(p.jobId, p.known, version, row['doc']);
    const ledger = row['job_id'] == null ? [] : [toEntry(row as unknown as LedgerRow)];
    const view = makeView(job, ledger, p.readAt);
    this.peeked.set(view, { jobId: p.jobId, job, ledger, readAt: p.readAt, version, read: true });
    return view;
  }

  async getLedgerEntry(jobId: string, fireAt: number): Promise<LedgerEntry | undefined> {
    if (!JOB_ID_PATTERN.test(jobId)) return undefined;
    const [row] = await this.query(
      'read ledger',
      (sql) => sql<LedgerRow[]>`SELECT ${sql.unsafe(LEDGER_COLUMNS)} FROM chronos_ledger
        WHERE job_id = ${jobId} AND fire_at = ${fireAt}`,
    );
    return row && toEntry(row);
  }

  async listClaimed(): Promise<LedgerEntry[]> {
    const rows = await this.query(
      'list claims',
      (sql) => sql<
        LedgerRow[]
      >`SELECT ${sql.unsafe(LEDGER_COLUMNS)} FROM chronos_ledger WHERE status = 'claimed'
        ORDER BY job_id, fire_at`,
    );
    return rows.map(toEntry);
  }

  /**
   * Extends the lease of every row still `claimed` by `owner` (this process) to `until`: the runs they
   * belong to are in progress here, so no other process may take them over. Returns the rows renewed.
   */
  async renewClaims(owner: Owner, until: number): Promise<number> {
    const rows = await this.query(
      'renew claims',
      (sql) => sql`UPDATE chronos_ledger SET expires_at = ${until}
        WHERE status = 'claimed' AND owner_boot_id = ${owner.boot_id} AND expires_at < ${until}
        RETURNING fire_at`,
    );
    return rows.length;
  }

  // ---- runs ----

  async appendRun(run: RunRecord): Promise<void> {
    if (!JOB_ID_PATTERN.test(run.job_id)) throw jobNotFound(run.job_id);
    try {
      await this.inTransaction('record run', async (conn) => {
        // Pipelined: the upsert (a re-append moves the run to the front, as in every store), then the trim.
        await Promise.all([
          conn`INSERT INTO chronos_runs (job_id, run_id, doc) VALUES (${run.job_id}, ${run.run_id},
              ${conn.json(jsonOf(run))})
            ON CONFLICT (job_id, run_id) DO UPDATE SET doc = excluded.doc, seq = excluded.seq`,
          conn`DELETE FROM chronos_runs WHERE job_id = ${run.job_id} AND seq <= (SELECT seq FROM chronos_runs
              WHERE job_id = ${run.job_id} ORDER BY seq DESC OFFSET ${this.runRetention} LIMIT 1)`,
        ]);
      });
    } catch (err) {
      if (isChronosError(err) && err.details?.['sqlstate'] === '23503') throw jobNotFound(run.job_id);
      throw err;
    }
  }

  async updateRun(jobId: string, runId: string, mutate: (run: RunRecord) => RunRecord): Promise<RunRecord> {
    if (!JOB_ID_PATTERN.test(jobId)) throw runNotFound(jobId, runId);
    const result = await this.inTransaction('update run', async (conn) => {
      const [row] = await conn`SELECT doc FROM chronos_runs WHERE job_id = ${jobId} AND run_id = ${runId}
        FOR UPDATE`;
      if (!row) return undefined;
      const problem = runShapeProblem(row['doc'], jobId, runId);
      if (problem !== null) {
        await this.moveRunAside(conn, jobId, runId, row['doc'], problem);
        return undefined;
      }
      const next = mutate(row['doc'] as RunRecord);
      assertSameId(runId, next.run_id, 'run');
      assertSameId(jobId, next.job_id, 'job');
      await conn`UPDATE chronos_runs SET doc = ${conn.json(jsonOf(next))} WHERE job_id = ${jobId}
        AND run_id = ${runId}`;
      return structuredClone(next);
    });
    if (result === undefined) throw runNotFound(jobId, runId);
    return result;
  }

  async listRuns(jobId: string, limit?: number): Promise<RunRecord[]> {
    if (!JOB_ID_PATTERN.test(jobId)) return [];
    const count = Math.max(0, Math.min(limit ?? this.runRetention, this.runRetention));
    const rows = await this.query(
      'list runs',
      (sql) =>
        sql`SELECT run_id, doc FROM chronos_runs WHERE job_id = ${jobId} ORDER BY seq DESC LIMIT ${count}`,
    );
    const runs: RunRecord[] = [];
    for (const row of rows) {
      const run = await this.readableRun(jobId, row['run_id'] as string, row['doc']);
      if (run) runs.push(run);
    }
    return runs;
  }

  async getRun(jobId: string, runId: string): Promise<RunRecord | undefined> {
    if (!JOB_ID_PATTERN.test(jobId)) return undefined;
    const [row] = await this.query(
      'read run',
      (sql) => sql`SELECT doc FROM chronos_runs WHERE job_id = ${jobId} AND run_id = ${runId}`,
    );
    return row ? this.readableRun(jobId, runId, row['doc']) : undefined;
  }

  /** Replicas on this database arm one at a time, under a lease row (docs/architecture.md, "Replicas"). */
  armLock(context: ArmLockContext): ArmLock {
    return new LeaseArmLock({ backend: this.leaseBackend(), ...context });
  }

  /** The arm lease's row on this database (the server's store wraps this one until it is connected). */
  leaseBackend(): LeaseBackend {
    return new PostgresLeaseBackend(this.sql);
  }

  /** Ends the pool's connections (idle exit and shutdown call it). Later calls fail `store_unavailable`. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.sql.end({ timeout: 5 }).catch(() => {});
  }

  // ---- internals ----

  private assertOpen(): void {
    if (this.closed) throw new ChronosError('store_unavailable', 'the PostgreSQL store is closed');
  }

  private async query<T extends readonly unknown[]>(what: string, run: (sql: Sql) => Promise<T>): Promise<T> {
    this.assertOpen();
    try {
      return await run(this.sql);
    } catch (err) {
      throw storeError(err, what);
    }
  }

  /** `fn` inside BEGIN ... COMMIT on one connection; any throw rolls back. */
  private async inTransaction<T>(what: string, fn: (conn: ReservedSql) => Promise<T>): Promise<T> {
    this.assertOpen();
    try {
      return await withReserved(this.sql, async ({ conn }) => {
        await conn`BEGIN`;
        const result = await fn(conn);
        await conn`COMMIT`;
        return result;
      });
    } catch (err) {
      throw storeError(err, what);
    }
  }

  private jobLocation(id: string): string {
    return `chronos_jobs/${id}`;
  }

  /**
   * What makes a stored job document unusable, or null. Reported once through onDamaged (unless `report`
   * is false).
   */
  private jobProblem(id: string, doc: unknown, report = true): string | null {
    let problem: string | null = null;
    if (!isRecord(doc) || doc['id'] !== id) problem = `expected a job object with "id": "${id}"`;
    else {
      const shape = jobShapeProblem(doc);
      if (shape !== null) problem = `job ${shape}`;
      else {
        // Stored by hand or by another program: served, it would overflow the stack of whatever copies or
        // encodes it (listing, reconcile, the API), for every job at once.
        const limit = jobLimitProblems(doc as unknown as Job)[0];
        if (limit) problem = `job ${limit.path} ${limit.message}`;
      }
    }
    if (problem !== null && report) {
      this.report({ job_id: id, kind: 'job', file: this.jobLocation(id), error: problem });
    }
    return problem;
  }

  /** The job, or `store_corrupt` when its document is damaged. */
  private readableJob(id: string, doc: unknown): Job {
    const problem = this.jobProblem(id, doc);
    if (problem !== null) {
      const path = this.jobLocation(id);
      throw new ChronosError(
        'store_corrupt',
        `stored job ${path} cannot be read: ${problem}. Chronos will not overwrite it, and every other job ` +
          'goes on. Restore the row from a backup, or delete the job (chronos jobs rm <id>) to move it to ' +
          'chronos_damaged.',
        { job_id: id, path, problem },
      );
    }
    return doc as Job;
  }

  /** A run, or undefined when its row is damaged (then moved to chronos_damaged). */
  private async readableRun(jobId: string, runId: string, doc: unknown): Promise<RunRecord | undefined> {
    const problem = runShapeProblem(doc, jobId, runId);
    if (problem === null) return doc as RunRecord;
    await this.inTransaction('set a damaged run aside', (conn) =>
      this.moveRunAside(conn, jobId, runId, doc, problem),
    );
    return undefined;
  }

  private async moveRunAside(
    conn: ReservedSql,
    jobId: string,
    runId: string,
    doc: unknown,
    problem: string,
  ): Promise<void> {
    const deleted =
      await conn`DELETE FROM chronos_runs WHERE job_id = ${jobId} AND run_id = ${runId} RETURNING 1`;
    // Another process moved it first.
    if (deleted.length === 0) return;
    const [moved] = await conn`INSERT INTO chronos_damaged (job_id, kind, doc, error, moved_at)
      VALUES (${jobId}, 'history', ${conn.json(doc as never)}, ${`run ${runId}: ${problem}`}, ${Date.now()})
      RETURNING id`;
    this.report({
      job_id: jobId,
      kind: 'history',
      file: `chronos_damaged/${String(moved?.['id'])}`,
      error: `run ${runId}: ${problem}`,
    });
  }

  private report(record: DamagedRecord): void {
    const key = `${record.file}\n${record.error}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.onDamaged?.(record);
  }
}

/**
 * The job document as text, or NULL when the row is still at the version this process remembers (it has
 * the document already): a warm process's reads then carry a version, not a document.
 */
function docUnlessAt(sql: Sql, known: string | undefined) {
  return known === undefined
    ? sql`j.doc::text`
    : sql`CASE WHEN j.xmin::text = ${known} THEN NULL ELSE j.doc::text END`;
}

/** Values as the driver's JSON parameter type wants them (our records are plain JSON already). */
function jsonOf(value: Job | RunRecord): never {
  return value as never;
}
