import type { Job, Target } from '../../src/jobs/model.js';
import type { TargetContext } from '../../src/run/targets/types.js';

export const T0 = Date.parse('2026-01-01T00:00:00Z');

export function makeJob(overrides: Partial<Job> = {}): Job {
  const target: Target = overrides.target ?? { type: 'handler', name: 'noop' };
  return {
    id: 'job-1',
    name: 'job 1',
    schedule: 'every 15m',
    timezone: 'UTC',
    target,
    enabled: true,
    state: 'scheduled',
    repeat: { times: null, completed: 0 },
    retry: null,
    concurrency: 'forbid',
    misfire: { policy: 'run_once', grace_seconds: 300 },
    timeout_seconds: 600,
    anchor_at: T0,
    next_run_at: T0 + 15 * 60_000,
    retry_at: null,
    retry_attempt: 0,
    last_run_at: null,
    last_status: null,
    last_error: null,
    failure_streak: 0,
    source: 'api',
    created_at: T0,
    updated_at: T0,
    ...overrides,
  };
}

export function makeCtx(overrides: Partial<TargetContext> = {}): TargetContext {
  return {
    job: makeJob(),
    fire_at: T0,
    run_id: 'run-1',
    attempt: 1,
    signal: new AbortController().signal,
    timeoutMs: 10_000,
    outputLimitBytes: 8192,
    ...overrides,
  };
}

/**
 * Command targets inherit process.env; this machine sets NODE_EXTRA_CA_CERTS, which costs ~55 ms on
 * every node start, so tests that spawn node drop it for their duration. Returns the restore function.
 */
export function withoutExtraCaCerts(): () => void {
  const saved = process.env.NODE_EXTRA_CA_CERTS;
  delete process.env.NODE_EXTRA_CA_CERTS;
  return () => {
    if (saved !== undefined) process.env.NODE_EXTRA_CA_CERTS = saved;
  };
}
