import { closeSync, openSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { ChronosError } from '../../src/errors.js';
import { retryDelayMs } from '../../src/jobs/lifecycle.js';
import type { Job, RunRecord, Trigger } from '../../src/jobs/model.js';
import { settleRun } from '../../src/occurrence/settle.js';
import {
  COMMANDS_REFUSED_ERROR,
  END_WRITE_RETRY_BASE_MS,
  END_WRITE_RETRY_FOR_MS,
  END_WRITE_RETRY_MSG,
  INTERRUPTED_ERROR,
  JOB_REMOVED_ERROR,
  JobRunner,
  LOCAL_RETRY_BASE_MS,
  LOCAL_RETRY_MSG,
} from '../../src/run/runner.js';
import {
  createHandlerRegistry,
  type HandlerFn,
  type HandlerRegistry,
} from '../../src/run/targets/handler.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { currentOwner } from '../../src/store/owner.js';
import type { LedgerEntry, Owner } from '../../src/store/store.js';
import { flushMicrotasks, ManualClock } from '../helpers/manual-clock.js';
import { makeJob, T0, withoutExtraCaCerts } from './fixtures.js';

interface Harness {
  store: MemoryStore;
  clock: ManualClock;
  handlers: HandlerRegistry;
  runner: JobRunner;
  logs: Array<Record<string, unknown>>;
}

/**
 * A store whose writes fail as a PostgreSQL store's do while its database is down: `store_unavailable`,
 * nothing written. Reads still answer (they are not what these tests are about).
 */
class OutageStore extends MemoryStore {
  down = false;
  refused = 0;
  override updateRun(...args: Parameters<MemoryStore['updateRun']>): ReturnType<MemoryStore['updateRun']> {
    this.refuseWhileDown();
    return super.updateRun(...args);
  }
  override appendRun(run: RunRecord): Promise<void> {
    this.refuseWhileDown();
    return super.appendRun(run);
  }
  override transact<T>(...args: Parameters<MemoryStore['transact']>): Promise<T> {
    this.refuseWhileDown();
    return super.transact(...args) as Promise<T>;
  }
  private refuseWhileDown(): void {
    if (!this.down) return;
    this.refused += 1;
    throw new ChronosError('store_unavailable', 'PostgreSQL store: write failed: connection refused');
  }
}

function harness(
  options: { allowCommands?: boolean; outputLimitBytes?: number; store?: MemoryStore } = {},
): Harness {
  const store = options.store ?? new MemoryStore();
  const clock = new ManualClock(T0);
  const handlers = createHandlerRegistry();
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      logs.push(JSON.parse(String(chunk)));
      done();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  const runner = new JobRunner({
    store,
    clock,
    logger,
    handlers,
    allowCommands: options.allowCommands ?? false,
    outputLimitBytes: options.outputLimitBytes,
  });
  return { store, clock, handlers, runner, logs };
}

let runSeq = 0;

/** What the fire path does before handing over: write the `claimed` row (the runner never claims). */
async function claim(
  h: Harness,
  job: Job,
  fireAt: number,
  opts: { owner?: Owner; trigger?: Trigger; ttlMs?: number; runId?: string } = {},
): Promise<LedgerEntry> {
  const entry: LedgerEntry = {
    job_id: job.id,
    fire_at: fireAt,
    status: 'claimed',
    trigger: opts.trigger ?? 'nas',
    run_id: opts.runId ?? `run-${++runSeq}`,
    owner: opts.owner ?? currentOwner(),
    claimed_at: h.clock.now(),
    expires_at: h.clock.now() + (opts.ttlMs ?? 3_600_000),
  };
  await h.store.transact(job.id, () => ({ ledger: [entry], result: undefined }));
  return entry;
}

async function fire(h: Harness, job: Job, fireAt: number, attempt = 1, trigger: Trigger = 'nas') {
  const entry = await claim(h, job, fireAt, { trigger });
  return h.runner.run({ job, fire_at: fireAt, run_id: entry.run_id, trigger, attempt });
}

/** A handler that stays in flight until released, and records the signal it was given. */
function gate() {
  let release: (value?: unknown) => void = () => {};
  const signals: AbortSignal[] = [];
  let entered: () => void = () => {};
  const started = new Promise<void>((resolve) => {
    entered = resolve;
  });
  const released = new Promise((resolve) => {
    release = resolve;
  });
  const fn: HandlerFn = ({ signal }) => {
    signals.push(signal);
    entered();
    return new Promise((resolve, reject) => {
      signal.addEventListener('abort', () => reject(new Error('stopped')));
      void released.then(resolve);
    });
  };
  return { fn, release, started, signals };
}

describe('JobRunner: outcomes', () => {
  it('records the run as running, then succeeded, and updates the job summary', async () => {
    const h = harness();
    const job = await h.store.createJob(
      makeJob({ target: { type: 'handler', name: 'report', payload: { a: 1 } } }),
    );
    const seenDuringRun: string[] = [];
    h.handlers.register('report', async ({ payload, run_id, fire_at, attempt }) => {
      const run = await h.store.getRun(job.id, run_id);
      seenDuringRun.push(run!.status);
      h.clock.set(T0 + 1500);
      return { payload, fire_at, attempt };
    });
    const outcome = await fire(h, job, T0);
    expect(seenDuringRun).toEqual(['running']);
    expect(outcome.retry_at).toBeNull();
    expect(outcome.run).toMatchObject({
      job_id: job.id,
      fire_at: T0,
      trigger: 'nas',
      status: 'succeeded',
      attempt: 1,
      started_at: T0,
      finished_at: T0 + 1500,
      output: JSON.stringify({ payload: { a: 1 }, fire_at: T0, attempt: 1 }),
      error: null,
    });
    expect(await h.store.getRun(job.id, outcome.run.run_id)).toEqual(outcome.run);
    const ledger = await h.store.getLedgerEntry(job.id, T0);
    expect(ledger?.status).toBe('finished');
    const after = await h.store.getJob(job.id);
    expect(after).toMatchObject({
      last_run_at: T0,
      last_status: 'succeeded',
      last_error: null,
      failure_streak: 0,
      state: 'scheduled',
    });
    expect(h.runner.active).toBe(0);
  });

  it('logs one line at the start and one at the end of a run', async () => {
    const h = harness();
    const job = await h.store.createJob(makeJob({ target: { type: 'handler', name: 'noop' } }));
    h.handlers.register('noop', () => undefined);
    const { run } = await fire(h, job, T0, 1, 'manual');
    const lines = h.logs.filter((l) => l.run_id === run.run_id);
    expect(lines.map((l) => l.msg)).toEqual(['run started', 'run finished']);
    expect(lines[1]).toMatchObject({
      job_id: job.id,
      fire_at: '2026-01-01T00:00:00.000Z',
      trigger: 'manual',
      status: 'succeeded',
      duration_ms: 0,
    });
  });

  it('counts failures and schedules retries with exponential backoff up to the cap', async () => {
    const h = harness();
    const job = await h.store.createJob(
      makeJob({
        target: { type: 'handler', name: 'flaky' },
        retry: { max_attempts: 5, backoff_seconds: 30, max_backoff_seconds: 100 },
      }),
    );
    h.handlers.register('flaky', () => {
      throw new Error('database unavailable');
    });
    const expected = [30_000, 60_000, 100_000, 100_000];
    for (const [i, delay] of expected.entries()) {
      const attempt = i + 1;
      const now = h.clock.now();
      const outcome = await fire(h, job, T0 + attempt, attempt, attempt === 1 ? 'nas' : 'retry');
      expect(outcome.run).toMatchObject({ status: 'failed', error: 'database unavailable', attempt });
      expect(outcome.retry_at).toBe(now + delay);
      const after = await h.store.getJob(job.id);
      expect(after).toMatchObject({
        failure_streak: attempt,
        retry_at: now + delay,
        retry_attempt: attempt + 1,
        last_status: 'failed',
        last_error: 'database unavailable',
      });
      h.clock.set(now + delay);
    }
    // Attempt 5 is the last allowed: no further retry.
    const last = await fire(h, job, T0 + 5, 5, 'retry');
    expect(last.retry_at).toBeNull();
    expect(await h.store.getJob(job.id)).toMatchObject({
      failure_streak: 5,
      retry_at: null,
      retry_attempt: 0,
    });
  });

  it('arms a retry on a whole second, and none that the next regular occurrence would overtake', async () => {
    const h = harness();
    h.clock.set(T0 + 250);
    const job = await h.store.createJob(
      makeJob({
        target: { type: 'handler', name: 'broken' },
        retry: { max_attempts: 5, backoff_seconds: 30, max_backoff_seconds: 100 },
        next_run_at: T0 + 120_000,
      }),
    );
    h.handlers.register('broken', () => {
      throw new Error('down');
    });
    // 30 s after a failure at .250 s: NAS receives fire_at at second precision (docs/contract.md, Instants on the wire).
    expect((await fire(h, job, T0)).retry_at).toBe(T0 + 31_000);

    await h.store.updateJob(job.id, (j) => ({ ...j, next_run_at: T0 + 20_000, retry_at: null }));
    const soon = (await h.store.getJob(job.id))!;
    const outcome = await fire(h, soon, T0 + 1);
    expect(outcome.retry_at).toBeNull();
    expect(await h.store.getJob(job.id)).toMatchObject({ retry_at: null, failure_streak: 2 });
  });

  it('aborts at once a run that starts after abortAll (the process is stopping)', async () => {
    const h = harness();
    let executed = false;
    const job = await h.store.createJob(makeJob({ target: { type: 'handler', name: 'late' } }));
    h.handlers.register('late', () => {
      executed = true;
    });
    h.runner.abortAll('shutdown grace period over');
    const outcome = await fire(h, job, T0);
    expect(executed).toBe(false);
    expect(outcome.run).toMatchObject({ status: 'failed', error: 'aborted: shutdown grace period over' });
  });

  it('computes the backoff delay', () => {
    const policy = { max_attempts: 10, backoff_seconds: 10, max_backoff_seconds: 300 };
    expect([1, 2, 3, 4, 5, 6].map((a) => retryDelayMs(policy, a))).toEqual([
      10_000, 20_000, 40_000, 80_000, 160_000, 300_000,
    ]);
  });

  it('does not retry without a retry policy, and a success resets streak and pending retry', async () => {
    const h = harness();
    let fail = true;
    const job = await h.store.createJob(makeJob({ target: { type: 'handler', name: 'sometimes' } }));
    h.handlers.register('sometimes', () => {
      if (fail) throw new Error('nope');
      return 'fine';
    });
    expect((await fire(h, job, T0 + 1)).retry_at).toBeNull();
    expect((await fire(h, job, T0 + 2)).retry_at).toBeNull();
    expect(await h.store.getJob(job.id)).toMatchObject({ failure_streak: 2, retry_at: null });

    await h.store.updateJob(job.id, (j) => ({
      ...j,
      retry: { max_attempts: 3, backoff_seconds: 5, max_backoff_seconds: 60 },
    }));
    const withRetry = (await h.store.getJob(job.id))!;
    expect((await fire(h, withRetry, T0 + 3)).retry_at).toBe(h.clock.now() + 5000);
    fail = false;
    const ok = await fire(h, withRetry, T0 + 4, 2, 'retry');
    expect(ok.run).toMatchObject({ status: 'succeeded', output: 'fine' });
    expect(await h.store.getJob(job.id)).toMatchObject({
      failure_streak: 0,
      retry_at: null,
      retry_attempt: 0,
      last_status: 'succeeded',
      last_error: null,
    });
  });

  it('times a run out on the run clock and records timed_out (retryable)', async () => {
    const h = harness();
    const job = await h.store.createJob(
      makeJob({
        timeout_seconds: 30,
        target: { type: 'handler', name: 'hangs' },
        retry: { max_attempts: 2, backoff_seconds: 10, max_backoff_seconds: 60 },
      }),
    );
    const g = gate();
    h.handlers.register('hangs', g.fn);
    const pending = fire(h, job, T0);
    await g.started;
    await h.clock.advance(30_000);
    const outcome = await pending;
    expect(outcome.run).toMatchObject({
      status: 'timed_out',
      error: 'timed out after 30s',
      finished_at: T0 + 30_000,
    });
    expect(g.signals[0]!.aborted).toBe(true);
    expect(outcome.retry_at).toBe(T0 + 40_000);
    expect((await h.store.getJob(job.id))!.last_status).toBe('timed_out');
  });

  it('reports a handler that is not registered', async () => {
    const h = harness();
    const job = await h.store.createJob(makeJob({ target: { type: 'handler', name: 'missing' } }));
    const { run } = await fire(h, job, T0);
    expect(run).toMatchObject({ status: 'failed', error: 'no handler registered under "missing"' });
  });

  it('keeps history newest first', async () => {
    const h = harness();
    const job = await h.store.createJob(makeJob({ target: { type: 'handler', name: 'noop' } }));
    h.handlers.register('noop', () => 'ok');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push((await fire(h, job, T0 + i * 60_000)).run.run_id);
      await h.clock.advance(60_000);
    }
    const history = await h.store.listRuns(job.id);
    expect(history.map((r) => r.run_id)).toEqual(ids.reverse());
    expect(history.every((r) => r.status === 'succeeded')).toBe(true);
  });

  it('carries on when the job is deleted while it runs', async () => {
    const h = harness();
    const job = await h.store.createJob(makeJob({ target: { type: 'handler', name: 'deleter' } }));
    h.handlers.register('deleter', async () => {
      await h.store.removeJob(job.id);
      return 'done';
    });
    const outcome = await fire(h, job, T0);
    expect(outcome.run.status).toBe('succeeded');
    expect(outcome.retry_at).toBeNull();
    expect(h.logs.some((l) => l.msg === 'run finished; its job no longer exists')).toBe(true);
  });

  it('starts a NAS occurrence only once its run record is stored, a local trigger’s beside it', async () => {
    for (const [trigger, waitsForRecord] of [
      ['nas', true],
      ['retry', true],
      ['builtin', false],
      ['misfire', false],
      ['manual', false],
    ] as const) {
      const h = harness();
      const job = await h.store.createJob(makeJob({ target: { type: 'handler', name: 'probe' } }));
      let started = false;
      h.handlers.register('probe', () => {
        started = true;
        return 'ok';
      });
      // The run record's write is held until released, as a slow fsync would hold it.
      let releaseAppend: () => void = () => {};
      const appendHeld = new Promise<void>((resolve) => {
        releaseAppend = resolve;
      });
      const append = h.store.appendRun.bind(h.store);
      h.store.appendRun = async (run) => {
        await appendHeld;
        return append(run);
      };
      const entry = await claim(h, job, T0, { trigger });
      const outcome = h.runner.run({ job, fire_at: T0, run_id: entry.run_id, trigger, attempt: 1 });
      await flushMicrotasks();
      expect({ trigger, started }).toEqual({ trigger, started: !waitsForRecord });
      releaseAppend();
      const { run } = await outcome;
      expect({ trigger, started, status: run.status }).toEqual({
        trigger,
        started: true,
        status: 'succeeded',
      });
      // Either way the history ends with the run's outcome, written after its start record.
      expect(await h.store.listRuns(job.id)).toMatchObject([{ run_id: entry.run_id, status: 'succeeded' }]);
    }
  });

  it('does not start a run whose job was removed after the claim', async () => {
    const h = harness();
    const job = await h.store.createJob(makeJob({ target: { type: 'handler', name: 'never' } }));
    let called = false;
    h.handlers.register('never', () => {
      called = true;
    });
    const entry = await claim(h, job, T0);
    await h.store.removeJob(job.id);
    const outcome = await h.runner.run({
      job,
      fire_at: T0,
      run_id: entry.run_id,
      trigger: 'nas',
      attempt: 1,
    });
    expect(outcome).toMatchObject({ run: { status: 'skipped', error: JOB_REMOVED_ERROR }, retry_at: null });
    expect(called).toBe(false);
  });
});

