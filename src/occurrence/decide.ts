// src/occurrence/ owns the occurrence lifecycle: the claim decision (this file), the claim over the store
// (claim.ts), settling a run (settle.ts), the engine every trigger feeds (engine.ts) and the provider
// interface (provider.ts). The job rules it applies are pure functions in src/jobs/lifecycle.ts.
// docs/architecture.md, "The parts" and "Where each lifecycle rule lives".
import { advanceJob, armedInstant, isActive, occurrenceKind } from '../jobs/lifecycle.js';
import type { Job, Trigger } from '../jobs/model.js';
import { CLAIM_LEASE_MS } from '../store/lease.js';
import type { JobTxnView, LedgerEntry, Owner } from '../store/store.js';

/** A fire may arrive this much before its fire_at (clock skew between NAS and us; docs/contract.md). */
export const EARLY_SKEW_MS = 60_000;
/**
 * How long a claim protects its run: a lease, renewed while the run goes on (src/store/lease.ts,
 * docs/architecture.md "The claim lease"). Across hosts nothing else tells a dead owner from a live one.
 */
export function claimTtlMs(): number {
  return CLAIM_LEASE_MS;
}

/**
 * Whether a claim by this trigger is also the durable record that its run started. A process that finds
 * an occurrence itself (its builtin timer, the misfire rule, a manual run) starts the run right after
 * the claim, with nothing in between that another delivery would have to take over: no reply to send,
 * no NAS call. So the claim counts as the start, the run record is written beside the run rather than
 * before it, and an orphaned row of such a claim is never taken over (docs/architecture.md, "One run per
 * occurrence"). A NAS delivery's claim (and a retry's, whoever delivers it) is followed by the 202 and
 * the next arm: a process that dies there never started the run, so its start is recorded separately.
 */
export function claimStartsRun(trigger: Trigger): boolean {
  return trigger === 'builtin' || trigger === 'misfire' || trigger === 'manual';
}

/** A `claimed` row whose run can no longer be going on: its owner died, or its TTL ran out. */
export function isOrphaned(entry: LedgerEntry, now: number, isAlive: (owner: Owner) => boolean): boolean {
  return entry.status === 'claimed' && (entry.expires_at <= now || !isAlive(entry.owner));
}

/**
 * Which occurrence a delivery without fire_at means: of the job's armed instant and the latest occurrence
 * in its ledger, the one closest to now, provided it is within the early-fire window (the armed instant
 * may be overdue by any amount: a late delivery after an outage). The latest ledger occurrence makes a
 * second delivery of an occurrence already claimed a duplicate, instead of an early claim of the next
 * one (which would run it ahead of time and leave its own delivery answered `duplicate`). A tie goes to
 * the ledger: answering a duplicate never runs anything twice. Null: nothing is due (`stale`).
 */
export function currentOccurrence(
  armed: number | null,
  latestClaimed: number | undefined,
  now: number,
): number | null {
  const armedDue = armed !== null && armed <= now + EARLY_SKEW_MS;
  const latestRecent = latestClaimed !== undefined && Math.abs(now - latestClaimed) <= EARLY_SKEW_MS;
  if (armedDue && latestRecent)
    return Math.abs(armed - now) < Math.abs(latestClaimed - now) ? armed : latestClaimed;
  if (armedDue) return armed;
  if (latestRecent) return latestClaimed;
  return null;
}

export interface ClaimAsk {
  /**
   * The occurrence asked for. Undefined: for a delivery from an older NAS that omitted it, the occurrence
   * currently due (currentOccurrence); for a manual run, the request instant (`now`).
   */
  fire_at: number | undefined;
  /** Who delivered it (`nas`, `builtin`, `misfire`) or asked for it (`manual`). */
  trigger: Trigger;
  now: number;
  isAlive: (owner: Owner) => boolean;
  /**
   * For an orphaned row at fire_at: whether the run it names had started (a run record exists), as the
   * caller looked it up. Unknown until the caller looked; the decision asks for it (`check_run`) rather
   * than guess, also when the row found names another run than the one looked up.
   */
  checkedRun?: { run_id: string; started: boolean };
  /**
   * Replaces the job rules with the caller's own step (store tests and benchmarks, which claim arbitrary
   * instants): given the fresh job, the advanced job or a refusal. Only the ledger rule then applies.
   */
  advance?: (job: Job, recovering: LedgerEntry | undefined, view: JobTxnView) => Job | { refuse: string };
}

