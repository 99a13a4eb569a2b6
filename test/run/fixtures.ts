import type { Job } from '../../src/jobs/model.js';
import type { TargetContext } from '../../src/run/targets/types.js';
import { makeJob as makeStoredJob, T0 } from '../helpers/jobs.js';

export { T0 };

/** The runner tests' job: `job-1`, every 15 minutes (the shared stored shape, test/helpers/jobs.ts). */
export function makeJob(overrides: Partial<Job> = {}): Job {
  return makeStoredJob(overrides.id ?? 'job-1', {
    name: 'job 1',
    schedule: 'every 15m',
    next_run_at: T0 + 15 * 60_000,
    ...overrides,
  });
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
