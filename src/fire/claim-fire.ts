import { randomUUID } from 'node:crypto';
import { advanceJob, armedInstant, isActive, occurrenceKind, runTimeoutMs } from '../jobs/jobs.js';
import type { Job, Trigger } from '../jobs/model.js';
import { claimOccurrence, isOrphaned } from '../store/claim.js';
import { isOwnerAlive } from '../store/owner.js';
import type { LedgerEntry, Owner, Store } from '../store/store.js';

/** A fire may arrive this much before its fire_at (clock skew between NAS and us; docs/contract.md). */
export const EARLY_SKEW_MS = 60_000;
/** Margin added to the run timeout for the claim TTL, so long runs are never recovered while alive. */
export const CLAIM_TTL_MARGIN_MS = 120_000;

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
  | { kind: 'accepted'; accepted: AcceptedFire };

export interface ClaimFireRequest {
  job_id: string;
  /** Undefined when an older NAS omitted it: the occurrence currently due is meant (currentOccurrence). */
  fire_at: number | undefined;
  /** Who delivered it; a retry occurrence is always recorded with trigger `retry`. */
  trigger: Trigger;
  now: number;
  owner: Owner;
  isAlive?: (owner: Owner) => boolean;
  /** Where to report a claim whose durability could not be confirmed. */
  log?: (obj: Record<string, unknown>, msg: string) => void;
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

/**
 * The fire endpoint's decision table (docs/contract.md) for every trigger (NAS fire, builtin timer, misfire catch-up): decide from a lock-free
 * read, then claim under the job's lock, where the decision is re-made on fresh state. The claim, the
 * advanced next_run_at and the repeat count are one durable write; a store failure propagates (row 11).
 */
export async function claimFire(store: Store, req: ClaimFireRequest): Promise<FireOutcome> {
  const isAlive = req.isAlive ?? isOwnerAlive;
  const view = await store.peek(req.job_id);
  const job = view.job;
  if (!job) return { kind: 'gone' };
  if (!isActive(job)) return { kind: 'inactive', job };

  let fireAt = req.fire_at;
  if (fireAt === undefined) {
    const current = currentOccurrence(armedInstant(job), view.latest()?.fire_at, req.now);
    if (current === null) return { kind: 'stale', job };
    fireAt = current;
  }

  const existing = view.entry(fireAt);
  if (existing && !isOrphaned(existing, req.now, isAlive)) return { kind: 'duplicate', entry: existing };
  // A run that had started when its process died is not run again (a one-shot must not fire
  // twice); boot recovery books it `interrupted`. Only a claim whose run never started is taken over.
  if (existing && (await store.getRun(job.id, existing.run_id)))
    return { kind: 'duplicate', entry: existing };
  // An orphaned claim means a process took this occurrence and died before answering NAS (which is why
  // NAS delivers it again): its claim already advanced the job, so the occurrence is no longer "current".
  const kind = existing ? (existing.trigger === 'retry' ? 'retry' : 'regular') : occurrenceKind(job, fireAt);
  if (kind === null) return { kind: 'stale', job };
  if (!existing && fireAt > req.now + EARLY_SKEW_MS) {
    return { kind: 'early', job, retryAfterSeconds: Math.max(1, Math.ceil((fireAt - req.now) / 1000)) };
  }

  const runId = randomUUID();
  const trigger: Trigger = kind === 'retry' ? 'retry' : (existing?.trigger ?? req.trigger);
  const attempt = kind === 'retry' ? Math.max(2, job.retry_attempt) : 1;
  const at = fireAt;
  const claim = claimOccurrence(
    store,
    {
      job_id: job.id,
      fire_at: at,
      run_id: runId,
      trigger,
      owner: req.owner,
      now: req.now,
      ttl_ms: runTimeoutMs(job) + CLAIM_TTL_MARGIN_MS,
      checked: true,
      advance: (fresh, recovering) => {
        if (!isActive(fresh)) return { refuse: 'inactive' };
        const fired = req.trigger === 'nas' ? { last_fire_at: req.now } : {};
        if (recovering) return { ...fresh, ...fired, updated_at: req.now };
        const freshKind = occurrenceKind(fresh, at);
        if (freshKind === null) return { refuse: 'stale' };
        return { ...advanceJob(fresh, at, freshKind, req.now), ...fired };
      },
    },
    isAlive,
  );
  let result: Awaited<typeof claim>;
  try {
    result = await claim;
  } catch (err) {
    // The write can fail after its rename, when the directory fsync fails: our row is then in place but
    // may not survive a crash. Answering 503 would make NAS retry into our own live claim (`duplicate`),
    // and nobody would ever run the occurrence; so the claim is kept and run, and the risk is logged.
    const landed = await store.getLedgerEntry(job.id, at).catch(() => undefined);
    const advanced = landed?.run_id === runId ? await store.getJob(job.id).catch(() => undefined) : undefined;
    if (!landed || !advanced) throw err;
    req.log?.({ err, job_id: job.id, fire_at: at }, 'claim written but its durability is not confirmed');
    result = { outcome: existing ? 'recovered' : 'claimed', job: advanced, entry: landed };
  }
  switch (result.outcome) {
    case 'job_missing':
      return { kind: 'gone' };
    case 'duplicate':
      return { kind: 'duplicate', entry: result.entry };
    case 'refused':
      return result.reason === 'inactive'
        ? { kind: 'inactive', job: result.job }
        : { kind: 'stale', job: result.job };
    default:
      return {
        kind: 'accepted',
        accepted: {
          job: result.job,
          fire_at: at,
          run_id: runId,
          trigger,
          attempt,
          recovered: result.outcome === 'recovered',
        },
      };
  }
}
