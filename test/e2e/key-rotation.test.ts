import { describe, expect, it } from 'vitest';
import { e2eStacks, NAS_MODES } from '../helpers/e2e.js';

const startStack = e2eStacks();

describe.each(NAS_MODES)('e2e: key rotation at NAS ($nas NAS)', ({ emulator }) => {
  it('verifies the first fire signed with a new kid after exactly one JWKS refresh', async () => {
    // Occurrences within 60 s are accepted when delivered early, so fireNow can drive this job.
    const s = await startStack({
      emulator,
      jobs: (recorder) => [
        { id: 'rot', schedule: 'every 20s', target: { type: 'http', url: `${recorder}/hit/rot` } },
      ],
    });

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

    // The woken process started from the cached (old) set, met an unknown kid, and refreshed once.
    expect(s.jwksRequests()).toBe(2);
    const rotatedPid = s.logsWith('fire accepted').at(-1)!.pid;
    expect(s.logsWith('fire key set refreshed').filter((l) => l.pid === rotatedPid)).toHaveLength(1);
    expect(s.logsWith('fire refused: invalid token')).toHaveLength(0);
    await s.waitFor('both runs at the recorder', () => s.recorder.hitsFor('rot').length === 2);
  });
});
