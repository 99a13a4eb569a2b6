import { describe, expect, it } from 'vitest';
import { e2eStacks } from '../helpers/e2e.js';

const startStack = e2eStacks();

describe('e2e harness: emulator options', () => {
  it('passes strict mode and faults to the emulator before anything runs, and shows them in the transcript', async () => {
    const s = await startStack({
      jobs: [],
      emulator: { strict: true, faults: { removeRowDelayMs: 1000 } },
      faults: { listQuirks: false, malformedListJobs: ['tick'] },
    });
    expect(s.nas.strict).toBe(true);
    expect(s.nas.faults).toMatchObject({
      rememberKeys: true,
      removeRowOnDelivery: true,
      removeRowDelayMs: 1000,
      deliveryAttempts: 4,
      listQuirks: false,
      malformedListJobs: ['tick'],
    });
    const transcript = s.transcript();
    expect(transcript).toMatch(/\[nas\] listen .*strict\)/);
    expect(transcript).toMatch(/\[nas\] faults .*"removeRowDelayMs":1000.*"malformedListJobs":\["tick"\]/);
  });

  it('rejects a misspelt fault switch instead of silently ignoring it', async () => {
    await expect(startStack({ jobs: [], faults: { rememberKey: true } as never })).rejects.toThrow(
      /unknown fault switch: rememberKey/,
    );
  });
});
