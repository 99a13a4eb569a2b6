import type { Job, RunRecord } from '../../src/jobs/model.js';

/**
 * The one hand-written Job and RunRecord of the test suite: stored shapes built directly, without the
 * validation of buildJob (tests that want a job made the way users make them use buildJob, as
 * test/helpers/scheduler-fixtures.ts does). A field added to Job is added here once.
 */
export const T0 = Date.parse('2026-01-01T00:00:00Z');

/** A scheduled `every 1m` handler job, due one minute after T0. */
export function makeJob(id = 'job-1', overrides: Partial<Job> = {}): Job {
  return {
    id,
    name: id,
    schedule: 'every 1m',
    timezone: 'UTC',
    target: { type: 'handler', name: 'noop' },
    enabled: true,
    state: 'scheduled',
    repeat: { times: null, completed: 0 },
    retry: null,
    concurrency: 'forbid',
    misfire: { policy: 'run_once', grace_seconds: 300 },
    timeout_seconds: 600,
    anchor_at: T0,
    next_run_at: T0 + 60_000,
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

/** A run of `jobId` in progress, fired by NAS at T0. */
export function makeRun(jobId: string, runId: string, overrides: Partial<RunRecord> = {}): RunRecord {
  return {
    run_id: runId,
    job_id: jobId,
    fire_at: T0,
    trigger: 'nas',
    status: 'running',
    attempt: 1,
    started_at: T0,
    finished_at: null,
    output: null,
    error: null,
    ...overrides,
  };
}
