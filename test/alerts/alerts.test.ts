import { randomBytes } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { nextAlertState, redactUrl } from '../../src/alerts/decide.js';
import { type AlertDelivery, AlertService } from '../../src/alerts/service.js';
import { isChronosError } from '../../src/errors.js';
import type { AlertRecord } from '../../src/jobs/alerts.js';
import { buildJob } from '../../src/jobs/build.js';
import type { Job, JobSpecInput, RunRecord, Trigger } from '../../src/jobs/model.js';
import { runView } from '../../src/jobs/view.js';
import { Engine } from '../../src/occurrence/engine.js';
import { JobRunner } from '../../src/run/runner.js';
import { createHandlerRegistry, type HandlerRegistry } from '../../src/run/targets/handler.js';
import { Activity } from '../../src/scheduler/activity.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { currentOwner } from '../../src/store/owner.js';
import type { Owner } from '../../src/store/store.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { silentLogger, waitUntil } from '../helpers/scheduler-fixtures.js';
import { type Receiver, startReceiver } from './receiver.js';

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const MINUTE = 60_000;
/** Short, deterministic delivery bounds; the clock drives the waits between attempts. */
const DELIVERY: AlertDelivery = {
  maxAttempts: 3,
  baseDelayMs: 1_000,
  maxDelayMs: 60_000,
  requestTimeoutMs: 5_000,
};

/** A store that keeps every run record as written, to show what one write carried. */
class RecordingStore extends MemoryStore {
  readonly runWrites: RunRecord[] = [];
  override async appendRun(run: RunRecord): Promise<void> {
    this.runWrites.push(structuredClone(run));
    return super.appendRun(run);
  }
  override async updateRun(
    jobId: string,
    runId: string,
    mutate: (run: RunRecord) => RunRecord,
  ): Promise<RunRecord> {
    const written = await super.updateRun(jobId, runId, mutate);
    this.runWrites.push(structuredClone(written));
    return written;
  }
}

interface Harness {
  store: RecordingStore;
  /** Near real time: receivers check webhook-timestamp against their own clock (5 min tolerance). */
  clock: ManualClock;
  activity: Activity;
  alerts: AlertService;
  runner: JobRunner;
  handlers: HandlerRegistry;
  receiver: Receiver;
  /** What the `flaky` handler does next: throw (the run fails) or return. */
  outcome: { fail: boolean };
}

const open: Array<{ receiver: Receiver; alerts: AlertService[] }> = [];
afterEach(async () => {
  for (const h of open.splice(0)) {
    for (const a of h.alerts) a.stop();
    await h.receiver.close();
  }
});

async function harness(options: { secret?: string; store?: RecordingStore } = {}): Promise<Harness> {
  const store = options.store ?? new RecordingStore();
  const clock = new ManualClock(Math.floor(Date.now() / 1000) * 1000);
  const activity = new Activity();
  const receiver = await startReceiver(SECRET);
  const alerts = new AlertService({
    store,
    clock,
    logger: silentLogger,
    activity,
    defaults: { url: `${receiver.url}/default?token=abc`, format: 'standard' },
    secret: 'secret' in options ? options.secret : SECRET,
    delivery: DELIVERY,
  });
  open.push({ receiver, alerts: [alerts] });
  const handlers = createHandlerRegistry();
  const outcome = { fail: true };
  handlers.register('flaky', () => {
    if (outcome.fail) throw new Error('disk full');
    return 'all good';
  });
  const runner = new JobRunner({
    store,
    clock,
    logger: silentLogger,
    handlers,
    allowCommands: false,
    alerts,
  });
  return { store, clock, activity, alerts, runner, handlers, receiver, outcome };
}

async function addJob(h: Harness, spec: Partial<JobSpecInput> = {}): Promise<Job> {
  const job = buildJob(
    { id: 'nightly', schedule: 'every 15m', target: { type: 'handler', name: 'flaky' }, ...spec },
    { now: h.clock.now(), defaultTimezone: 'UTC', allowCommands: false, source: 'api' },
  );
  return h.store.createJob(job);
}

