import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Store } from '../../src/store/store.js';
import { seededRandom } from '../helpers/seeded-random.js';
import { bundleStoreChild, spawnLines } from './child-process.js';

const KILLS = 60;
const SEED = Number(process.env['CHRONOS_CRASH_SEED'] ?? 20260101);

export interface CrashTarget {
  /** What the child opens: a data directory or a database URL (test/store/child/store-child.ts). */
  location: string;
  /** Opens the same storage in this process, to check it after each kill. */
  open: () => Promise<Store>;
  cleanup: () => Promise<void>;
  /**
   * The line after which the random kill delay starts (default `created `). A store whose first writes of a
   * fresh process are slow (a database connection preparing its statements) waits for `claimed ` so that
   * every round is killed among claims and settles, not before them.
   */
  killAfter?: string;
}

/**
 * Kills a child writing to `target` with SIGKILL at random points, KILLS times, and checks after each kill that
 * every acknowledged write is there and that no occurrence was claimed twice.
 */
export function crashSuite(
  name: string,
  makeTarget: () => Promise<CrashTarget>,
  /** The whole schedule's budget: 60 spawns of a child that connects to a database cost more than to a directory. */
  timeoutMs = 60_000,
): void {
  describe(`${name} under kill -9`, () => {
    let child: { file: string; cleanup: () => Promise<void> };
    let target: CrashTarget;
    beforeAll(async () => {
      child = await bundleStoreChild();
      target = await makeTarget();
    });
    afterAll(async () => {
      await child.cleanup();
      await target.cleanup();
    });

    it(
      `loses no created job and admits no occurrence twice across ${KILLS} SIGKILLs (seed ${SEED})`,
      async () => {
        const random = seededRandom(SEED);
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
            target.location,
            `r${round}`,
            String(round * 1_000_000),
            ...retryArgs,
          ]);
          await proc.waitFor((l) => l === 'ready');
          // Kill only after the round has made progress, so every round exercises a live writer whatever the
          // machine's load; the random delay then decides where in its write loop the kill lands.
          await proc.waitFor((l) => l.startsWith(target.killAfter ?? 'created '));
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
          const store = await target.open();
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
      },
      timeoutMs,
    );
  });
}
