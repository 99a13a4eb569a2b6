import { describe, expect, it, type TestContext } from 'vitest';
import type { JobSpecInput } from '../../src/jobs/model.js';
import { e2eStacks, NAS_MODES, type Stack } from '../helpers/e2e.js';

const startStack = e2eStacks();

/**
 * `late` is due in 4 s and its delivery is dropped; `waker` is fired by hand (early, which Chronos accepts
 * within 60 s) once the dropped occurrence is past its 1 s grace, as another job's fire would wake the process.
 */
async function dropThenWake(
  emulator: { strict?: boolean },
  policy: 'run_once' | 'skip',
  ctx: TestContext,
): Promise<{ s: Stack; missedAt: number }> {
  const s = await startStack(
    {
      emulator,
      jobs: (recorder): JobSpecInput[] => [
        {
          id: 'late',
          schedule: 'every 4s',
          misfire: { policy, grace_seconds: 1 },
          target: { type: 'http', url: `${recorder}/hit/late` },
        },
        { id: 'waker', schedule: 'every 20s', target: { type: 'http', url: `${recorder}/hit/waker` } },
      ],
    },
    ctx,
  );
  await s.wake();
  await s.waitFor('both armed', () => s.nas.armed().length === 2, 15_000);
  const missedAt = Date.parse(s.nas.armed().find((a) => a.job_id === 'late')!.fire_at);
  s.nas.faults.dropDeliveries = 1;
  await s.waitFor('the delivery dropped', () => !s.nas.armed().some((a) => a.job_id === 'late'), 10_000);
  await s.waitFor('asleep', () => !s.proxy.running(), 10_000);
  // A condition on the wall clock, not a guess: the occurrence must be overdue past its grace.
  await s.waitFor('the occurrence past its grace', () => Date.now() > missedAt + 1_500, 10_000);
  expect(s.nas.deliveries().filter((d) => d.job_id === 'late')).toHaveLength(0);

  const woke = await s.nas.fireNow('waker');
  expect(woke.status).toBe(202);
  return { s, missedAt };
}

// One after the other: four processes starting at once on a 4 s schedule missed more occurrences than
// the one the test drops (load ~5).
describe.each(NAS_MODES)('e2e: a missed occurrence ($nas NAS)', ({ emulator }) => {
  it('run_once: runs it once as a misfire when another fire wakes the process', async (ctx) => {
    const { s, missedAt } = await dropThenWake(emulator, 'run_once', ctx);
    await s.waitFor('the misfire run', async () =>
      (await s.runs('late')).some((r) => r.fire_at === missedAt && r.status === 'succeeded'),
    );
    const runs = (await s.runs('late')).filter((r) => r.fire_at <= missedAt);
    expect(
      runs.map((r) => [r.trigger, r.status]),
      s.transcript(),
    ).toEqual([['misfire', 'succeeded']]);
    expect(s.recorder.hitsFor('late').map((h) => Date.parse(h.fireAt))).toEqual([missedAt]);
    // Never a burst: the next arm is a future occurrence.
    await s.waitFor('late re-armed', () => s.nas.armed().some((a) => a.job_id === 'late'));
    const rearmed = Date.parse(s.nas.armed().find((a) => a.job_id === 'late')!.fire_at);
    expect(rearmed).toBeGreaterThan(missedAt);
    expect((rearmed - missedAt) % 4_000).toBe(0);
  }, 60_000);

  it('skip: records the occurrence missed without running it', async (ctx) => {
    const { s, missedAt } = await dropThenWake(emulator, 'skip', ctx);
    await s.waitFor('the missed record', async () =>
      (await s.runs('late')).some((r) => r.fire_at === missedAt),
    );
    const runs = (await s.runs('late')).filter((r) => r.fire_at <= missedAt);
    expect(runs.map((r) => [r.trigger, r.status])).toEqual([['misfire', 'missed']]);
    // The log line follows the record on disk through an asynchronous stdout: wait for it, then check it.
    await s.waitFor('the missed log line', () => s.logsWith('occurrence missed').length > 0);
    expect(s.logsWith('occurrence missed').map((l) => l.job_id)).toEqual(['late']);
    await s.waitFor('late re-armed', () => s.nas.armed().some((a) => a.job_id === 'late'));
    expect(s.recorder.hitsFor('late').filter((h) => Date.parse(h.fireAt) === missedAt)).toHaveLength(0);
  }, 60_000);
});