let runSeq = 0;
/** What the fire path does before the runner: claim the row, then hand over the fresh job. */
async function fire(h: Harness, attempt = 1, opts: { owner?: Owner; trigger?: Trigger } = {}) {
  const job = (await h.store.getJob('nightly'))!;
  const fireAt = h.clock.now();
  const runId = `run-${++runSeq}`;
  await h.store.transact(job.id, () => ({
    ledger: [
      {
        job_id: job.id,
        fire_at: fireAt,
        status: 'claimed',
        trigger: opts.trigger ?? 'nas',
        run_id: runId,
        owner: opts.owner ?? currentOwner(),
        claimed_at: fireAt,
        expires_at: fireAt + 3_600_000,
      },
    ],
    result: undefined,
  }));
  return h.runner.run({ job, fire_at: fireAt, run_id: runId, trigger: opts.trigger ?? 'nas', attempt });
}

async function storedAlerts(h: Harness, runId: string): Promise<AlertRecord[]> {
  return (await h.store.getRun('nightly', runId))?.alerts ?? [];
}

/** Delivery is real loopback HTTP: wait (bounded) until nothing is in flight. */
async function delivered(h: Harness): Promise<void> {
  await waitUntil(() => h.activity.snapshot().alert === 0);
}

function events(receiver: Receiver): string[] {
  return receiver.received().map((r) => (r.payload as { type: string }).type);
}

describe('the failing-state machine', () => {
  const job = (over: Partial<Job> = {}): Job => ({
    ...buildJob(
      { id: 'j', schedule: 'every 1m', target: { type: 'handler', name: 'x' } },
      { now: 0, defaultTimezone: 'UTC', allowCommands: false, source: 'api' },
    ),
    ...over,
  });

  it('sends failed once per streak, reminders only after the interval, recovered once at its end', () => {
    let j = job({ failure_streak: 1, notify: { reminder_seconds: 600 } });
    const step = (kind: Parameters<typeof nextAlertState>[1], now: number) => {
      const r = nextAlertState(j, kind, now);
      j = { ...j, alert_state: r.state };
      return r.reminder ? `${r.event} (reminder)` : r.event;
    };
    expect(step('retrying', 0)).toBeNull();
    expect(j.alert_state).toBeUndefined();
    expect(step('final_failure', 1_000)).toBe('failed');
    expect(j.alert_state).toMatchObject({ failing: true, failing_since: 1_000, last_failed_alert_at: 1_000 });
    expect(step('final_failure', 2_000)).toBeNull();
    expect(step('final_failure', 1_000 + 599_999)).toBeNull();
    expect(step('final_failure', 1_000 + 600_000)).toBe('failed (reminder)');
    expect(step('retrying', 700_000)).toBeNull();
    expect(step('final_failure', 700_000)).toBeNull();
    expect(step('missed', 710_000)).toBeNull();
    expect(step('success', 720_000)).toBe('recovered');
    expect(j.alert_state).toEqual({ failing: false, failure_streak: 0 });
    expect(step('success', 730_000)).toBeNull();
    expect(step('final_failure', 740_000)).toBe('failed');
  });

  it('never sends reminders without an interval', () => {
    let j = job({ failure_streak: 1 });
    j = { ...j, alert_state: nextAlertState(j, 'final_failure', 0).state };
    expect(nextAlertState(j, 'final_failure', 365 * 86_400_000).event).toBeNull();
  });

  it('shows destinations without credentials or query', () => {
    expect(redactUrl('https://user:pw@hooks.example.com:8443/a/b?token=s3cret#x')).toBe(
      'https://hooks.example.com:8443/a/b?[redacted]',
    );
  });
});

