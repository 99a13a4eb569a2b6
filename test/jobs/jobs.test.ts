import { describe, expect, it } from 'vitest';
import { buildJob } from '../../src/jobs/build.js';
import { runTimeoutMs } from '../../src/jobs/jobs.js';
import { advanceJob, armedInstant } from '../../src/jobs/lifecycle.js';
import type { JobSpecInput } from '../../src/jobs/model.js';

const NOW = Date.parse('2026-01-01T00:00:00.250Z');
const ctx = { now: NOW, defaultTimezone: 'UTC', allowCommands: false, source: 'api' as const };
const http = { type: 'http' as const, url: 'http://127.0.0.1:9/hook' };

function job(spec: Partial<JobSpecInput> = {}) {
  return buildJob({ id: 'j', schedule: 'every 1m', target: http, ...spec }, ctx);
}

describe('buildJob', () => {
  it('anchors interval and relative schedules on a whole second, so every fire_at has second precision', () => {
    const every = job();
    expect(every.anchor_at).toBe(Date.parse('2026-01-01T00:00:01Z'));
    expect(every.next_run_at! % 1000).toBe(0);
    expect(job({ schedule: 'in 45m' }).next_run_at).toBe(Date.parse('2026-01-01T00:45:01Z'));
  });

  it('gives a spec without repeat the default of its schedule kind, also when the kind changes', () => {
    const once = job({ schedule: 'in 5m' });
    expect(once.repeat.times).toBe(1);
    const recurring = buildJob({ id: 'j', schedule: 'every 1m', target: http }, ctx, once);
    expect(recurring.repeat.times).toBeNull();
  });

  it('continues from now, not from where it stopped, when a disabled job is enabled again', () => {
    const disabled = job({ enabled: false });
    const month = 30 * 86_400_000;
    const later = { ...ctx, now: NOW + month };
    const enabled = buildJob({ id: 'j', schedule: 'every 1m', target: http, enabled: true }, later, disabled);
    expect(enabled.next_run_at).toBeGreaterThan(later.now);
    expect(enabled.next_run_at! - later.now).toBeLessThanOrEqual(60_000);
  });
});

describe('advanceJob', () => {
  it('drops a pending retry that the claimed regular occurrence overtakes', () => {
    const base = job();
    const at = base.next_run_at!;
    const withRetry = { ...base, retry_at: at, retry_attempt: 2 };
    expect(armedInstant(withRetry)).toBe(at);
    const advanced = advanceJob(withRetry, at, 'regular', at);
    expect(advanced.retry_at).toBeNull();
    expect(armedInstant(advanced)).toBe(at + 60_000);
  });

  it('keeps a pending retry that is still ahead of the claimed occurrence', () => {
    const base = job();
    const at = base.next_run_at!;
    const advanced = advanceJob({ ...base, retry_at: at + 30_000 }, at, 'regular', at);
    expect(advanced.retry_at).toBe(at + 30_000);
    expect(armedInstant(advanced)).toBe(at + 30_000);
  });
});

describe('runTimeoutMs', () => {
  it("uses an http target's own timeout over the job's, so the claim outlives the run", () => {
    expect(runTimeoutMs(job({ timeout_seconds: 60 }))).toBe(60_000);
    expect(runTimeoutMs(job({ timeout_seconds: 60, target: { ...http, timeout_seconds: 3600 } }))).toBe(
      3_600_000,
    );
  });
});
