import { describe, expect, it } from 'vitest';
import { e2eStacks, iso, NAS_MODES } from '../helpers/e2e.js';

const startStack = e2eStacks();

describe.each(NAS_MODES)('e2e: duplicate deliveries ($nas NAS)', ({ emulator }) => {
  it('runs each occurrence once when NAS delivers twice and a relay retries after the run', async () => {
    const s = await startStack({
      emulator,
      jobs: (recorder) => [
        { id: 'dup', schedule: 'every 4s', target: { type: 'http', url: `${recorder}/hit/dup` } },
      ],
      faults: { duplicateDelivery: true },
    });

    await s.wake();
    const duplicatesAnswered = () =>
      s.nas
        .deliveries()
        .filter((d) => d.duplicate && (d.body as { status?: string })?.status === 'duplicate');
    await s.waitFor('two occurrences delivered twice', () => duplicatesAnswered().length >= 2, 20_000);
    for (const d of duplicatesAnswered()) expect(d.status).toBe(200);

    // A late retry by the relay after the run finished: same occurrence, fresh token.
    const first = s.recorder.hitsFor('dup')[0]!;
    const fireAt = Date.parse(first.fireAt);
    await s.waitFor('first run recorded', async () =>
      (await s.runs('dup')).some((r) => r.fire_at === fireAt && r.status === 'succeeded'),
    );
    const token = await s.nas.mintFireToken({ sub: 'dup' });
    const reply = await fetch(`${s.url}/api/cron/fire`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ job_id: 'dup', fire_at: iso(fireAt) }),
    });
    expect(reply.status).toBe(200);
    expect(await reply.json()).toEqual({ status: 'duplicate' });

    // One target call and one run per occurrence.
    const hits = s.recorder.hitsFor('dup').map((h) => h.fireAt);
    expect(new Set(hits).size).toBe(hits.length);
    const runs = await s.runs('dup');
    const perOccurrence = new Map<number, number>();
    for (const r of runs) perOccurrence.set(r.fire_at, (perOccurrence.get(r.fire_at) ?? 0) + 1);
    expect([...perOccurrence.values()].every((n) => n === 1)).toBe(true);
    expect(s.logsWith('duplicate fire').length).toBeGreaterThanOrEqual(3);
  });
});