describe('alerts from runs, delivered to a verifying receiver', () => {
  it('a job failing past its retries sends one signed failed; its first success one recovered', async () => {
    const h = await harness();
    await addJob(h, { retry: { max_attempts: 2, backoff_seconds: 30 } });

    // Attempt 1 fails with a retry pending: not failing yet, nothing raised.
    const first = await fire(h, 1);
    expect(first.retry_at).not.toBeNull();
    expect(first.run.alerts).toBeUndefined();

    // Attempt 2 fails with no retry left: the job enters the failing state.
    const second = await fire(h, 2, { trigger: 'retry' });
    expect(second.retry_at).toBeNull();
    const [failed] = second.run.alerts ?? [];
    expect(failed).toMatchObject({
      event: 'failed',
      state: 'pending',
      attempts: 0,
      destination: `${h.receiver.url}/default?[redacted]`,
    });
    // The alert was in the very write that recorded the run's outcome.
    const outcomeWrite = h.store.runWrites.find(
      (r) => r.run_id === second.run.run_id && r.status === 'failed',
    );
    expect(outcomeWrite?.alerts?.map((a) => a.id)).toEqual([failed!.id]);
    expect((await h.store.getJob('nightly'))?.alert_state).toMatchObject({
      failing: true,
      failure_streak: 2,
      unsent_runs: [second.run.run_id],
    });

    await delivered(h);
    const [hit] = h.receiver.received();
    expect(hit?.refusal).toBeUndefined();
    expect(hit?.path).toBe('/default?token=abc');
    expect(hit?.headers['webhook-id']).toBe(failed!.id);
    expect(hit?.payload).toMatchObject({
      type: 'job.failed',
      data: {
        event: 'failed',
        reminder: false,
        job: { id: 'nightly', schedule: 'every 15m' },
        occurrence: { fire_at: new Date(second.run.fire_at).toISOString(), fire_at_ms: second.run.fire_at },
        run: { id: second.run.run_id, status: 'failed', attempt: 2, error: 'disk full' },
        failure_streak: 2,
      },
    });
    const sent = (await storedAlerts(h, second.run.run_id))[0];
    expect(sent).toMatchObject({ state: 'sent', attempts: 1, sent_at: h.clock.now() });
    expect(runView((await h.store.getRun('nightly', second.run.run_id))!).alerts[0]).toMatchObject({
      state: 'sent',
      sent_at: new Date(h.clock.now()).toISOString(),
    });
    expect((await h.store.getJob('nightly'))?.alert_state?.unsent_runs).toBeUndefined();

    // Still failing, occurrence after occurrence: nothing more. (The clock stays within the receiver's
    // five-minute tolerance of real time: webhook-timestamp is the sending instant.)
    await h.clock.advance(MINUTE);
    expect((await fire(h, 1)).run.alerts).toBeUndefined();
    expect((await fire(h, 2, { trigger: 'retry' })).run.alerts).toBeUndefined();

    h.outcome.fail = false;
    await h.clock.advance(MINUTE);
    const recovery = await fire(h, 1);
    expect(recovery.run.alerts?.map((a) => a.event)).toEqual(['recovered']);
    expect((await fire(h, 1)).run.alerts).toBeUndefined();
    await delivered(h);
    expect(events(h.receiver)).toEqual(['job.failed', 'job.recovered']);
    expect(h.receiver.received().every((r) => r.refusal === undefined)).toBe(true);
    expect((await h.store.getJob('nightly'))?.alert_state).toEqual({ failing: false, failure_streak: 0 });
  });

  it("uses the job's own destinations instead of the default, filtered by event, in Slack form", async () => {
    const h = await harness();
    await addJob(h, {
      notify: {
        destinations: [
          { url: `${h.receiver.url}/slack`, format: 'slack', events: ['failed'] },
          { url: `${h.receiver.url}/recoveries`, events: ['recovered'] },
        ],
      },
    });
    await fire(h);
    await delivered(h);
    const [slack] = h.receiver.received();
    expect(slack?.path).toBe('/slack');
    expect(slack?.refusal).toBeUndefined();
    const text = (slack!.payload as { text: string }).text;
    expect(text.split('\n')[0]).toBe('Chronos: job `nightly` failed');
    expect(text).toContain('error: disk full');
    h.outcome.fail = false;
    await fire(h);
    await delivered(h);
    expect(h.receiver.received().map((r) => r.path)).toEqual(['/slack', '/recoveries']);
  });

  it('raises no alert, but keeps the state, for a job with notify.destinations = []', async () => {
    const h = await harness();
    await addJob(h, { notify: { destinations: [] } });
    expect((await fire(h)).run.alerts).toBeUndefined();
    expect((await h.store.getJob('nightly'))?.alert_state?.failing).toBe(true);
  });
});

