import { describe, expect, it } from 'vitest';
import { callsPerWake, e2eStacks, idleExits, NAS_MODES } from '../helpers/e2e.js';

const startStack = e2eStacks();

// Each test starts its own stack: the tests, and the two NAS modes, run side by side.
describe.concurrent.each(NAS_MODES)('e2e: the scale-to-zero loop ($nas NAS)', ({ nas, emulator }) => {
  it('fires every occurrence exactly once, with the process exiting between fires', async (ctx) => {
    const s = await startStack(
      {
        emulator,
        jobs: (recorder) => [
          { id: 'tick', schedule: 'every 6s', target: { type: 'http', url: `${recorder}/hit/tick` } },
        ],
      },
      ctx,
    );

    await s.wake();
    await s.waitFor('three runs at the recorder', () => s.recorder.hitsFor('tick').length >= 3, 40_000);

    const fireAts = s.recorder.hitsFor('tick').map((h) => Date.parse(h.fireAt));
    expect(new Set(fireAts).size).toBe(fireAts.length);
    for (let i = 1; i < fireAts.length; i++) expect(fireAts[i]! - fireAts[i - 1]!).toBe(6_000);

    // Each fire was answered by a fresh process, and every process exited on its own (idle, exit code 0)
    // before the next one started: judged from the processes themselves, not from log lines.
    const starts = s.proxy.starts();
    expect(starts.length).toBeGreaterThanOrEqual(fireAts.length);
    for (let i = 1; i < starts.length; i++) {
      const previous = starts[i - 1]!;
      expect(previous.exitCode, s.transcript()).toBe(0);
      expect(previous.exitedAt).toBeLessThanOrEqual(starts[i]!.startedAt);
    }
    expect(idleExits(s.proxy)).toBeGreaterThanOrEqual(fireAts.length - 1);

    // NAS saw one accepted delivery per occurrence, and history has one succeeded run per occurrence.
    const accepted = s.nas.deliveries().filter((d) => d.job_id === 'tick' && d.status === 202);
    expect(accepted.map((d) => Date.parse(d.fire_at))).toEqual(expect.arrayContaining(fireAts));
    await s.waitFor(
      'runs recorded',
      async () => (await s.runs('tick')).filter((r) => r.status === 'succeeded').length >= 3,
    );
    const runs = await s.runs('tick');
    for (const at of fireAts)
      expect(runs.filter((r) => r.fire_at === at).map((r) => r.status)).toEqual(['succeeded']);

    // The hop-1 budget of a quiet wake (every start after the first, which armed from nothing): one list
    // that confirms the one provision. A strict NAS drops that arm with the delivery's row: one more of each.
    const quietWakes = callsPerWake(s).slice(1);
    expect(quietWakes.length).toBeGreaterThanOrEqual(1);
    const budget =
      nas === 'strict' ? { provision: 2, cancel: 0, list: 2 } : { provision: 1, cancel: 0, list: 1 };
    for (const wake of quietWakes) expect(wake, s.transcript()).toEqual(budget);
  }, 60_000);
});