describe('JobRunner: concurrency', () => {
  it('forbid: skips an occurrence while the previous run is still running', async () => {
    const h = harness();
    const job = await h.store.createJob(
      makeJob({ concurrency: 'forbid', target: { type: 'handler', name: 'slow' } }),
    );
    const g = gate();
    h.handlers.register('slow', g.fn);
    const first = fire(h, job, T0);
    await g.started;
    const second = await fire(h, job, T0 + 60_000);
    const firstId = (await h.store.getLedgerEntry(job.id, T0))!.run_id;
    expect(second.run).toMatchObject({
      status: 'skipped',
      error: `previous run ${firstId} is still running`,
      fire_at: T0 + 60_000,
    });
    expect(second.retry_at).toBeNull();
    expect((await h.store.getLedgerEntry(job.id, T0 + 60_000))!.status).toBe('skipped');
    expect(g.signals).toHaveLength(1);
    g.release('done');
    expect((await first).run.status).toBe('succeeded');
    const history = await h.store.listRuns(job.id);
    expect(history.map((r) => r.status).sort()).toEqual(['skipped', 'succeeded']);
  });

  it('replace: aborts the running one, records it failed, then runs', async () => {
    const h = harness();
    const job = await h.store.createJob(
      makeJob({
        concurrency: 'replace',
        target: { type: 'handler', name: 'slow' },
        retry: { max_attempts: 3, backoff_seconds: 5, max_backoff_seconds: 60 },
      }),
    );
    const g = gate();
    let calls = 0;
    h.handlers.register('slow', (input) => (++calls === 1 ? g.fn(input) : 'second done'));
    const first = fire(h, job, T0);
    await g.started;
    const secondEntry = await claim(h, job, T0 + 60_000);
    const second = await h.runner.run({
      job,
      fire_at: T0 + 60_000,
      run_id: secondEntry.run_id,
      trigger: 'nas',
      attempt: 1,
    });
    const firstOutcome = await first;
    expect(g.signals[0]!.aborted).toBe(true);
    expect(firstOutcome.run).toMatchObject({
      status: 'failed',
      error: `replaced by run ${secondEntry.run_id}`,
    });
    // Superseded, not broken: no retry for it, no streak.
    expect(firstOutcome.retry_at).toBeNull();
    expect(second.run).toMatchObject({ status: 'succeeded', output: 'second done' });
    expect(await h.store.getJob(job.id)).toMatchObject({
      last_status: 'succeeded',
      failure_streak: 0,
      retry_at: null,
    });
    expect((await h.store.getLedgerEntry(job.id, T0))!.status).toBe('finished');
  });

  it('allow: runs both at the same time', async () => {
    const h = harness();
    const job = await h.store.createJob(
      makeJob({ concurrency: 'allow', target: { type: 'handler', name: 'slow' } }),
    );
    const gates = [gate(), gate()];
    let calls = 0;
    h.handlers.register('slow', (input) => gates[calls++]!.fn(input));
    const a = fire(h, job, T0);
    await gates[0]!.started;
    const b = fire(h, job, T0 + 1000);
    await gates[1]!.started;
    expect(h.runner.active).toBe(2);
    gates[1]!.release('b');
    gates[0]!.release('a');
    const [ra, rb] = await Promise.all([a, b]);
    expect([ra.run.status, rb.run.status]).toEqual(['succeeded', 'succeeded']);
    expect([ra.run.output, rb.run.output]).toEqual(['a', 'b']);
  });
});