describe('delivery: retries, backoff, giving up, de-duplication, idle gating, resume', () => {
  it('retries with doubling waits on the clock, keeps the process busy, then records gave_up', async () => {
    const h = await harness();
    h.receiver.answer(503, 503, 503);
    await addJob(h);
    const { run } = await fire(h);
    const t = h.clock.now();
    await waitUntil(async () => (await storedAlerts(h, run.run_id))[0]?.attempts === 1);
    expect(await storedAlerts(h, run.run_id)).toMatchObject([{ state: 'pending', last_error: 'HTTP 503' }]);
    // An unsent alert holds the process awake (idle exit waits on Activity).
    expect(h.activity.snapshot().alert).toBe(1);
    expect(h.activity.busy).toBe(true);
    expect(h.clock.instants()).toEqual([t + 1_000]);
    await h.clock.advance(1_000);
    await waitUntil(async () => (await storedAlerts(h, run.run_id))[0]?.attempts === 2);
    expect(h.clock.instants()).toEqual([t + 1_000 + 2_000]);
    await h.clock.advance(2_000);
    await delivered(h);
    expect(await storedAlerts(h, run.run_id)).toMatchObject([
      { state: 'gave_up', attempts: 3, last_error: 'HTTP 503' },
    ]);
    expect(h.receiver.received()).toHaveLength(3);
    // Every attempt carried the same id and body: a receiver that saw one can drop the others.
    expect(new Set(h.receiver.received().map((r) => r.headers['webhook-id'])).size).toBe(1);
    expect(new Set(h.receiver.received().map((r) => r.body)).size).toBe(1);
    expect(h.activity.busy).toBe(false);
    expect(h.clock.pending()).toBe(0);
    expect((await h.store.getJob('nightly'))?.alert_state?.unsent_runs).toBeUndefined();
  });

  it('gives up at once on a refusal (4xx other than 408/425/429)', async () => {
    const h = await harness();
    h.receiver.answer(401);
    await addJob(h);
    const { run } = await fire(h);
    await delivered(h);
    expect(await storedAlerts(h, run.run_id)).toMatchObject([
      { state: 'gave_up', attempts: 1, last_error: 'HTTP 401' },
    ]);
    expect(h.clock.pending()).toBe(0);
  });

  it('retries an unreachable receiver', async () => {
    const h = await harness();
    await addJob(h, { notify: { destinations: [{ url: 'http://127.0.0.1:9/nothing-listens' }] } });
    const { run } = await fire(h);
    await waitUntil(async () => (await storedAlerts(h, run.run_id))[0]?.attempts === 1);
    expect((await storedAlerts(h, run.run_id))[0]?.last_error).toMatch(/^request failed: .*ECONNREFUSED/);
    expect(h.activity.snapshot().alert).toBe(1);
  });

  it('sends each alert once: a second dispatch, a resume, a restart after it was sent', async () => {
    const h = await harness();
    await addJob(h);
    const { run } = await fire(h);
    h.alerts.dispatch('nightly', run.run_id, run.alerts!);
    await h.alerts.resume();
    await delivered(h);
    expect(h.receiver.received()).toHaveLength(1);
    // A later process finds it sent and leaves it.
    const next = new AlertService({
      store: h.store,
      clock: h.clock,
      logger: silentLogger,
      activity: h.activity,
      defaults: { url: `${h.receiver.url}/default?token=abc`, format: 'standard' },
      secret: SECRET,
    });
    open.push({ receiver: await startReceiver(SECRET), alerts: [next] });
    next.dispatch('nightly', run.run_id, (await h.store.getRun('nightly', run.run_id))!.alerts!);
    expect(await next.resume()).toBe(0);
    await delivered(h);
    expect(h.receiver.received()).toHaveLength(1);
  });

  it('a pending alert left by a stopped process is resumed by the next one, its attempts counting on', async () => {
    const h = await harness();
    h.receiver.answer(500);
    await addJob(h);
    const { run } = await fire(h);
    await waitUntil(async () => (await storedAlerts(h, run.run_id))[0]?.attempts === 1);
    h.alerts.stop(); // SIGTERM during the backoff: the alert stays pending in the store
    await delivered(h);
    expect((await h.store.getJob('nightly'))?.alert_state?.unsent_runs).toEqual([run.run_id]);

    const next = new AlertService({
      store: h.store,
      clock: h.clock,
      logger: silentLogger,
      activity: h.activity,
      defaults: { url: `${h.receiver.url}/default?token=abc`, format: 'standard' },
      secret: SECRET,
    });
    open.push({ receiver: await startReceiver(SECRET), alerts: [next] });
    expect(await next.resume()).toBe(1);
    await delivered(h);
    expect(await storedAlerts(h, run.run_id)).toMatchObject([{ state: 'sent', attempts: 2 }]);
    expect(h.receiver.received()).toHaveLength(2);
    expect((await h.store.getJob('nightly'))?.alert_state?.unsent_runs).toBeUndefined();
  });

  it('stop() cuts a request to a receiver that never answers; the alert stays pending for the next start', async () => {
    const h = await harness();
    const held: ServerResponse[] = [];
    const silent = createServer((_req, res) => held.push(res));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(silent.address() as { port: number }).port}/hang`;
      await addJob(h, { notify: { destinations: [{ url }] } });
      const { run } = await fire(h);
      await waitUntil(() => held.length === 1);
      expect(h.activity.snapshot().alert).toBe(1);
      h.alerts.stop();
      await delivered(h);
      expect(await storedAlerts(h, run.run_id)).toMatchObject([{ state: 'pending', attempts: 0 }]);
    } finally {
      for (const res of held) res.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  it('never delays or fails the run: the run is recorded before any delivery attempt ends', async () => {
    const h = await harness();
    await addJob(h, { notify: { destinations: [{ url: 'http://127.0.0.1:9/nothing-listens' }] } });
    const outcome = await fire(h);
    expect(outcome.run.status).toBe('failed');
    expect(await storedAlerts(h, outcome.run.run_id)).toMatchObject([{ state: 'pending', attempts: 0 }]);
    expect(h.runner.active).toBe(0);
  });

  it('sends unsigned (no webhook-signature) without a secret', async () => {
    const h = await harness({ secret: undefined });
    await addJob(h);
    await fire(h);
    await delivered(h);
    const [hit] = h.receiver.received();
    expect(hit?.headers['webhook-id']).toMatch(/^msg_/);
    expect(hit?.headers['webhook-signature']).toBeUndefined();
    expect(hit?.refusal).toBe('Missing required headers');
  });
});

describe('missed and arming_failed', () => {
  it('an occurrence skipped by the misfire rule raises missed; the job points at its run until it is sent', async () => {
    const h = await harness();
    h.receiver.answer(503);
    const job = await addJob(h, { misfire: { policy: 'skip', grace_seconds: 60 } });
    const overdue = { ...job, next_run_at: h.clock.now() - 5 * MINUTE };
    await h.store.updateJob('nightly', () => overdue);
    const engine = new Engine({
      store: h.store,
      clock: h.clock,
      logger: silentLogger,
      activity: h.activity,
      owner: currentOwner(),
      runner: async () => h.runner,
      provider: () => {
        throw new Error('not armed in this test');
      },
      alerts: async () => h.alerts,
    });
    expect(await engine.applyMisfires([overdue])).toBe(1);
    const [missed] = await h.store.listRuns('nightly');
    expect(missed).toMatchObject({ status: 'missed', alerts: [{ event: 'missed', state: 'pending' }] });
    expect((await h.store.getJob('nightly'))?.alert_state?.unsent_runs).toEqual([missed!.run_id]);
    await waitUntil(async () => (await storedAlerts(h, missed!.run_id))[0]?.attempts === 1);
    await h.clock.advance(1_000);
    await delivered(h);
    expect(await storedAlerts(h, missed!.run_id)).toMatchObject([{ state: 'sent', attempts: 2 }]);
    expect(h.receiver.received()[1]?.payload).toMatchObject({
      type: 'job.missed',
      data: { run: { status: 'missed', trigger: 'misfire' } },
    });
    expect((await h.store.getJob('nightly'))?.alert_state?.unsent_runs).toBeUndefined();
  });

  it('a run interrupted by the end of its process raises missed, written with the interrupted run', async () => {
    const h = await harness();
    await addJob(h);
    const dead: Owner = { boot_id: 'gone', pid: 999_999, host: 'elsewhere' };
    const fireAt = h.clock.now();
    await h.store.transact('nightly', () => ({
      ledger: [
        {
          job_id: 'nightly',
          fire_at: fireAt,
          status: 'claimed',
          trigger: 'nas',
          run_id: 'run-dead',
          owner: dead,
          claimed_at: fireAt,
          expires_at: fireAt - 1,
        },
      ],
      result: undefined,
    }));
    const [recovered] = await h.runner.recoverInterrupted(() => false);
    expect(recovered?.status).toBe('interrupted');
    expect(recovered?.alerts?.map((a) => a.event)).toEqual(['missed']);
    await delivered(h);
    expect(h.receiver.received()[0]?.payload).toMatchObject({
      type: 'job.missed',
      data: { run: { id: 'run-dead', status: 'interrupted' } },
    });
  });

  it('a process that died between writing the run (with its alert) and the job still gets the alert out', async () => {
    const h = await harness();
    await addJob(h);
    const fireAt = h.clock.now();
    const dead: Owner = { boot_id: 'gone', pid: 999_999, host: 'elsewhere' };
    await h.store.transact('nightly', () => ({
      ledger: [
        {
          job_id: 'nightly',
          fire_at: fireAt,
          status: 'claimed',
          trigger: 'nas',
          run_id: 'run-crashed',
          owner: dead,
          claimed_at: fireAt,
          expires_at: fireAt - 1,
        },
      ],
      result: undefined,
    }));
    // What the dead process wrote: the run's outcome with its alert, and nothing on the job.
    const [alert] = h.alerts.raise(
      { ...(await h.store.getJob('nightly'))!, failure_streak: 1 },
      { run_id: 'run-crashed', job_id: 'nightly' } as RunRecord,
      'final_failure',
      fireAt,
    );
    await h.store.appendRun({
      run_id: 'run-crashed',
      job_id: 'nightly',
      fire_at: fireAt,
      trigger: 'nas',
      status: 'failed',
      attempt: 1,
      started_at: fireAt,
      finished_at: fireAt,
      output: null,
      error: 'disk full',
      alerts: [alert!],
    });
    await h.runner.recoverInterrupted(() => false);
    await delivered(h);
    expect(events(h.receiver)).toEqual(['job.failed']);
    expect(await storedAlerts(h, 'run-crashed')).toMatchObject([{ state: 'sent' }]);
  });

  it("arming_failed lives in the job's outbox, once per failing stretch", async () => {
    const h = await harness();
    await addJob(h);
    const since = h.clock.now() - 10 * MINUTE;
    await h.alerts.armingFailed('nightly', since, 'NAS answered 503');
    await h.alerts.armingFailed('nightly', since, 'NAS answered 503');
    await delivered(h);
    expect(events(h.receiver)).toEqual(['job.arming_failed']);
    expect(h.receiver.received()[0]?.payload).toMatchObject({
      data: {
        run: null,
        occurrence: null,
        detail: `could not be armed at NAS since ${new Date(since).toISOString()}: NAS answered 503`,
      },
    });
    expect((await h.store.getJob('nightly'))?.alert_state?.outbox).toMatchObject([
      { event: 'arming_failed', state: 'sent', attempts: 1 },
    ]);
  });

  it('a removed job takes its pending alerts with it', async () => {
    const h = await harness();
    h.receiver.answer(503);
    await addJob(h);
    const { run } = await fire(h);
    await waitUntil(async () => (await storedAlerts(h, run.run_id))[0]?.attempts === 1);
    await h.store.removeJob('nightly');
    await h.clock.advance(1_000);
    await delivered(h);
    expect(h.receiver.received()).toHaveLength(1);
  });
});

describe('notify in the job spec', () => {
  const build = (notify: unknown) => {
    try {
      buildJob({ schedule: 'every 1m', target: { type: 'handler', name: 'x' }, notify } as JobSpecInput, {
        now: 0,
        defaultTimezone: 'UTC',
        allowCommands: false,
        source: 'api',
      });
      return [];
    } catch (err) {
      if (!isChronosError(err, 'validation_failed')) throw err;
      return (err.details!['problems'] as Array<{ path: string; message: string }>).map(
        (p) => `${p.path}: ${p.message}`,
      );
    }
  };

  it('accepts destinations with defaults filled in', () => {
    const job = buildJob(
      {
        schedule: 'every 1m',
        target: { type: 'handler', name: 'x' },
        notify: { destinations: [{ url: 'https://hooks.example.com/a' }], reminder_seconds: 3600 },
      },
      { now: 0, defaultTimezone: 'UTC', allowCommands: false, source: 'api' },
    );
    expect(job.notify).toEqual({
      destinations: [{ url: 'https://hooks.example.com/a', format: 'standard' }],
      reminder_seconds: 3600,
    });
  });

  it('says what to fix', () => {
    expect(build({ destinations: [{ url: 'ftp://x' }] })).toEqual([
      expect.stringMatching(/^notify\.destinations\.0\.url: must be an absolute http\(s\) URL/),
    ]);
    expect(build({ destinations: [{ url: 'https://x.example', format: 'teams' }] })).toEqual([
      'notify.destinations.0.format: must be one of standard, slack',
    ]);
    expect(build({ destinations: [{ url: 'https://x.example', events: ['exploded'] }] })).toEqual([
      'notify.destinations.0.events.0: must be one of failed, recovered, missed, arming_failed',
    ]);
    expect(build({ reminder_seconds: 5 })).toEqual([
      'notify.reminder_seconds: must be at least 60 (seconds)',
    ]);
    expect(build({ destinations: Array.from({ length: 9 }, () => ({ url: 'https://x.example' })) })).toEqual([
      'notify.destinations: must have at most 8 destinations',
    ]);
    expect(build({ url: 'https://x.example' })).toEqual([expect.stringMatching(/^notify/)]);
  });
});
