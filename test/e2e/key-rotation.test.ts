import { describe, expect, it } from 'vitest';
import { e2eStacks, NAS_MODES } from '../helpers/e2e.js';

const startStack = e2eStacks();

// Each test starts its own stack: the tests, and the two NAS modes, run side by side.
describe.concurrent.each(NAS_MODES)('e2e: key rotation at NAS ($nas NAS)', ({ emulator }) => {
  it('verifies the first fire signed with a new kid after exactly one JWKS refresh', async (ctx) => {
    // Occurrences within 60 s are accepted when delivered early, so fireNow can drive this job.
    const s = await startStack(
      {
        emulator,
        jobs: (recorder) => [
          { id: 'rot', schedule: 'every 20s', target: { type: 'http', url: `${recorder}/hit/rot` } },
        ],
      },
      ctx,
    );

    await s.wake();
    await s.waitFor('armed and asleep', () => s.nas.armed().length === 1 && !s.proxy.running(), 15_000);
    // The first process fetched the key set once and cached it in the data dir.
    expect(s.jwksRequests()).toBe(1);
    const before = await s.nas.fireNow('rot');
    expect(before.status).toBe(202);
    await s.waitFor(
      'asleep after the first fire',
      () => !s.proxy.running() && s.nas.armed().length === 1,
      15_000,
    );
    expect(s.jwksRequests()).toBe(1);

    const oldKid = s.nas.currentKid();
    const newKid = await s.nas.rotateKey();
    expect(newKid).not.toBe(oldKid);
    const after = await s.nas.fireNow('rot');
    expect(after.status).toBe(202);
    expect(after.body).toMatchObject({ status: 'accepted', job_id: 'rot' });

    // The woken process started from the cached (old) set, met an unknown kid, and refreshed once: the
    // JWKS relay counts requests as they arrive, before the 202 (log lines may trail it).
    expect(s.jwksRequests()).toBe(2);
    expect(s.logsWith('fire refused: invalid token')).toHaveLength(0);
    await s.waitFor('both runs at the recorder', () => s.recorder.hitsFor('rot').length === 2);
  }, 60_000);

  it('accepts fires after NAS replaces its key under the same kid (one refresh by the woken process)', async (ctx) => {
    const s = await startStack(
      {
        jobs: (recorder) => [
          { id: 'same', schedule: 'every 20s', target: { type: 'http', url: `${recorder}/hit/same` } },
        ],
      },
      ctx,
    );

    await s.wake();
    await s.waitFor('armed and asleep', () => s.nas.armed().length === 1 && !s.proxy.running(), 15_000);
    expect(s.jwksRequests()).toBe(1);

    // Before the fix every fire after this was refused (signature_invalid), also after restarts: the
    // cached set held a key for this kid, and only unknown kids triggered a refresh.
    const kid = s.nas.currentKid();
    expect(await s.nas.rotateKey({ keepKid: true })).toBe(kid);
    const first = await s.nas.fireNow('same');
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ status: 'accepted', job_id: 'same' });
    expect(s.jwksRequests()).toBe(2);
    expect(s.logsWith('fire refused: invalid token')).toHaveLength(0);
    await s.waitFor('the run at the recorder', () => s.recorder.hitsFor('same').length === 1);

    // The refreshed set was persisted: the next woken process verifies with no further fetch.
    await s.waitFor('asleep again', () => !s.proxy.running() && s.nas.armed().length === 1, 15_000);
    const second = await s.nas.fireNow('same');
    expect(second.status).toBe(202);
    expect(s.jwksRequests()).toBe(2);
    await s.waitFor('both runs at the recorder', () => s.recorder.hitsFor('same').length === 2);
  }, 60_000);
});
