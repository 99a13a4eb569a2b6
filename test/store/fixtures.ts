import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Job } from '../../src/jobs/model.js';
import type { ClaimRequest } from '../../src/occurrence/claim.js';
import { currentOwner } from '../../src/store/owner.js';
import type { Owner } from '../../src/store/store.js';
import { T0 } from '../helpers/jobs.js';

export { makeJob, makeRun, T0 } from '../helpers/jobs.js';

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
