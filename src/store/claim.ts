import type { Job, Trigger } from '../jobs/model.js';
import { isOwnerAlive } from './owner.js';
import type { JobTxnView, LedgerEntry, LedgerStatus, Owner, Store } from './store.js';

export interface ClaimRequest {
  job_id: string;
  fire_at: number;
  run_id: string;
  trigger: Trigger;
  owner: Owner;
  now: number;
  /** How long the claim protects the run even if its owner looks alive; size it from the run timeout. */
  ttl_ms: number;
  /** The caller already looked the row up lock-free (the fire path): skip that read here. */
  checked?: boolean;
  /**
   * Given the fresh job under the store's lock, return the advanced job (next_run_at, repeat count,
   * state), or `{ refuse: reason }` to write nothing. Must be synchronous and side-effect free.
   * `recovering` is the orphaned row being taken over: its dead owner's claim already advanced the job,
   * so the occurrence must not be counted again. `view` is the job's ledger under the same lock.
   */
  advance: (job: Job, recovering: LedgerEntry | undefined, view: JobTxnView) => Job | { refuse: string };
}

export type ClaimResult =
  | { outcome: 'claimed' | 'recovered'; job: Job; entry: LedgerEntry; previous?: LedgerEntry }
  | { outcome: 'duplicate'; entry: LedgerEntry }
  | { outcome: 'refused'; reason: string; job: Job }
  | { outcome: 'job_missing' };

/** A `claimed` row whose run can no longer be going on: its owner died, or its TTL ran out. */
export function isOrphaned(entry: LedgerEntry, now: number, isAlive: (owner: Owner) => boolean): boolean {
  return entry.status === 'claimed' && (entry.expires_at <= now || !isAlive(entry.owner));
}

/**
 * Admits the occurrence (job_id, fire_at) once (docs/contract.md, rows 8 and 12): the ledger row, the advanced job and the
 * repeat count are persisted in one store write, so a crash leaves either all of them or none.
 *
 * A lock-free ledger lookup answers most duplicates without taking the store's write lock; that
 * answer is safe because a row that is settled, or claimed by a live owner within its TTL, can only
 * stay a duplicate. Everything else is decided again under the lock.
 */
export async function claimOccurrence(
  store: Store,
  req: ClaimRequest,
  isAlive: (owner: Owner) => boolean = isOwnerAlive,
): Promise<ClaimResult> {
  if (!req.checked) {
    const seen = await store.getLedgerEntry(req.job_id, req.fire_at);
    if (seen && !isOrphaned(seen, req.now, isAlive)) return { outcome: 'duplicate', entry: seen };
  }

  return store.transact<ClaimResult>(
    req.job_id,
    (view) => {
      const job = view.job;
      if (job === undefined) return { result: { outcome: 'job_missing' } };
      const previous = view.entry(req.fire_at);
      if (previous && !isOrphaned(previous, req.now, isAlive)) {
        return { result: { outcome: 'duplicate', entry: previous } };
      }
      const advanced = req.advance(job, previous, view);
      if ('refuse' in advanced) return { result: { outcome: 'refused', reason: advanced.refuse, job } };
      const entry: LedgerEntry = {
        job_id: req.job_id,
        fire_at: req.fire_at,
        status: 'claimed',
        trigger: req.trigger,
        run_id: req.run_id,
        owner: req.owner,
        claimed_at: req.now,
        expires_at: req.now + req.ttl_ms,
      };
      const result: ClaimResult = previous
        ? { outcome: 'recovered', job: advanced, entry, previous }
        : { outcome: 'claimed', job: advanced, entry };
      return { job: advanced, ledger: [entry], result };
    },
    { urgent: true },
  );
}

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

export type RecordResult =
  | { outcome: 'recorded'; entry: LedgerEntry; job: Job }
  | { outcome: 'duplicate'; entry: LedgerEntry }
  | { outcome: 'refused'; reason: string; job: Job }
  | { outcome: 'job_missing' };

/**
 * Writes a row for an occurrence that gets no run (`skipped`, `missed`). Like a claim it never
 * replaces an existing row: an occurrence that someone already admitted stays theirs. The optional
 * `advance` moves the job in the same write (e.g. a skipped misfire moving next_run_at on).
 */
export async function recordOccurrence(
  store: Store,
  entry: LedgerEntry,
  advance?: (job: Job) => Job | { refuse: string },
): Promise<RecordResult> {
  return store.transact<RecordResult>(entry.job_id, (view) => {
    const job = view.job;
    if (job === undefined) return { result: { outcome: 'job_missing' } };
    const existing = view.entry(entry.fire_at);
    if (existing) return { result: { outcome: 'duplicate', entry: existing } };
    const advanced = advance ? advance(job) : job;
    if ('refuse' in advanced) return { result: { outcome: 'refused', reason: advanced.refuse, job } };
    return {
      job: advance ? advanced : undefined,
      ledger: [entry],
      result: { outcome: 'recorded', entry, job: advanced },
    };
  });
}
