import { describe, expect, it } from 'vitest';
import {
  completeIfDone,
  jobAfterMissed,
  jobAfterRun,
  misfireAction,
  pastMisfireGrace,
  patchedSpec,
  pauseJob,
  resumeJob,
} from '../../src/jobs/lifecycle.js';
import type { RunRecord } from '../../src/jobs/model.js';
import { makeJob, makeRun, T0 } from '../store/fixtures.js';

const NOW = T0 + 10 * 60_000;

function finished(status: RunRecord['status']): RunRecord {
  return makeRun('a', 'r1', { status, started_at: NOW, finished_at: NOW + 1_000 });
}

describe('job lifecycle rules', () => {
  it('completes a scheduled job with nothing left to run, and only a scheduled one', () => {
    const done = makeJob('a', { next_run_at: null });
    expect(completeIfDone(done).state).toBe('completed');
    expect(completeIfDone({ ...done, retry_at: NOW }).state).toBe('scheduled');
    expect(completeIfDone({ ...done, state: 'error' }).state).toBe('error');
    expect(completeIfDone({ ...done, state: 'paused' }).state).toBe('paused');
    expect(completeIfDone(makeJob('a')).state).toBe('scheduled');
  });

  it('pause drops a pending retry; a completed job stays completed', () => {
    const paused = pauseJob(makeJob('a', { retry_at: NOW, retry_attempt: 2 }), NOW);
    expect(paused).toMatchObject({ state: 'paused', retry_at: null, retry_attempt: 0, updated_at: NOW });
    const completed = makeJob('a', { state: 'completed', next_run_at: null });
    expect(pauseJob(completed, NOW)).toBe(completed);
  });

  it('resume continues from now, and never revives a series that ran its course', () => {
    const paused = makeJob('a', { state: 'paused', next_run_at: T0 });
    const resumed = resumeJob(paused, NOW);
    expect(resumed.state).toBe('scheduled');
    expect(resumed.next_run_at).toBeGreaterThan(NOW);
    expect(resumed.next_run_at! - NOW).toBeLessThanOrEqual(60_000);
    const ranOut = makeJob('a', { state: 'paused', repeat: { times: 3, completed: 3 } });
    expect(resumeJob(ranOut, NOW)).toMatchObject({ state: 'completed', next_run_at: null });
  });

  it('PATCH gives a schedule of the other kind its own repeat default unless the patch sets one', () => {
    const target = { type: 'handler' as const, name: 'noop' };
    const recurring = { schedule: 'every 1m', target, repeat: { times: null } };
    expect(patchedSpec(recurring, { schedule: 'in 5m' }).repeat).toEqual({ times: 1 });
    expect(patchedSpec(recurring, { schedule: 'every 5m' }).repeat).toEqual({ times: null });
    expect(patchedSpec(recurring, { schedule: 'in 5m', repeat: { times: 2 } }).repeat).toEqual({ times: 2 });
    expect(
      patchedSpec({ schedule: 'in 5m', target, repeat: { times: 1 } }, { schedule: 'every 1m' }).repeat,
    ).toEqual({
      times: null,
    });
  });

  it('a failed run leaves a retry before the next occurrence, and completes a finished one-shot when it succeeds', () => {
    const retry = { max_attempts: 3, backoff_seconds: 10, max_backoff_seconds: 60 };
    const job = makeJob('a', { retry, next_run_at: NOW + 3_600_000 });
    const failed = jobAfterRun(job, finished('failed'), { failed: true, retryable: true, attempt: 1 });
    expect(failed).toMatchObject({ retry_at: NOW + 11_000, retry_attempt: 2, failure_streak: 1 });
    const lastAttempt = jobAfterRun(job, finished('failed'), { failed: true, retryable: true, attempt: 3 });
    expect(lastAttempt).toMatchObject({ retry_at: null, retry_attempt: 0, failure_streak: 1 });
    const oneShot = makeJob('a', { next_run_at: null, repeat: { times: 1, completed: 1 } });
    const ok = jobAfterRun(oneShot, finished('succeeded'), { failed: false, retryable: true, attempt: 1 });
    expect(ok).toMatchObject({ state: 'completed', last_status: 'succeeded', failure_streak: 0 });
  });

  it('the misfire rule: past grace, run_once runs a recurring job, a one-shot and `skip` are missed', () => {
    const job = makeJob('a');
    expect(pastMisfireGrace(job, NOW - 300_000, NOW)).toBe(false);
    expect(pastMisfireGrace(job, NOW - 300_001, NOW)).toBe(true);
    expect(misfireAction(job)).toBe('run');
    expect(misfireAction(makeJob('a', { misfire: { policy: 'skip', grace_seconds: 300 } }))).toBe('miss');
    expect(misfireAction(makeJob('a', { schedule: 'at 2026-01-01T00:05:00Z' }))).toBe('miss');
  });

  it('a missed occurrence counts and moves the schedule on; a one-shot is then completed', () => {
    const missed = jobAfterMissed(makeJob('a'), T0 + 60_000, NOW);
    expect(missed).toMatchObject({ last_status: 'missed', repeat: { completed: 1 }, state: 'scheduled' });
    expect(missed!.next_run_at).toBeGreaterThan(NOW);
    const oneShot = makeJob('a', { schedule: 'at 2026-01-01T00:01:00Z', repeat: { times: 1, completed: 0 } });
    expect(jobAfterMissed(oneShot, T0 + 60_000, NOW)).toMatchObject({
      state: 'completed',
      next_run_at: null,
    });
    expect(jobAfterMissed(makeJob('a'), T0, NOW)).toBeNull();
  });
});
