import { randomUUID } from 'node:crypto';
import { formatInstant } from '../clock.js';
import type { Job, Trigger } from '../jobs/model.js';
import type { Logger } from '../logger.js';
import { isOwnerAlive } from '../store/owner.js';
import type { JobTxnView, LedgerEntry, Owner, Store } from '../store/store.js';
import { type ClaimAsk, type ClaimDecision, claimTtlMs, decideClaim } from './decide.js';

/** An occurrence claimed durably: what the engine arms and runs. */
export interface AcceptedFire {
  /** The job as stored by the claim (next_run_at already advanced). */
  job: Job;
  fire_at: number;
  run_id: string;
  trigger: Trigger;
  attempt: number;
  /** The occurrence had been claimed by a process that died before answering. */
  recovered: boolean;
}

export type FireOutcome =
  | { kind: 'gone' }
  | { kind: 'inactive'; job: Job }
  | { kind: 'duplicate'; entry: LedgerEntry }
  | { kind: 'stale'; job: Job }
  | { kind: 'early'; job: Job; retryAfterSeconds: number }
  | { kind: 'busy'; job: Job; running: LedgerEntry }
  | { kind: 'accepted'; accepted: AcceptedFire };

export interface ClaimFireRequest {
  job_id: string;
  /** Undefined when an older NAS omitted it (the occurrence currently due), or for a manual run (now). */
  fire_at: number | undefined;
  /** Who delivered it; a retry occurrence is always recorded with trigger `retry`. */
  trigger: Trigger;
  now: number;
  owner: Owner;
  isAlive?: (owner: Owner) => boolean;
  /** Where a claim whose durability could not be confirmed is reported (at error). */
  logger?: Logger;
}

interface Written {
  decision: ClaimDecision;
  entry?: LedgerEntry;
}

/**
 * The claim over the store: ONE `transact` that decides on fresh state under the job's lock and, when the
 * decision is to claim, writes the ledger row, the advanced job and its repeat count together, so a crash
 * leaves either all of them or none.
 */
function writeClaim(
  store: Store,
  jobId: string,
  ask: ClaimAsk,
  runId: string,
  owner: Owner,
  ttlMs?: number,
  basis?: JobTxnView,
): Promise<Written> {
  return store.transact<Written>(
    jobId,
    (view) => {
      const decision = decideClaim(view, ask);
      if (decision.kind !== 'claim') return { result: { decision } };
      const entry: LedgerEntry = {
        job_id: jobId,
        fire_at: decision.fire_at,
        status: 'claimed',
        trigger: decision.trigger,
        run_id: runId,
        owner,
        claimed_at: ask.now,
        expires_at: ask.now + (ttlMs ?? claimTtlMs()),
      };
      return { job: decision.job, ledger: [entry], result: { decision, entry } };
    },
    { urgent: true, basis },
  );
}

/**
 * The claim's first look, lock-free. A job the store remembers (Store.remembered) decides a claim without
 * a read: the write then checks that nothing changed, and decides again on fresh state if something did.
 * Every other answer (gone, inactive, duplicate, stale, early) is given only from a fresh read.
 */
async function firstLook(
  store: Store,
  jobId: string,
  fireAt: number | undefined,
  ask: ClaimAsk,
): Promise<{ view: JobTxnView; decision: ClaimDecision }> {
  const remembered = fireAt === undefined ? undefined : store.remembered?.(jobId, fireAt);
  if (remembered) {
    const decision = decideClaim(remembered, ask);
    if (decision.kind === 'claim') return { view: remembered, decision };
  }
  // Asked for one instant, the read may leave out the job's other settled rows (up to the retention).
  const view = await store.peek(jobId, fireAt);
  return { view, decision: decideClaim(view, ask) };
}

/**
 * Claims an occurrence for any trigger (NAS fire, builtin timer, misfire catch-up, manual run): decides
 * from one lock-free look (most duplicates, stale and early deliveries end here without a write), then
 * claims under the job's lock, where the decision is made again on fresh state. A store failure
 * propagates (row 11 of docs/contract.md).
 */
export async function claimFire(store: Store, req: ClaimFireRequest): Promise<FireOutcome> {
  const isAlive = req.isAlive ?? isOwnerAlive;
  const ask: ClaimAsk = { fire_at: req.fire_at, trigger: req.trigger, now: req.now, isAlive };
  const looked = await firstLook(store, req.job_id, req.fire_at, ask);
  const view = looked.view;
  let decision = looked.decision;
  if (decision.kind === 'check_run') {
    ask.checkedRun = await checkRun(store, decision.entry);
    decision = decideClaim(view, ask);
  }
  if (decision.kind !== 'claim') return outcomeOf(decision);
  // Under the lock the occurrence is the one decided here, whatever NAS omitted.
  ask.fire_at = decision.fire_at;
  const runId = randomUUID();
  let written: Written;
  try {
    // The first look is the basis: a store that can tell it is still current writes on it at once.
    written = await writeClaim(store, req.job_id, ask, runId, req.owner, undefined, view);
    if (written.decision.kind === 'check_run') {
      // An orphaned row the first look did not see (a remembered job never shows rows): look its run up
      // and decide once more.
      ask.checkedRun = await checkRun(store, written.decision.entry);
      written = await writeClaim(store, req.job_id, ask, runId, req.owner);
    }
  } catch (err) {
    // The write can fail after its rename, when the directory fsync fails: our row is then in place but
    // may not survive a crash. Answering 503 would make NAS retry into our own live claim (`duplicate`),
    // and nobody would ever run the occurrence; so the claim is kept and run, and the risk is logged.
    const at = decision.fire_at;
    const landed = await store.getLedgerEntry(req.job_id, at).catch(() => undefined);
    const advanced =
      landed?.run_id === runId ? await store.getJob(req.job_id).catch(() => undefined) : undefined;
    if (!landed || !advanced) throw err;
    req.logger?.error(
      { err, job_id: req.job_id, fire_at: formatInstant(at) },
      'claim written but its durability is not confirmed',
    );
    written = { decision: { ...decision, job: advanced }, entry: landed };
  }
  const final = written.decision;
  if (final.kind !== 'claim') return outcomeOf(final);
  return {
    kind: 'accepted',
    accepted: {
      job: final.job,
      fire_at: final.fire_at,
      run_id: runId,
      trigger: final.trigger,
      attempt: final.attempt,
      recovered: final.recovering !== undefined,
    },
  };
}

