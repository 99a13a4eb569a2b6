import { describe, expect, it } from 'vitest';
import type { Job } from '../../src/jobs/model.js';
import { type ClaimAsk, decideClaim, EARLY_SKEW_MS } from '../../src/occurrence/decide.js';
import type { JobTxnView, LedgerEntry, Owner } from '../../src/store/store.js';
import { makeJob, T0 } from '../store/fixtures.js';

// The claim decision on its own: a job and its ledger in, one decision out. The fire route's reply table
// (test/fire/decision-table.test.ts) drives the same function through HTTP and a real store.

const ALIVE: Owner = { boot_id: 'alive', pid: 1, host: 'h' };
const DEAD: Owner = { boot_id: 'dead', pid: 2, host: 'h' };
const isAlive = (owner: Owner) => owner.boot_id === 'alive';
const NEXT = T0 + 60_000;

function view(job: Job | undefined, rows: LedgerEntry[] = []): JobTxnView {
  return {
    job,
    entry: (fireAt) => rows.find((row) => row.fire_at === fireAt),
    latest: () => [...rows].sort((a, b) => b.fire_at - a.fire_at)[0],
    claimed: () => rows.filter((row) => row.status === 'claimed'),
  };
}

function row(fireAt: number, overrides: Partial<LedgerEntry> = {}): LedgerEntry {
  return {
    job_id: 'a',
    fire_at: fireAt,
    status: 'claimed',
    trigger: 'nas',
    run_id: `run-${fireAt}`,
    owner: ALIVE,
    claimed_at: fireAt,
    expires_at: fireAt + 600_000,
    ...overrides,
  };
}

function ask(overrides: Partial<ClaimAsk> = {}): ClaimAsk {
  return { fire_at: NEXT, trigger: 'nas', now: NEXT, isAlive, ...overrides };
}

