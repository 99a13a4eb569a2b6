import { describe, expect, it } from 'vitest';
import { e2eStacks, iso, NAS_MODES } from '../helpers/e2e.js';

const startStack = e2eStacks();

// Each test starts its own stack: the tests, and the two NAS modes, run side by side.
describe.concurrent.each(NAS_MODES)('e2e: duplicate deliveries ($nas NAS)', ({ emulator }) => {
  it('runs each occurrence once when NAS delivers twice and a relay retries after the run', async (ctx) => {
    const s = await startStack(
      {
        emulator,
        jobs: (recorder) => [
          { id: 'dup', schedule: 'every 4s', target: { type: 'http', url: `${recorder}/hit/dup` } },
        ],
        faults: { duplicateDelivery: true },
      },
      ctx,
    );

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
    // Duplicates are judged from NAS's recorded replies and the run history above, never by counting
    // "duplicate fire" log lines: pino writes asynchronously, and a line may trail the reply it logs.
  }, 60_000);

  it('a delivery without fire_at, twice: the second is a duplicate, and the next occurrence runs on time', async (ctx) => {
    const s = await startStack(
      {
        emulator,
        jobs: (recorder) => [
          { id: 'legacy', schedule: 'every 10s', target: { type: 'http', url: `${recorder}/hit/legacy` } },
        ],
      },
      ctx,
    );
    await s.wake();
    await s.waitFor('armed', () => s.nas.armed().some((a) => a.job_id === 'legacy'));
    const armedIso = s.nas.armed().find((a) => a.job_id === 'legacy')!.fire_at;
    const armedAt = Date.parse(armedIso);

    // An older NAS (or a relay) that omits fire_at, delivering the same occurrence twice.
    const deliverWithoutFireAt = async () => {
      const token = await s.nas.mintFireToken({ sub: 'legacy' });
      const reply = await fetch(`${s.url}/api/cron/fire`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ job_id: 'legacy' }),
      });
      return { status: reply.status, body: (await reply.json()) as Record<string, unknown> };
    };
    const first = await deliverWithoutFireAt();
    expect(first).toMatchObject({ status: 202, body: { status: 'accepted', fire_at: armedIso } });
    // Before the fix: 202 for the *next* occurrence (armedAt + 10 s, within the 60 s early window), run
    // ahead of time, and its own delivery from NAS then answered `duplicate`.
    const second = await deliverWithoutFireAt();
    expect(second).toEqual({ status: 200, body: { status: 'duplicate' } });

    // The next occurrence is delivered by NAS at its time and runs then, once.
    const next = armedAt + 10_000;
    await s.waitFor(
      'the next occurrence run',
      async () => (await s.runs('legacy')).some((r) => r.fire_at === next && r.status === 'succeeded'),
      30_000,
    );
    const runs = await s.runs('legacy');
    expect(runs.filter((r) => r.fire_at === armedAt)).toHaveLength(1);
    expect(runs.filter((r) => r.fire_at === next).map((r) => r.trigger)).toEqual(['nas']);
    const nextHits = s.recorder.hitsFor('legacy').filter((h) => Date.parse(h.fireAt) === next);
    expect(nextHits).toHaveLength(1);
    // Run at its time, not when the second delivery came in (~10 s before it).
    expect(nextHits[0]!.at).toBeGreaterThanOrEqual(next - 1_000);
  }, 60_000);
});
