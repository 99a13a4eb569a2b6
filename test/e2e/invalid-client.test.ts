import { describe, expect, it } from 'vitest';
import { e2eStacks, NAS_MODES } from '../helpers/e2e.js';

const startStack = e2eStacks();

// Each test starts its own stack: the tests, and the two NAS modes, run side by side.
describe.concurrent.each(NAS_MODES)(
  'e2e: NAS rejects the agent (invalid_client) ($nas NAS)',
  ({ emulator }) => {
    it('falls back to the builtin timer, keeps firing locally, and never exits idle', async (ctx) => {
      const s = await startStack(
        {
          emulator,
          jobs: (recorder) => [
            { id: 'local', schedule: 'every 2s', target: { type: 'http', url: `${recorder}/hit/local` } },
          ],
          faults: { rejectAgent: true },
        },
        ctx,
      );

      await s.wake();
      await s.waitFor('three local runs', () => s.recorder.hitsFor('local').length >= 3, 20_000);

      // Log lines trail behaviour (pino writes asynchronously): wait for the warning rather than count it.
      await s.waitFor('the invalid_client warning', () =>
        s.logs().some((l) => l.code === 'nas_invalid_client'),
      );
      const warning = s.logs().find((l) => l.code === 'nas_invalid_client');
      expect(warning?.level).toBe(40);
      const runs = await s.runs('local');
      expect(runs.length).toBeGreaterThanOrEqual(3);
      expect(new Set(runs.map((r) => r.trigger))).toEqual(new Set(['builtin']));
      const fireAts = s.recorder.hitsFor('local').map((h) => h.fireAt);
      expect(new Set(fireAts).size).toBe(fireAts.length);

      // One process the whole time, well past the 1 s idle period: builtin never lets it sleep.
      expect(s.proxy.starts()).toHaveLength(1);
      expect(s.proxy.running()).toBe(true);
      expect(s.logsWith('idle and every job armed; exiting')).toHaveLength(0);
      // Identity rejected: Chronos stops calling NAS instead of retrying.
      const calls = s.nas.provisions().length;
      expect(calls).toBeLessThanOrEqual(2);
      expect(s.nas.deliveries()).toHaveLength(0);
    }, 60_000);
  },
);