describe('decideClaim', () => {
  it('claims the armed occurrence: counts it, moves next_run_at past it and notes the NAS delivery', () => {
    const decision = decideClaim(view(makeJob('a')), ask());
    expect(decision).toMatchObject({ kind: 'claim', fire_at: NEXT, trigger: 'nas', attempt: 1 });
    if (decision.kind !== 'claim') throw new Error('expected a claim');
    expect(decision.recovering).toBeUndefined();
    expect(decision.job.repeat.completed).toBe(1);
    expect(decision.job.next_run_at).toBe(NEXT + 60_000);
    expect(decision.job.last_fire_at).toBe(NEXT);
    const local = decideClaim(view(makeJob('a')), ask({ trigger: 'builtin' }));
    expect(local.kind === 'claim' && local.job.last_fire_at).toBeUndefined();
  });

  it('answers in the reply table’s order: gone, inactive, duplicate, stale, early', () => {
    expect(decideClaim(view(undefined), ask())).toEqual({ kind: 'gone' });
    const paused = makeJob('a', { state: 'paused' });
    expect(decideClaim(view(paused, [row(NEXT)]), ask()).kind).toBe('inactive');
    expect(decideClaim(view(makeJob('a'), [row(NEXT)]), ask()).kind).toBe('duplicate');
    expect(decideClaim(view(makeJob('a')), ask({ fire_at: NEXT - 60_000 })).kind).toBe('stale');
    const far = NEXT + EARLY_SKEW_MS + 5_000;
    const early = decideClaim(view(makeJob('a', { next_run_at: far })), ask({ fire_at: far }));
    expect(early).toMatchObject({ kind: 'early', retryAfterSeconds: 65 });
  });

  it('never replaces a settled row, even one whose owner is gone', () => {
    const settled = row(NEXT, { status: 'finished', owner: DEAD, expires_at: 0 });
    expect(decideClaim(view(makeJob('a'), [settled]), ask())).toEqual({ kind: 'duplicate', entry: settled });
  });

  it('asks whether an orphaned claim’s run started before taking it over', () => {
    const orphan = row(NEXT, { owner: DEAD });
    // The dead owner's claim already advanced the job: the occurrence is no longer next_run_at.
    const advanced = makeJob('a', { next_run_at: NEXT + 60_000, repeat: { times: null, completed: 1 } });
    expect(decideClaim(view(advanced, [orphan]), ask())).toEqual({
      kind: 'check_run',
      fire_at: NEXT,
      entry: orphan,
    });
    expect(
      decideClaim(view(advanced, [orphan]), ask({ checkedRun: { run_id: orphan.run_id, started: true } })),
    ).toEqual({
      kind: 'duplicate',
      entry: orphan,
    });
    // A check of another run says nothing about this row's.
    expect(
      decideClaim(view(advanced, [orphan]), ask({ checkedRun: { run_id: 'another-run', started: false } }))
        .kind,
    ).toBe('check_run');
    const taken = decideClaim(
      view(advanced, [orphan]),
      ask({ checkedRun: { run_id: orphan.run_id, started: false } }),
    );
    expect(taken).toMatchObject({ kind: 'claim', fire_at: NEXT, recovering: orphan });
    // Not counted twice, not moved again.
    expect(taken.kind === 'claim' && taken.job.repeat.completed).toBe(1);
    expect(taken.kind === 'claim' && taken.job.next_run_at).toBe(NEXT + 60_000);
  });

  it('never takes over an orphaned claim of a local trigger: its claim was its run’s start', () => {
    const advanced = makeJob('a', { next_run_at: NEXT + 60_000, repeat: { times: null, completed: 1 } });
    for (const trigger of ['builtin', 'misfire', 'manual'] as const) {
      const orphan = row(NEXT, { owner: DEAD, trigger });
      // No run record to look up: even one that says the run never started would not change it.
      expect(decideClaim(view(advanced, [orphan]), ask())).toEqual({ kind: 'duplicate', entry: orphan });
      expect(
        decideClaim(view(advanced, [orphan]), ask({ checkedRun: { run_id: orphan.run_id, started: false } })),
      ).toEqual({
        kind: 'duplicate',
        entry: orphan,
      });
    }
    const retry = row(NEXT, { owner: DEAD, trigger: 'retry' });
    expect(decideClaim(view(advanced, [retry]), ask()).kind).toBe('check_run');
  });

  it('an expired claim is an orphan even when its owner looks alive', () => {
    const expired = row(NEXT, { expires_at: NEXT });
    expect(decideClaim(view(makeJob('a'), [expired]), ask()).kind).toBe('check_run');
  });

  it('a pending retry’s occurrence is recorded `retry` with its attempt number', () => {
    const at = T0 + 30_000;
    const job = makeJob('a', { retry_at: at, retry_attempt: 3 });
    const decision = decideClaim(view(job), ask({ fire_at: at, now: at }));
    expect(decision).toMatchObject({ kind: 'claim', trigger: 'retry', attempt: 3 });
    expect(decision.kind === 'claim' && decision.job.retry_at).toBeNull();
    expect(decision.kind === 'claim' && decision.job.repeat.completed).toBe(0);
  });

  it('a delivery without fire_at means the occurrence currently due', () => {
    expect(decideClaim(view(makeJob('a')), ask({ fire_at: undefined }))).toMatchObject({
      kind: 'claim',
      fire_at: NEXT,
    });
    const nothingDue = makeJob('a', { next_run_at: NEXT + 3_600_000 });
    expect(decideClaim(view(nothingDue), ask({ fire_at: undefined })).kind).toBe('stale');
  });

  it('a manual run takes the request instant, leaves the schedule alone and runs paused jobs too', () => {
    const paused = makeJob('a', { state: 'paused', concurrency: 'allow' });
    const manual = ask({ trigger: 'manual', fire_at: undefined });
    const decision = decideClaim(view(paused, [row(T0)]), manual);
    expect(decision).toMatchObject({ kind: 'claim', fire_at: NEXT, trigger: 'manual', job: paused });
    // Two manual runs in one millisecond: the second is the first one's duplicate.
    expect(decideClaim(view(paused, [row(NEXT)]), manual).kind).toBe('duplicate');
  });

  it('a manual run of a `forbid` job is refused while a live claim of it exists, not for a dead one', () => {
    const job = makeJob('a', { concurrency: 'forbid' });
    const live = row(T0, { trigger: 'builtin' });
    const manual = ask({ trigger: 'manual', fire_at: undefined });
    expect(decideClaim(view(job, [live]), manual)).toEqual({ kind: 'busy', job, running: live });
    expect(decideClaim(view(job, [row(T0, { owner: DEAD })]), manual).kind).toBe('claim');
  });

  it('a caller’s own step replaces the job rules; the ledger rule still holds', () => {
    const paused = makeJob('a', { state: 'paused' });
    const step = (job: Job) => ({ ...job, name: 'stepped' });
    const claimed = decideClaim(view(paused), ask({ fire_at: T0, advance: step }));
    expect(claimed.kind === 'claim' && claimed.job.name).toBe('stepped');
    expect(decideClaim(view(paused, [row(T0)]), ask({ fire_at: T0, advance: step })).kind).toBe('duplicate');
    const refused = decideClaim(view(paused), ask({ fire_at: T0, advance: () => ({ refuse: 'no' }) }));
    expect(refused).toMatchObject({ kind: 'refused', reason: 'no' });
  });
});