describe('JobRunner: one-shots and lifecycle', () => {
  it('completes a one-shot after its run', async () => {
    const h = harness();
    // As the claim leaves it: next_run_at null, occurrence counted.
    const job = await h.store.createJob(
      makeJob({
        schedule: 'in 5m',
        next_run_at: null,
        repeat: { times: 1, completed: 1 },
        target: { type: 'handler', name: 'once' },
      }),
    );
    h.handlers.register('once', () => 'ok');
    await fire(h, job, T0);
    expect(await h.store.getJob(job.id)).toMatchObject({ state: 'completed', last_status: 'succeeded' });
  });

  it('keeps a failed one-shot scheduled while a retry is pending, completes it once attempts run out', async () => {
    const h = harness();
    const job = await h.store.createJob(
      makeJob({
        next_run_at: null,
        repeat: { times: 1, completed: 1 },
        target: { type: 'handler', name: 'broken' },
        retry: { max_attempts: 2, backoff_seconds: 10, max_backoff_seconds: 10 },
      }),
    );
    h.handlers.register('broken', () => {
      throw new Error('no');
    });
    const first = await fire(h, job, T0);
    expect(first.retry_at).toBe(T0 + 10_000);
    expect((await h.store.getJob(job.id))!.state).toBe('scheduled');
    await h.clock.advance(10_000);
    const second = await fire(h, job, T0 + 10_000, 2, 'retry');
    expect(second.retry_at).toBeNull();
    expect(await h.store.getJob(job.id)).toMatchObject({ state: 'completed', last_status: 'failed' });
  });

  it('does not complete a recurring job left in error by the claim', async () => {
    const h = harness();
    const job = await h.store.createJob(
      makeJob({ next_run_at: null, state: 'error', target: { type: 'handler', name: 'ok' } }),
    );
    h.handlers.register('ok', () => 'ok');
    await fire(h, job, T0);
    expect((await h.store.getJob(job.id))!.state).toBe('error');
  });

  it('abortAll: stops runs in flight, recorded as failed with the reason; whenIdle and onIdleChange follow', async () => {
    const h = harness();
    const job = await h.store.createJob(makeJob({ target: { type: 'handler', name: 'slow' } }));
    const g = gate();
    h.handlers.register('slow', g.fn);
    const counts: number[] = [];
    const unsubscribe = h.runner.onIdleChange(() => counts.push(h.runner.active));
    const pending = fire(h, job, T0);
    await g.started;
    let idle = false;
    const idlePromise = h.runner.whenIdle().then(() => {
      idle = true;
    });
    await flushMicrotasks();
    expect(idle).toBe(false);
    h.runner.abortAll('shutdown');
    const outcome = await pending;
    await idlePromise;
    expect(outcome.run).toMatchObject({ status: 'failed', error: 'aborted: shutdown' });
    expect(counts).toEqual([1, 0]);
    unsubscribe();
    await h.runner.whenIdle();
  });
});

