import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Emulator } from '../../src/emulator/index.js';
import type { NasClient } from '../../src/nas/nas.js';
import {
  callsOf,
  createHarness,
  nasClientFor,
  recordSpec,
  type SchedulerHarness,
  startFrozenEmulator,
  T0,
  waitUntil,
} from '../helpers/scheduler-fixtures.js';

let emulator: Emulator;
let h: SchedulerHarness;
let client: NasClient;

beforeEach(async () => {
  emulator = await startFrozenEmulator();
  h = createHarness();
  client = nasClientFor(emulator.url, emulator.agentToken, h.clock);
});

afterEach(async () => {
  await h.current.provider?.stop();
  await client.close();
  await emulator.close();
});

describe('arming_failed: the chronos provider heal path', () => {
  it('reports a job whose arm keeps failing for the configured time, once per failing stretch', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    emulator.faults.provisionFailures = 4;
    const reported: Array<{ jobId: string; since: number; error: string }> = [];
    const provider = h.chronos(async () => client, {
      healBackoff: { base: 1_000, max: 60_000 },
      armingAlertAfterMs: 2_500,
      onArmingFailed: (jobId, since, error) => reported.push({ jobId, since, error }),
    });
    await provider.start();
    // Heal rounds at +1 s, +3 s, +7 s; the fourth provision (at +7 s) fails, the fifth (+15 s) arms.
    for (const expectedCalls of [2, 3, 4, 5]) {
      await h.clock.advanceTo(h.clock.nextTimerAt()!);
      await waitUntil(() => callsOf(emulator, 'provision') >= expectedCalls && !h.activity.busy);
      if (expectedCalls === 2) expect(reported).toEqual([]);
    }
    expect(reported).toEqual([{ jobId: 'alpha', since: T0, error: expect.any(String) }]);
    await waitUntil(() => provider.isArmed('alpha'));
  });

  it('says nothing when the arm recovers before the time is up', async () => {
    await h.addJob(recordSpec('alpha', 'every 15m'));
    emulator.faults.provisionFailures = 2;
    const reported: string[] = [];
    const provider = h.chronos(async () => client, {
      healBackoff: { base: 1_000, max: 60_000 },
      armingAlertAfterMs: 10_000,
      onArmingFailed: (jobId) => reported.push(jobId),
    });
    await provider.start();
    for (let round = 0; round < 2; round++) {
      const calls = callsOf(emulator, 'provision');
      await h.clock.advanceTo(h.clock.nextTimerAt()!);
      await waitUntil(() => callsOf(emulator, 'provision') > calls && !h.activity.busy);
    }
    await waitUntil(() => provider.isArmed('alpha'));
    expect(reported).toEqual([]);
  });
});
