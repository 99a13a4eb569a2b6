import { describe, expect, it } from 'vitest';
import { e2eStacks, NAS_MODES } from '../helpers/e2e.js';

const startStack = e2eStacks();

// Each test starts its own stack: the tests, and the two NAS modes, run side by side.
describe.concurrent.each(NAS_MODES)('e2e: a job paused while armed ($nas NAS)', ({ emulator }) => {
  it('answers its delivery inactive, sends no cancel for the arm NAS consumed, and does not run it', async (ctx) => {
    const s = await startStack(
      {
        emulator,
        jobs: (recorder) => [
          { id: 'paused', schedule: 'every 1h', target: { type: 'http', url: `${recorder}/hit/paused` } },
          { id: 'other', schedule: 'every 1h', target: { type: 'http', url: `${recorder}/hit/other` } },
        ],
      },
      ctx,
    );

    await s.wake();
    await s.waitFor(
      'both armed and the process asleep',
      () => s.nas.armed().length === 2 && !s.proxy.running(),
      15_000,
    );

    // Paused behind Chronos's back (another replica, or an API call whose cancel never reached NAS).
    const store = await s.store();
    await store.updateJob('paused', (job) => ({ ...job, state: 'paused', updated_at: Date.now() }));

    const delivery = await s.nas.fireNow('paused');
    expect(delivery.status).toBe(200);
    expect(delivery.body).toEqual({ status: 'inactive' });
    await s.waitFor('the process asleep again', () => !s.proxy.running(), 10_000);
    // The delivery consumed the only arm NAS held for the job: a cancel would be a wasted call.
    expect(s.nas.provisions().filter((p) => p.kind === 'cancel')).toHaveLength(0);
    expect(s.nas.armed().map((a) => a.job_id)).toEqual(['other']);

    expect(s.recorder.hits()).toHaveLength(0);
    expect(await s.runs('paused')).toHaveLength(0);
    expect((await store.getJob('paused'))!.state).toBe('paused');
  }, 60_000);
});