describe('JobRunner: command targets', () => {
  let restoreEnv: () => void;
  beforeAll(() => {
    restoreEnv = withoutExtraCaCerts();
  });
  afterAll(() => restoreEnv());

  const command = { type: 'command' as const, argv: [process.execPath, '-e', 'console.log("ran")'], env: {} };

  it('refuses API-defined command jobs unless commands are allowed', async () => {
    const h = harness({ allowCommands: false });
    const job = await h.store.createJob(
      makeJob({
        source: 'api',
        target: command,
        retry: { max_attempts: 3, backoff_seconds: 1, max_backoff_seconds: 1 },
      }),
    );
    const outcome = await fire(h, job, T0);
    expect(outcome.run).toMatchObject({ status: 'failed', error: COMMANDS_REFUSED_ERROR, output: null });
    expect(COMMANDS_REFUSED_ERROR).toContain('CHRONOS_ALLOW_COMMANDS=true');
    expect(COMMANDS_REFUSED_ERROR).toContain('jobs file');
    // Retrying cannot change the configuration.
    expect(outcome.retry_at).toBeNull();
  });

  it('runs command jobs declared in the jobs file', async () => {
    const h = harness({ allowCommands: false });
    const job = await h.store.createJob(makeJob({ source: 'file', target: command }));
    const outcome = await fire(h, job, T0);
    expect(outcome.run).toMatchObject({ status: 'succeeded', output: 'ran\n' });
  });

  it('runs API-defined command jobs when commands are allowed', async () => {
    const h = harness({ allowCommands: true });
    const job = await h.store.createJob(makeJob({ source: 'api', target: command }));
    expect((await fire(h, job, T0)).run.status).toBe('succeeded');
  });
});

