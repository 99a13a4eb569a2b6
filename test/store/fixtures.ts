import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Job, RunRecord } from '../../src/jobs/model.js';
import type { ClaimRequest } from '../../src/occurrence/claim.js';
import { currentOwner } from '../../src/store/owner.js';
import type { Owner } from '../../src/store/store.js';

export const T0 = Date.parse('2026-01-01T00:00:00Z');

export function makeJob(id: string, overrides: Partial<Job> = {}): Job {
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

/** Advances like the fire path: next occurrence strictly after fire_at, one more repeat counted. */
export function stepAdvance(fireAt: number) {
  return (job: Job): Job => ({
    ...job,
    next_run_at: fireAt + 60_000,
    repeat: { ...job.repeat, completed: job.repeat.completed + 1 },
  });
}

export function claimReq(jobId: string, fireAt: number, overrides: Partial<ClaimRequest> = {}): ClaimRequest {
  return {
    job_id: jobId,
    fire_at: fireAt,
    run_id: randomUUID(),
    trigger: 'nas',
    owner: currentOwner(),
    now: T0,
    ttl_ms: 600_000,
    advance: stepAdvance(fireAt),
    ...overrides,
  };
}

/** A pid that existed on this host and has exited: a real dead process, not a guess. */
export async function deadPid(): Promise<number> {
  const env = { ...process.env };
  delete env['NODE_EXTRA_CA_CERTS'];
  const child = spawn(process.execPath, ['-e', '0'], { env, stdio: 'ignore' });
  const pid = child.pid!;
  await new Promise((resolve) => child.on('exit', resolve));
  return pid;
}

/** An owner from an earlier process on this host that has died. */
export async function deadOwner(): Promise<Owner> {
  return { boot_id: randomUUID(), pid: await deadPid(), host: hostname() };
}
