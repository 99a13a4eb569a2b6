/**
 * A second Chronos-like process for the store tests, bundled to plain JS at test start
 * (test/store/child-process.ts). Modes:
 *
 *   claim <dir> <job_id> <first_fire_at> <count>
 *     prints "ready", waits for a line on stdin, then claims fire_at first+count-1 down to first of
 *     the job one by one, printing "<fire_at> <outcome>" for each, then "done"; exits on the next
 *     stdin line.
 *   crash <dir> <job_prefix> <fire_base> [<retry_job> <retry_fire_at> [<orphan_job> <orphan_fire_at>]]
 *     prints "ready", retries the given keys ("retry <outcome>", "orphan <outcome>"), then loops
 *     creating jobs and claiming + settling occurrences, printing a line after each durable step,
 *     until killed.
 *   hold <dir> <lease_ms> <hold_ms>
 *     takes the store's write lock (leased for lease_ms), prints "held", keeps it for hold_ms with the
 *     event loop free (as during a stalled fsync, which runs on the thread pool), prints "releasing",
 *     releases it and exits.
 */

import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { isChronosError } from '../../../src/errors.js';
import type { Job } from '../../../src/jobs/model.js';
import { claimOccurrence } from '../../../src/occurrence/claim.js';
import { settleOccurrence } from '../../../src/occurrence/settle.js';
import { FileStore } from '../../../src/store/file-store.js';
import { FileLock } from '../../../src/store/lock.js';
import { currentOwner } from '../../../src/store/owner.js';
import { makeJob, T0 } from '../../helpers/jobs.js';

function job(id: string): Job {
  return makeJob(id, { next_run_at: T0 });
}

function claim(store: FileStore, jobId: string, fireAt: number) {
  return claimOccurrence(store, {
    job_id: jobId,
    fire_at: fireAt,
    run_id: `run-${process.pid}-${fireAt}`,
    trigger: 'nas',
    owner: currentOwner(),
    now: Date.now(),
    ttl_ms: 600_000,
    advance: (j) => ({
      ...j,
      next_run_at: fireAt + 1,
      repeat: { ...j.repeat, completed: j.repeat.completed + 1 },
    }),
  });
}

const out = (line: string) => process.stdout.write(`${line}\n`);

async function openStore(dir: string): Promise<FileStore> {
  try {
    return await FileStore.open({ dir });
  } catch (err) {
    if (isChronosError(err, 'store_corrupt')) {
      out(`corrupt ${err.message}`);
      process.exit(3);
    }
    throw err;
  }
}

async function claimMode(dir: string, jobId: string, first: number, count: number): Promise<void> {
  const store = await openStore(dir);
  const lines = createInterface({ input: process.stdin });
  const nextLine = () => new Promise<void>((resolve) => lines.once('line', () => resolve()));
  out('ready');
  await nextLine();
  // Newest key first, one at a time, while the parent goes oldest first: the two meet in the middle
  // and each wins some keys.
  for (let fireAt = first + count - 1; fireAt >= first; fireAt--) {
    out(`${fireAt} ${(await claim(store, jobId, fireAt)).outcome}`);
  }
  out('done');
  // Stay alive until the parent has finished: a claim whose owner exited would rightly be recovered.
  await nextLine();
  lines.close();
  await store.close();
}

async function crashMode(dir: string, prefix: string, fireBase: number, retry: string[]): Promise<void> {
  const store = await openStore(dir);
  out('ready');
  if (retry[0] && retry[1]) out(`retry ${(await claim(store, retry[0], Number(retry[1]))).outcome}`);
  if (retry[2] && retry[3]) out(`orphan ${(await claim(store, retry[2], Number(retry[3]))).outcome}`);
  for (let i = 0; ; i++) {
    const id = `${prefix}-${i}`;
    await store.createJob(job(id));
    out(`created ${id}`);
    for (let k = 0; k < 3; k++) {
      const fireAt = fireBase + i * 10 + k;
      const result = await claim(store, id, fireAt);
      if (result.outcome !== 'claimed') throw new Error(`fresh key ${id} ${fireAt}: ${result.outcome}`);
      out(`claimed ${id} ${fireAt}`);
      await settleOccurrence(store, id, fireAt, 'finished');
      out(`settled ${id} ${fireAt}`);
    }
  }
}

async function holdMode(dir: string, leaseMs: number, holdMs: number): Promise<void> {
  const lock = new FileLock(join(dir, 'chronos.lock'), currentOwner(), 5_000, undefined, leaseMs);
  await lock.acquire();
  out('held');
  await new Promise((resolve) => setTimeout(resolve, holdMs));
  out('releasing');
  await lock.release();
}

const [mode, dir, ...rest] = process.argv.slice(2);
if (mode === 'claim' && dir) {
  await claimMode(dir, rest[0]!, Number(rest[1]), Number(rest[2]));
} else if (mode === 'crash' && dir) {
  await crashMode(dir, rest[0]!, Number(rest[1]), rest.slice(2));
} else if (mode === 'hold' && dir) {
  await holdMode(dir, Number(rest[0]), Number(rest[1]));
} else {
  throw new Error(`usage: store-child claim|crash|hold <dir> ...`);
}
