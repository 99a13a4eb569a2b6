import { claimFire } from '../../src/occurrence/claim.js';
import { currentOwner } from '../../src/store/owner.js';
import { createHarness, nasClientFor, startFrozenEmulator } from '../helpers/scheduler-fixtures.js';
import { providerContract } from './provider-contract.js';

providerContract('builtin', async () => {
  const h = createHarness();
  return {
    h,
    provider: h.builtin(),
    trigger: 'builtin',
    async fireDue(at) {
      await h.clock.advanceTo(at);
      await h.runsSettled();
    },
    async cleanup() {},
  };
});

// The NAS-backed provider against the NAS emulator over loopback HTTP. The emulator runs on its own frozen
// clock and delivers nothing by itself: fireDue delivers what it holds, as the fire route would.
providerContract('chronos (NAS emulator)', async () => {
  const emulator = await startFrozenEmulator();
  const h = createHarness();
  const client = nasClientFor(emulator.url, emulator.agentToken, h.clock);
  const provider = h.chronos(async () => client);
  return {
    h,
    provider,
    trigger: 'nas',
    async fireDue(at) {
      await h.clock.advanceTo(at);
      const due = emulator
        .armed()
        .map((arm) => ({ jobId: arm.job_id, fireAt: Date.parse(arm.fire_at) }))
        .filter((arm) => arm.fireAt <= at)
        .sort((a, b) => a.fireAt - b.fireAt);
      for (const { jobId, fireAt } of due) {
        const outcome = await claimFire(h.store, {
          job_id: jobId,
          fire_at: fireAt,
          trigger: 'nas',
          now: h.clock.now(),
          owner: currentOwner(),
        });
        provider.onDelivered?.(jobId, fireAt);
        if (outcome.kind === 'accepted') await h.engine.onAccepted(outcome.accepted);
        else if (outcome.kind === 'gone' || outcome.kind === 'inactive') await provider.disarm(jobId);
      }
      await h.runsSettled();
    },
    async cleanup() {
      await client.close();
      await emulator.close();
    },
  };
});