/** Whether the run an orphaned row names had started: its run record exists. */
async function checkRun(store: Store, entry: LedgerEntry): Promise<{ run_id: string; started: boolean }> {
  return { run_id: entry.run_id, started: (await store.getRun(entry.job_id, entry.run_id)) !== undefined };
}

function outcomeOf(decision: Exclude<ClaimDecision, { kind: 'claim' }>): FireOutcome {
  switch (decision.kind) {
    case 'check_run':
      // Only reachable when a row's run check keeps changing under us: answering duplicate never runs twice.
      return { kind: 'duplicate', entry: decision.entry };
    case 'refused':
      return { kind: 'stale', job: decision.job };
    default:
      return decision;
  }
}

export interface ClaimRequest {
  job_id: string;
  fire_at: number;
  run_id: string;
  trigger: Trigger;
  owner: Owner;
  now: number;
  /** How long the claim protects the run even if its owner looks alive; size it from the run timeout. */
  ttl_ms: number;
  /** The caller already looked the row up lock-free: skip that read here. */
  checked?: boolean;
  /**
   * Given the fresh job under the store's lock, return the advanced job, or `{ refuse: reason }` to write
   * nothing. Must be synchronous and side-effect free. `recovering` is the orphaned row being taken over.
   */
  advance: (job: Job, recovering: LedgerEntry | undefined, view: JobTxnView) => Job | { refuse: string };
}

export type ClaimResult =
  | { outcome: 'claimed' | 'recovered'; job: Job; entry: LedgerEntry; previous?: LedgerEntry }
  | { outcome: 'duplicate'; entry: LedgerEntry }
  | { outcome: 'refused'; reason: string; job: Job }
  | { outcome: 'job_missing' };

/**
 * The same claim at an arbitrary instant with the caller's own job step (store contract tests, the claim
 * benchmark): the ledger rule of `decideClaim` (a live or settled row is never replaced; an orphaned one
 * is taken over), the caller's `advance` instead of the job rules, in the same one write.
 */
export async function claimOccurrence(
  store: Store,
  req: ClaimRequest,
  isAlive: (owner: Owner) => boolean = isOwnerAlive,
): Promise<ClaimResult> {
  const ask: ClaimAsk = {
    fire_at: req.fire_at,
    trigger: req.trigger,
    now: req.now,
    isAlive,
    advance: req.advance,
  };
  let basis: JobTxnView | undefined;
  if (!req.checked) {
    // Lock-free first look: the identity step, so only the ledger rule can answer here.
    const looked = await firstLook(store, req.job_id, req.fire_at, { ...ask, advance: (job) => job });
    basis = looked.view;
    if (looked.decision.kind === 'duplicate') return { outcome: 'duplicate', entry: looked.decision.entry };
  }
  const { decision, entry } = await writeClaim(
    store,
    req.job_id,
    ask,
    req.run_id,
    req.owner,
    req.ttl_ms,
    basis,
  );
  switch (decision.kind) {
    case 'gone':
      return { outcome: 'job_missing' };
    case 'duplicate':
      return { outcome: 'duplicate', entry: decision.entry };
    case 'claim':
      if (entry === undefined) throw new Error('claim decided without a row');
      return decision.recovering
        ? { outcome: 'recovered', job: decision.job, entry, previous: decision.recovering }
        : { outcome: 'claimed', job: decision.job, entry };
    case 'refused':
      return { outcome: 'refused', reason: decision.reason, job: decision.job };
    default:
      // The caller's step replaces every job rule: no other decision can come out.
      throw new Error(`unexpected claim decision: ${decision.kind}`);
  }
}

/**
 * A run about to start long after its claim: keeps the claim, renewing its lease to `expiresAt`, if it is
 * still this run's (`ours`); `taken` when another process took it over after its lease expired (that
 * process runs the occurrence), `gone` when the job was removed. Under the job's lock, like a claim: a
 * takeover and this start cannot both succeed.
 */
export function keepClaimForStart(
  store: Store,
  jobId: string,
  fireAt: number,
  runId: string,
  expiresAt: number,
): Promise<'ours' | 'taken' | 'gone'> {
  return store.transact<'ours' | 'taken' | 'gone'>(jobId, (view) => {
    if (view.job === undefined) return { result: 'gone' };
    const row = view.entry(fireAt);
    if (row?.status !== 'claimed' || row.run_id !== runId) return { result: 'taken' };
    return { ledger: [{ ...row, expires_at: Math.max(row.expires_at, expiresAt) }], result: 'ours' };
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
