import { afterEach, describe, expect, it } from 'vitest';
import { type Emulator, startEmulator } from '../../src/emulator/index.js';
import { createHttpNasClient } from '../../src/nas/http-client.js';
import type { NasClient } from '../../src/nas/nas.js';
import { createTokenSource } from '../../src/nas/token-source.js';
import { USER_AGENT } from '../../src/version.js';

// The real client against the real emulator in strict mode, over loopback HTTP.

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const LATER = Date.parse('2030-01-01T09:00:00Z');

async function pair(opts: Parameters<typeof startEmulator>[0]): Promise<{ emu: Emulator; nas: NasClient }> {
  const emu = await startEmulator(opts);
  cleanups.push(() => emu.close());
  const nas = createHttpNasClient({
    portalUrl: emu.url,
    // Nothing is due before 2030, so nothing is ever delivered here.
    callbackUrl: 'http://127.0.0.1:9',
    tokenSource: createTokenSource({ token: emu.agentToken }),
    userAgent: USER_AGENT,
  });
  cleanups.push(() => nas.close());
  return { emu, nas };
}

describe('NAS client against the strict emulator', () => {
  it('an empty 200 to provision is an arm; a quirky list with junk reads back every real arm', async () => {
    const { emu, nas } = await pair({ strict: true });
    expect(await nas.provision({ job_id: 'a', fire_at: LATER })).toEqual({ schedule_id: null });
    expect(await nas.provision({ job_id: 'b', fire_at: LATER + 250 })).toEqual({ schedule_id: null });
    expect(emu.provisions().map((p) => [p.status, p.reply])).toEqual([
      [200, ''],
      [200, ''],
    ]);

    const list = await nas.list();
    expect(list.entries).toEqual([
      { job_id: 'a', fire_at: LATER, schedule_id: null, fire_at_raw: '2030-01-01T09:00:00+00:00' },
      { job_id: 'b', fire_at: LATER + 250, schedule_id: null, fire_at_raw: '2030-01-01T09:00:00.250+00:00' },
    ]);
    expect(list.skipped).toBe(4);
    expect(list.unreadableJobIds).toEqual(['junk-a', 'junk-b']);
  });

  it('a job sent with a malformed fire_at is named, not listed, and the others stay trusted', async () => {
    const { nas } = await pair({ faults: { malformedListJobs: ['b'] } });
    await nas.provision({ job_id: 'a', fire_at: LATER });
    await nas.provision({ job_id: 'b', fire_at: LATER });
    const list = await nas.list();
    expect(list.entries.map((e) => [e.job_id, e.fire_at, typeof e.schedule_id])).toEqual([
      ['a', LATER, 'string'],
    ]);
    expect(list).toMatchObject({ skipped: 1, unreadableJobIds: ['b'] });
  });
});