describe('JobRunner: a run that cannot start for a reason inside Chronos', () => {
  let restoreEnv: () => void;
  beforeAll(() => {
    restoreEnv = withoutExtraCaCerts();
  });
  afterAll(() => restoreEnv());

  const command = { type: 'command' as const, argv: ['sh', '-c', 'echo ran'], env: {} };

  /** Opens /dev/null until this process is out of descriptors (EMFILE); returns them to close. */
  function exhaustDescriptors(): number[] {
    const held: number[] = [];
    try {
      for (;;) held.push(openSync('/dev/null', 'r'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EMFILE') {
        for (const fd of held) closeSync(fd);
        throw err;
      }
    }
    return held;
  }

  async function until(what: string, predicate: () => boolean): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setImmediate(r));
    }
  }

  it('retries a spawn that fails with EMFILE locally, with backoff, and runs the occurrence once it can', async () => {
    const h = harness();
    const job = await h.store.createJob(makeJob({ source: 'file', target: command }));
    // Loads the target modules before descriptors run out: a cold import would need files too.
    expect((await fire(h, job, T0)).run.status).toBe('succeeded');

    const retries = () => h.logs.filter((l) => l['msg'] === LOCAL_RETRY_MSG);
    const held = exhaustDescriptors();
    let outcome: ReturnType<typeof fire>;
    try {
      outcome = fire(h, job, T0 + 60_000);
      await until('a first local retry', () => retries().length === 1);
      // Still out of descriptors at the second attempt: the wait doubles.
      await h.clock.advance(LOCAL_RETRY_BASE_MS);
      await until('a second local retry', () => retries().length === 2);
    } finally {
      for (const fd of held) closeSync(fd);
    }
    await h.clock.advance(2 * LOCAL_RETRY_BASE_MS);
    const { run, retry_at } = await outcome;

    expect(retries().map((l) => [l['code'], l['local_attempt'], l['retry_in_ms']])).toEqual([
      ['EMFILE', 1, LOCAL_RETRY_BASE_MS],
      ['EMFILE', 2, 2 * LOCAL_RETRY_BASE_MS],
    ]);
    expect(run).toMatchObject({ status: 'succeeded', output: 'ran\n', error: null });
    expect(retry_at).toBeNull();
    expect(
      h.logs.some((l) => l['msg'] === 'run started after local retries' && l['local_attempts'] === 3),
    ).toBe(true);
    // One run recorded for the occurrence, and the job's streak is untouched.
    const runs = (await h.store.listRuns(job.id)).filter((r) => r.fire_at === T0 + 60_000);
    expect(runs.map((r) => r.status)).toEqual(['succeeded']);
    expect((await h.store.getJob(job.id))?.failure_streak).toBe(0);
  });

  it('gives up when the run timeout is spent, recording that the failure was inside Chronos', async () => {
    const h = harness();
    const job = await h.store.createJob(makeJob({ source: 'file', target: command, timeout_seconds: 1 }));
    expect((await fire(h, job, T0)).run.status).toBe('succeeded');
    const retries = () => h.logs.filter((l) => l['msg'] === LOCAL_RETRY_MSG);
    const held = exhaustDescriptors();
    let outcome: ReturnType<typeof fire>;
    try {
      outcome = fire(h, job, T0 + 60_000);
      // 250 + 500 ms fit in the 1 s timeout; the next wait (1 s) does not.
      await until('a first local retry', () => retries().length === 1);
      await h.clock.advance(LOCAL_RETRY_BASE_MS);
      await until('a second local retry', () => retries().length === 2);
      await h.clock.advance(2 * LOCAL_RETRY_BASE_MS);
      const { run } = await outcome;
      expect(run.status).toBe('failed');
      expect(run.error).toMatch(/EMFILE.*\(inside Chronos: 3 local attempts within the run timeout\)/);
    } finally {
      for (const fd of held) closeSync(fd);
    }
  });
});