export type ClaimDecision =
  | { kind: 'gone' }
  | { kind: 'inactive'; job: Job }
  | { kind: 'duplicate'; entry: LedgerEntry }
  | { kind: 'stale'; job: Job }
  | { kind: 'early'; job: Job; retryAfterSeconds: number }
  /** A manual run of a `forbid` job while a run of it is claimed by a live owner. */
  | { kind: 'busy'; job: Job; running: LedgerEntry }
  /** The caller's own `advance` refused. */
  | { kind: 'refused'; job: Job; reason: string }
  /** The row at fire_at is orphaned: look up whether its run started, then decide again. */
  | { kind: 'check_run'; fire_at: number; entry: LedgerEntry }
  | {
      kind: 'claim';
      fire_at: number;
      /** The trigger the row and the run are recorded with (`retry` for a pending retry's occurrence). */
      trigger: Trigger;
      attempt: number;
      /** The orphaned row this claim takes over (its dead owner's claim already advanced the job). */
      recovering: LedgerEntry | undefined;
      /** The job as it must be stored in the same write as the claim (advanced, counted). */
      job: Job;
    };

/**
 * The claim decision, the one place it is made (the reply table of docs/contract.md, rows 6–12, for every
 * trigger): from a job and its ledger, what to do with the occurrence asked for. Pure: the claim calls it
 * on a lock-free read to answer most deliveries without a write, then again on fresh state under the
 * job's lock, where the claim, the advanced next_run_at and the repeat count are written together.
 *
 * - A row that is settled, or claimed by a live owner within its TTL, is a duplicate: it can only stay one.
 * - An orphaned row whose run had started is a duplicate too (a one-shot must not fire twice; boot
 *   recovery books it `interrupted`); one whose run never started is taken over without counting again.
 *   A local trigger's claim counts as its run's start (claimStartsRun).
 * - A manual run takes a row at the request instant, does not move the schedule, and with concurrency
 *   `forbid` is refused while a live claim of the job exists.
 */
export function decideClaim(view: JobTxnView, ask: ClaimAsk): ClaimDecision {
  const job = view.job;
  if (job === undefined) return { kind: 'gone' };
  const manual = ask.trigger === 'manual';
  const scheduled = !manual && ask.advance === undefined;
  if (scheduled && !isActive(job)) return { kind: 'inactive', job };

  let fireAt = ask.fire_at ?? (manual ? ask.now : undefined);
  if (fireAt === undefined) {
    const current = currentOccurrence(armedInstant(job), view.latest()?.fire_at, ask.now);
    if (current === null) return { kind: 'stale', job };
    fireAt = current;
  }

  const existing = view.entry(fireAt);
  if (existing && !isOrphaned(existing, ask.now, ask.isAlive)) return { kind: 'duplicate', entry: existing };
  if (existing && scheduled) {
    if (claimStartsRun(existing.trigger)) return { kind: 'duplicate', entry: existing };
    const checked = ask.checkedRun?.run_id === existing.run_id ? ask.checkedRun : undefined;
    if (checked === undefined) return { kind: 'check_run', fire_at: fireAt, entry: existing };
    if (checked.started) return { kind: 'duplicate', entry: existing };
  }

  if (ask.advance) {
    const advanced = ask.advance(job, existing, view);
    if ('refuse' in advanced) return { kind: 'refused', job, reason: advanced.refuse };
    return {
      kind: 'claim',
      fire_at: fireAt,
      trigger: ask.trigger,
      attempt: 1,
      recovering: existing,
      job: advanced,
    };
  }

  if (manual) {
    if (job.concurrency === 'forbid') {
      const running = view.claimed().find((row) => !isOrphaned(row, ask.now, ask.isAlive));
      if (running) return { kind: 'busy', job, running };
    }
    return { kind: 'claim', fire_at: fireAt, trigger: 'manual', attempt: 1, recovering: existing, job };
  }

  // An orphaned claim means a process took this occurrence and died before answering NAS (which is why
  // NAS delivers it again): its claim already advanced the job, so the occurrence is no longer "current".
  const kind = existing ? (existing.trigger === 'retry' ? 'retry' : 'regular') : occurrenceKind(job, fireAt);
  if (kind === null) return { kind: 'stale', job };
  if (!existing && fireAt > ask.now + EARLY_SKEW_MS) {
    return { kind: 'early', job, retryAfterSeconds: Math.max(1, Math.ceil((fireAt - ask.now) / 1000)) };
  }
  const fired = ask.trigger === 'nas' ? { last_fire_at: ask.now } : {};
  const stored = existing
    ? { ...job, ...fired, updated_at: ask.now }
    : { ...advanceJob(job, fireAt, kind, ask.now), ...fired };
  return {
    kind: 'claim',
    fire_at: fireAt,
    trigger: kind === 'retry' ? 'retry' : (existing?.trigger ?? ask.trigger),
    attempt: kind === 'retry' ? Math.max(2, job.retry_attempt) : 1,
    recovering: existing,
    job: stored,
  };
}
