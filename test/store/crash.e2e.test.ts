import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileStore } from '../../src/store/file-store.js';
import { bundleStoreChild, spawnLines } from './child-process.js';

/** Small seeded PRNG (mulberry32) so a failing kill schedule can be replayed. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const KILLS = 60;
const SEED = Number(process.env['CHRONOS_CRASH_SEED'] ?? 20260101);

describe('FileStore under kill -9', () => {
  let child: { file: string; cleanup: () => Promise<void> };
  let dir: string;
  beforeAll(async () => {
    child = await bundleStoreChild();
    dir = await mkdtemp(join(tmpdir(), 'chronos-crash-'));
  });
  afterAll(async () => {
    await child.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  it(`loses no created job and admits no occurrence twice across ${KILLS} SIGKILLs (seed ${SEED})`, async () => {
    const random = seeded(SEED);
    const created = new Set<string>();
    const claimedKeys = new Set<string>();
    const settledKeys: string[] = [];
    let lastSettled: [string, string] | undefined;
    let orphan: [string, string] | undefined;
    const retryOutcomes: string[] = [];
    const orphanOutcomes: string[] = [];

    for (let round = 0; round < KILLS; round++) {
      const retryArgs = [...(lastSettled ?? ['', '']), ...(orphan ?? [])];
      const proc = spawnLines(child.file, [
        'crash',
        dir,
        `r${round}`,
        String(round * 1_000_000),
        ...retryArgs,
      ]);
      await proc.waitFor((l) => l === 'ready');
      // Kill only after the round has made progress, so every round exercises a live writer whatever the
      // machine's load; the random delay then decides where in its write loop the kill lands.
      await proc.waitFor((l) => l.startsWith('created '));
      const delay = 5 + Math.floor(random() * 56);
      await new Promise((resolve) => setTimeout(resolve, delay));
      proc.child.kill('SIGKILL');
      const exit = await proc.exited;
      expect(exit.signal, `round ${round} ended on its own: ${proc.stderr()}`).toBe('SIGKILL');

      let unsettled: [string, string] | undefined;
      for (const line of proc.lines) {
        const [kind, a, b] = line.split(' ');
        if (kind === 'corrupt') throw new Error(`round ${round}: ${line}`);
        if (kind === 'created') created.add(a!);
        if (kind === 'claimed') {
          const key = `${a} ${b}`;
          expect(claimedKeys.has(key), `claimed twice: ${key}`).toBe(false);
          claimedKeys.add(key);
          unsettled = [a!, b!];
        }
        if (kind === 'settled') {
          settledKeys.push(`${a} ${b}`);
          lastSettled = [a!, b!];
          unsettled = undefined;
        }
        if (kind === 'retry') retryOutcomes.push(a!);
        if (kind === 'orphan') orphanOutcomes.push(a!);
      }
      orphan = unsettled;

      // Every reopen must succeed, with every acknowledged write present.
      const store = await FileStore.open({ dir, lockTimeoutMs: 2000 });
      const ids = new Set((await store.listJobs()).map((j) => j.id));
      for (const id of created) expect(ids.has(id), `job ${id} lost after round ${round}`).toBe(true);
      for (const key of claimedKeys) {
        const [id, fireAt] = key.split(' ');
        const row = await store.getLedgerEntry(id!, Number(fireAt));
        expect(row, `ledger row ${key} lost after round ${round}`).toBeDefined();
      }
      for (const key of settledKeys.slice(-5)) {
        const [id, fireAt] = key.split(' ');
        expect((await store.getLedgerEntry(id!, Number(fireAt)))?.status).toBe('finished');
      }
      await store.close();
    }

    // A settled occurrence retried after a crash is always a duplicate; an unsettled one whose
    // owner was killed is recovered (or a duplicate when its settle landed but was not reported).
    expect(retryOutcomes.length).toBeGreaterThan(KILLS / 2);
    expect(new Set(retryOutcomes)).toEqual(new Set(['duplicate']));
    for (const outcome of orphanOutcomes) expect(['recovered', 'duplicate']).toContain(outcome);
    expect(created.size).toBeGreaterThanOrEqual(KILLS);
    console.log(
      `crash test: ${KILLS} kills, ${created.size} jobs created, ${claimedKeys.size} claims, ` +
        `${retryOutcomes.length} duplicate retries, ${orphanOutcomes.filter((o) => o === 'recovered').length} orphans recovered`,
    );
  }, 60_000);
});