describe('JobRunner: a run that ends while the store is unavailable', () => {
  async function until(what: string, predicate: () => boolean): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setImmediate(r));
    }
  }

  /** A job whose handler takes the store down as the run ends (the database stops mid-run). */
  async function endingInOutage(store: OutageStore) {
    const h = harness({ store });
    h.handlers.register('down', () => {
      store.down = true;
      h.clock.set(T0 + 2_000);
      return 'done';
    });
    const job = await store.createJob(makeJob({ target: { type: 'handler', name: 'down', payload: null } }));
    const outcome = fire(h, job, T0);
    const retrying = () => h.logs.filter((l) => l['msg'] === END_WRITE_RETRY_MSG);
    await until('the first retry', () => retrying().length === 1);
    return { h, job, outcome, retrying };
  }

  it('writes the end again with backoff until the store is back: succeeded, settled, counted once', async () => {
    const store = new OutageStore();
    const { h, job, outcome, retrying } = await endingInOutage(store);
    expect(retrying()[0]).toMatchObject({ what: 'record run end', retry_in_ms: END_WRITE_RETRY_BASE_MS });
    // Still in progress: its claim lease keeps being renewed and idle exit waits.
    expect(h.runner.active).toBe(1);
    await h.clock.advance(END_WRITE_RETRY_BASE_MS);
    await until('the second refusal', () => store.refused === 2);
    // Backoff: nothing is tried again before twice the first wait.
    await h.clock.advance(2 * END_WRITE_RETRY_BASE_MS - 1);
    expect(store.refused).toBe(2);
    store.down = false;
    await h.clock.advance(1);
    const { run } = await outcome;

    expect(run.status).toBe('succeeded');
    expect(await store.getRun(job.id, run.run_id)).toMatchObject({ status: 'succeeded', output: 'done' });
    expect((await store.getLedgerEntry(job.id, T0))?.status).toBe('finished');
    expect(await store.getJob(job.id)).toMatchObject({ last_status: 'succeeded', failure_streak: 0 });
    expect(h.runner.active).toBe(0);
    expect(h.logs.some((l) => l['msg'] === 'record run end: written once the store was back')).toBe(true);
  });

  it("forbid: the next occurrence, claimed while the previous run's end waits for the store, runs after that write instead of being skipped", async () => {
    const store = new OutageStore();
    const h = harness({ store });
    let calls = 0;
    h.handlers.register('down-once', () => {
      calls += 1;
      if (calls === 1) {
        store.down = true;
        h.clock.set(T0 + 2_000);
      }
      return `call ${calls}`;
    });
    const job = await store.createJob(
      makeJob({ concurrency: 'forbid', target: { type: 'handler', name: 'down-once', payload: null } }),
    );
    const first = fire(h, job, T0);
    await until('the first retry', () => h.logs.some((l) => l['msg'] === END_WRITE_RETRY_MSG));
    // The database is back: NAS's retry of the next occurrence is claimed before the end write is retried.
    store.down = false;
    const second = fire(h, job, T0 + 60_000);
    await until('the second occurrence waiting', () => h.runner.active === 2);
    expect(calls).toBe(1);
    await h.clock.advance(END_WRITE_RETRY_BASE_MS);
    const [one, two] = await Promise.all([first, second]);

    expect(one.run).toMatchObject({ status: 'succeeded', output: 'call 1' });
    expect(two.run).toMatchObject({ status: 'succeeded', output: 'call 2', fire_at: T0 + 60_000 });
    expect((await store.getLedgerEntry(job.id, T0 + 60_000))?.status).toBe('finished');
    // Recorded in order: the job's summary ends with the second run.
    expect((await store.getJob(job.id))?.last_run_at).toBe(two.run.started_at);
  });

  it('gives up after END_WRITE_RETRY_FOR_MS: the claim stays for recovery to record it interrupted', async () => {
    const store = new OutageStore();
    const { h, job, outcome } = await endingInOutage(store);
    let settled = false;
    void outcome.then(() => {
      settled = true;
    });
    while (!settled && h.clock.now() < T0 + 2_000 + END_WRITE_RETRY_FOR_MS + 10_000) {
      await h.clock.advance(1_000);
      await flushMicrotasks();
    }
    expect(settled).toBe(true);
    // Within the bound (it gives up before a wait would pass it), not earlier than a wait before it.
    expect(h.clock.now()).toBeLessThanOrEqual(T0 + 2_000 + END_WRITE_RETRY_FOR_MS);
    expect(h.clock.now()).toBeGreaterThan(T0 + 2_000 + END_WRITE_RETRY_FOR_MS - 10_000);
    expect(h.logs.some((l) => String(l['msg']).startsWith('record run end failed; gave up retrying'))).toBe(
      true,
    );
    store.down = false;
    expect((await store.getLedgerEntry(job.id, T0))?.status).toBe('claimed');
    expect((await store.getRun(job.id, (await outcome).run.run_id))?.status).toBe('running');
  });

  it('stops retrying at once when shutdown aborts the runs still going', async () => {
    const store = new OutageStore();
    const { h, outcome } = await endingInOutage(store);
    h.runner.abortAll('shutdown grace period over');
    const { run } = await outcome;
    expect(run.status).toBe('succeeded');
    // One last try of each of the two end writes (record, settle), and no wait on the clock.
    expect(store.refused).toBe(3);
    expect(h.clock.now()).toBe(T0 + 2_000);
  });

  it('a settle written twice (its first reply lost) counts the run once', async () => {
    const h = harness();
    const job = await h.store.createJob(makeJob({ retry: undefined }));
    const entry = await claim(h, job, T0);
    const run: RunRecord = {
      run_id: entry.run_id,
      job_id: job.id,
      fire_at: T0,
      trigger: 'nas',
      status: 'failed',
      attempt: 1,
      started_at: T0,
      finished_at: T0 + 10,
      output: null,
      error: 'boom',
    };
    const verdict = { failed: true, retryable: true, attempt: 1 };
    await settleRun(h.store, job.id, T0, run, verdict);
    await settleRun(h.store, job.id, T0, run, verdict);
    expect(await h.store.getJob(job.id)).toMatchObject({ failure_streak: 1, last_status: 'failed' });
    expect((await h.store.getLedgerEntry(job.id, T0))?.status).toBe('finished');
  });
});

