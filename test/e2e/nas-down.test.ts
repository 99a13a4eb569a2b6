import { describe, expect, it } from 'vitest';
import { e2eStacks, NAS_MODES } from '../helpers/e2e.js';

const startStack = e2eStacks();

// Each test starts its own stack: the tests, and the two NAS modes, run side by side.
describe.concurrent.each(NAS_MODES)('e2e: NAS down during reconcile ($nas NAS)', ({ emulator }) => {
  it('stays awake while arms fail, arms every job once NAS is back, and only then exits', async (ctx) => {
    const s = await startStack(
      {
        emulator,
        jobs: (recorder) => [
          { id: 'alpha', schedule: 'every 1h', target: { type: 'http', url: `${recorder}/hit/alpha` } },
          { id: 'beta', schedule: '0 0 * * *', target: { type: 'http', url: `${recorder}/hit/beta` } },
        ],
        // Far more than the client's own retries: only Chronos's heal loop can get through.
        faults: { provisionFailures: 10_000 },
      },
      ctx,
    );

    await s.wake();
    await s.waitFor(
      'a reconcile that failed and scheduled a retry',
      () => s.logsWith('will retry failed NAS calls').length >= 1,
      20_000,
    );
    const failing = s.logs().find((l) => l.msg.startsWith('reconcile:'));
    expect(failing).toMatchObject({ failed: 2, armed: 0 });
    // Several idle periods (1 s) have passed while the arms kept failing; the process is still up.
    const [start] = s.proxy.starts();
    expect(start!.exitedAt).toBeUndefined();
    expect(Date.now() - start!.readyAt!).toBeGreaterThan(2_000);
    expect(s.logsWith('idle and every job armed; exiting')).toHaveLength(0);
    expect(s.nas.armed()).toHaveLength(0);

    s.nas.faults.provisionFailures = 0;
    const restoredAt = Date.now();
    await s.waitFor('both jobs armed', () => s.nas.armed().length === 2, 20_000);
    expect(
      s.nas
        .armed()
        .map((a) => a.job_id)
        .sort(),
    ).toEqual(['alpha', 'beta']);
    await s.waitFor('idle exit', () => s.proxy.starts()[0]!.exitCode === 0, 10_000);

    const armedAt = Math.max(...s.nas.armed().map((a) => Date.parse(a.armed_at)));
    expect(armedAt).toBeGreaterThanOrEqual(restoredAt);
    expect(s.proxy.starts()[0]!.exitedAt!).toBeGreaterThan(armedAt);
    expect(s.proxy.starts()).toHaveLength(1);
    const failures = s.nas.provisions().filter((p) => p.kind === 'provision' && p.status === 503);
    expect(failures.length).toBeGreaterThan(2);
  }, 60_000);
});
