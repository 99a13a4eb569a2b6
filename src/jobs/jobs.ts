import type { Job } from './model.js';
import { parseSchedule, type Schedule } from './schedule.js';

// Parsing a cron expression is the expensive part of computing an occurrence; jobs are re-read from the
// store on every fire, so compiled schedules are memoised by everything that determines them.
const compiled = new Map<string, Schedule>();
const COMPILED_LIMIT = 20_000;

export function compileSchedule(job: Pick<Job, 'schedule' | 'timezone' | 'anchor_at'>): Schedule {
  const key = `${job.timezone}\u0000${job.anchor_at}\u0000${job.schedule}`;
  let schedule = compiled.get(key);
  if (!schedule) {
    schedule = parseSchedule(job.schedule, { timezone: job.timezone, anchor: job.anchor_at });
    if (compiled.size >= COMPILED_LIMIT) compiled.clear();
    compiled.set(key, schedule);
  }
  return schedule;
}

/**
 * How long one run of the job may take: an http target's own timeout wins over the job's. The claim TTL is
 * sized from it, so a run is never recovered (and run again) while it may still be going: a long job must not be killed or run twice for outliving its claim.
 */
export function runTimeoutMs(job: Pick<Job, 'target' | 'timeout_seconds'>): number {
  const own = job.target.type === 'http' ? job.target.timeout_seconds : undefined;
  return (own ?? job.timeout_seconds) * 1000;
}

/** Whole seconds, rounded up: every instant sent to NAS has second precision (docs/contract.md, Instants on the wire). */
export function toWholeSecond(ms: number): number {
  return Math.ceil(ms / 1000) * 1000;
}