describe('JobRunner: http target timeout', () => {
  let server: Server;
  let url: string;
  beforeAll(async () => {
    server = createServer(() => {
      // never answers
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("uses the target's timeout_seconds over the job's", async () => {
    const store = new MemoryStore();
    const runner = new JobRunner({
      store,
      clock: systemClock,
      logger: pino({ level: 'silent' }),
      handlers: createHandlerRegistry(),
      allowCommands: false,
    });
    const job = await store.createJob(
      makeJob({
        timeout_seconds: 600,
        target: { type: 'http', url, method: 'POST', headers: {}, timeout_seconds: 0.2 },
      }),
    );
    const outcome = await runner.run({ job, fire_at: T0, run_id: 'r-http', trigger: 'manual', attempt: 1 });
    expect(outcome.run).toMatchObject({ status: 'timed_out', error: 'timed out after 0.2s' });
  });
});

describe('JobRunner: recoverInterrupted', () => {
  const deadOwner: Owner = { boot_id: 'dead-boot', pid: 999_999, host: 'gone-host' };
  const notDead = (o: Owner) => o.boot_id !== deadOwner.boot_id;

  it('marks a dead owner’s run interrupted, settles the ledger and completes the one-shot without re-running it', async () => {
    const h = harness();
    const ran: string[] = [];
    h.handlers.register('once', ({ run_id }) => {
      ran.push(run_id);
    });
    const job = await h.store.createJob(
      makeJob({
        next_run_at: null,
        repeat: { times: 1, completed: 1 },
        target: { type: 'handler', name: 'once' },
        retry: { max_attempts: 3, backoff_seconds: 10, max_backoff_seconds: 10 },
      }),
    );
    const entry = await claim(h, job, T0, { owner: deadOwner });
    // The dead process had recorded the start of its run.
    await h.store.appendRun({
      run_id: entry.run_id,
      job_id: job.id,
      fire_at: T0,
      trigger: 'nas',
      status: 'running',
      attempt: 1,
      started_at: T0,
      finished_at: null,
      output: null,
      error: null,
    });
    await h.clock.advance(120_000);
    const recovered = await h.runner.recoverInterrupted(notDead);
    expect(recovered).toHaveLength(1);
    expect(recovered[0]).toMatchObject({
      run_id: entry.run_id,
      status: 'interrupted',
      finished_at: T0 + 120_000,
      error: INTERRUPTED_ERROR,
    });
    expect(await h.store.getRun(job.id, entry.run_id)).toEqual(recovered[0]);
    expect((await h.store.getLedgerEntry(job.id, T0))!.status).toBe('interrupted');
    expect(await h.store.getJob(job.id)).toMatchObject({
      state: 'completed',
      last_status: 'interrupted',
      retry_at: null,
    });
    expect(ran).toEqual([]);
    expect(await h.store.listClaimed()).toEqual([]);
    // Recovery is idempotent.
    expect(await h.runner.recoverInterrupted(notDead)).toEqual([]);
  });

  it('appends an interrupted run when the dead process never recorded one', async () => {
    const h = harness();
    const job = await h.store.createJob(makeJob());
    const entry = await claim(h, job, T0, { owner: deadOwner, trigger: 'misfire' });
    const [run] = await h.runner.recoverInterrupted(notDead);
    expect(run).toMatchObject({
      run_id: entry.run_id,
      trigger: 'misfire',
      status: 'interrupted',
      started_at: T0,
      error: INTERRUPTED_ERROR,
    });
    expect(await h.store.listRuns(job.id)).toEqual([run]);
    // A recurring job stays scheduled.
    expect((await h.store.getJob(job.id))!.state).toBe('scheduled');
  });

  it('recovers a claim past its TTL even if the owner looks alive, but never a run of this process', async () => {
    const h = harness();
    const job = await h.store.createJob(
      makeJob({ concurrency: 'allow', target: { type: 'handler', name: 'slow' } }),
    );
    const g = gate();
    h.handlers.register('slow', g.fn);
    const otherHost: Owner = { boot_id: 'elsewhere', pid: 1, host: 'other-host' };
    const expired = await claim(h, job, T0, { owner: otherHost, ttlMs: 60_000 });
    const live = await claim(h, job, T0 + 1, { owner: otherHost, ttlMs: 3_600_000 });
    const mine = await claim(h, job, T0 + 2, { ttlMs: 60_000 });
    const pending = h.runner.run({ job, fire_at: T0 + 2, run_id: mine.run_id, trigger: 'nas', attempt: 1 });
    await g.started;
    h.clock.set(T0 + 120_000);
    const recovered = await h.runner.recoverInterrupted(() => true);
    expect(recovered.map((r) => r.run_id)).toEqual([expired.run_id]);
    expect((await h.store.getLedgerEntry(job.id, T0 + 1))!.status).toBe('claimed');
    expect(live.run_id).not.toBe(expired.run_id);
    g.release('done');
    expect((await pending).run.status).toBe('succeeded');
    expect((await h.store.getLedgerEntry(job.id, T0 + 2))!.status).toBe('finished');
  });

  it('settles a row whose run was fully recorded as finished, without touching the run', async () => {
    const h = harness();
    const job = await h.store.createJob(makeJob());
    const entry = await claim(h, job, T0, { owner: deadOwner });
    await h.store.appendRun({
      run_id: entry.run_id,
      job_id: job.id,
      fire_at: T0,
      trigger: 'nas',
      status: 'succeeded',
      attempt: 1,
      started_at: T0,
      finished_at: T0 + 10,
      output: 'ok',
      error: null,
    });
    expect(await h.runner.recoverInterrupted(notDead)).toEqual([]);
    expect((await h.store.getLedgerEntry(job.id, T0))!.status).toBe('finished');
    expect((await h.store.getRun(job.id, entry.run_id))!.status).toBe('succeeded');
  });

  it('finishes a recovery that died after recording the run interrupted: the row is settled interrupted', async () => {
    // The state a process leaves when it dies between writing the run `interrupted` and settling the
    // ledger row (before the fix, the next boot settled it `finished`, as for a run recorded to its end).
    const h = harness();
    const job = await h.store.createJob(makeJob({ next_run_at: null, repeat: { times: 1, completed: 1 } }));
    const entry = await claim(h, job, T0, { owner: deadOwner });
    const interrupted: RunRecord = {
      run_id: entry.run_id,
      job_id: job.id,
      fire_at: T0,
      trigger: 'nas',
      status: 'interrupted',
      attempt: 1,
      started_at: T0,
      finished_at: T0 + 60_000,
      output: null,
      error: INTERRUPTED_ERROR,
    };
    await h.store.appendRun(interrupted);
    expect((await h.store.getLedgerEntry(job.id, T0))!.status).toBe('claimed');

    const recovered = await h.runner.recoverInterrupted(notDead);
    expect(recovered).toEqual([interrupted]);
    expect((await h.store.getLedgerEntry(job.id, T0))!.status).toBe('interrupted');
    expect(await h.store.getRun(job.id, entry.run_id)).toEqual(interrupted);
    expect(await h.store.getJob(job.id)).toMatchObject({ state: 'completed', last_status: 'interrupted' });
    expect(await h.runner.recoverInterrupted(notDead)).toEqual([]);
  });

  it('settles a row whose run was recorded skipped as skipped', async () => {
    const h = harness();
    const job = await h.store.createJob(makeJob());
    const entry = await claim(h, job, T0, { owner: deadOwner });
    await h.store.appendRun({
      run_id: entry.run_id,
      job_id: job.id,
      fire_at: T0,
      trigger: 'nas',
      status: 'skipped',
      attempt: 1,
      started_at: T0,
      finished_at: T0,
      output: null,
      error: null,
    });
    expect(await h.runner.recoverInterrupted(notDead)).toEqual([]);
    expect((await h.store.getLedgerEntry(job.id, T0))!.status).toBe('skipped');
  });

  it('uses the real owner check by default: a previous incarnation with our pid is dead', async () => {
    const h = harness();
    const job = await h.store.createJob(makeJob());
    const me = currentOwner();
    await claim(h, job, T0, { owner: { ...me, boot_id: 'previous-boot' } });
    const recovered = await h.runner.recoverInterrupted();
    expect(recovered).toHaveLength(1);
  });
});
