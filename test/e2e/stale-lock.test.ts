import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_LOCK_LEASE_MS } from '../../src/store/lock.js';
import {
  bundleSnapshot,
  type ChronosLog,
  type Recorder,
  removeBundleSnapshot,
  seedJobs,
  startRecorder,
} from '../helpers/e2e.js';

/*
 * A data directory whose chronos.lock nobody can prove alive: the production bundle must start on it
 * without anyone deleting the file. Before the lease, both cases below exited 1 after 5 s (store_locked).
 */

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(removeBundleSnapshot);

interface Started {
  proc: ChildProcess;
  logs: ChronosLog[];
  /** Resolves with the first log line matching, or rejects at the deadline / when the process exits. */
  line(msg: string, timeoutMs: number): Promise<ChronosLog>;
}

async function serveOn(dataDir: string): Promise<Started> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    CHRONOS_PROVIDER: 'builtin',
    CHRONOS_DATA_DIR: dataDir,
  };
  const proc = spawn(process.execPath, [await bundleSnapshot()], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  cleanups.push(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await new Promise((r) => proc.once('exit', r));
    }
  });
  const logs: ChronosLog[] = [];
  let stderr = '';
  const watchers = new Set<() => void>();
  let partial = '';
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop() ?? '';
    for (const text of parts) if (text.trim()) logs.push(JSON.parse(text) as ChronosLog);
    for (const w of [...watchers]) w();
  });
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  proc.once('exit', () => {
    for (const w of [...watchers]) w();
  });
  return {
    proc,
    logs,
    line: (msg, timeoutMs) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const found = logs.find((l) => l.msg === msg);
          if (found) finish(() => resolve(found));
          else if (proc.exitCode !== null)
            finish(() => reject(new Error(`exited ${proc.exitCode} before "${msg}": ${stderr}`)));
        };
        const timer = setTimeout(
          () => finish(() => reject(new Error(`no "${msg}" after ${timeoutMs} ms: ${stderr}`))),
          timeoutMs,
        );
        const finish = (settle: () => void) => {
          clearTimeout(timer);
          watchers.delete(check);
          settle();
        };
        watchers.add(check);
        check();
      }),
  };
}

async function dataDirWithJob(recorder: Recorder): Promise<string> {
  const dataDir = await mkdtemp(join(tmpdir(), 'chronos-e2e-lock-'));
  cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
  await seedJobs(dataDir, [
    { id: 'tick', schedule: 'every 1s', target: { type: 'http', url: `${recorder.url}/hit/tick` } },
  ]);
  return dataDir;
}

async function recorder(): Promise<Recorder> {
  const r = await startRecorder();
  cleanups.push(() => r.close());
  return r;
}

async function waitForHit(r: Recorder, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (r.hitsFor('tick').length === 0) {
    if (Date.now() > deadline) throw new Error(`no run of "tick" within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('e2e: a store lock nobody can prove alive', () => {
  it('a lock from another host, not renewed for an hour (a moved volume), is broken at start', async () => {
    const r = await recorder();
    const dataDir = await dataDirWithJob(r);
    const lockPath = join(dataDir, 'chronos.lock');
    await writeFile(
      lockPath,
      JSON.stringify({ boot_id: randomUUID(), pid: 1, host: 'the-old-machine', acquired_at: 'then' }),
    );
    const hourAgo = new Date(Date.now() - 3_600_000);
    await utimes(lockPath, hourAgo, hourAgo);

    const started = Date.now();
    const chronos = await serveOn(dataDir);
    await chronos.line('chronos listening', 10_000);
    const listeningAfter = Date.now() - started;
    console.log(`stale foreign-host lock: listening after ${listeningAfter} ms`);
    expect(listeningAfter).toBeLessThan(DEFAULT_LOCK_LEASE_MS);
    const taken = chronos.logs.find((l) => l.msg.startsWith('store lock taken over'));
    expect(taken).toMatchObject({
      reason: 'lease_expired',
      holder_host: 'the-old-machine',
      lock_file: lockPath,
    });
    await waitForHit(r, 10_000);
  });

  it('a fresh lock naming a live unrelated pid is waited out for its lease, then broken', async () => {
    const r = await recorder();
    const dataDir = await dataDirWithJob(r);
    // A live process that is not Chronos and never renews the lock (a pid reused after a kill -9).
    const unrelated = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    cleanups.push(() => {
      unrelated.kill('SIGKILL');
    });
    const lockPath = join(dataDir, 'chronos.lock');
    await writeFile(
      lockPath,
      JSON.stringify({ boot_id: randomUUID(), pid: unrelated.pid, host: hostname(), acquired_at: 'now' }),
    );
    const writtenAt = (await stat(lockPath)).mtimeMs;

    const chronos = await serveOn(dataDir);
    await chronos.line('chronos listening', DEFAULT_LOCK_LEASE_MS + 10_000);
    // JSON log lines carry `time` as an ISO instant (docs/operations.md, Logs).
    const listeningAt = Date.parse(String(chronos.logs.find((l) => l.msg === 'chronos listening')!['time']));
    console.log(
      `fresh lock naming a live unrelated pid: listening ${Math.round(listeningAt - writtenAt)} ms after it was written`,
    );
    // Not before the lease ran out: nobody could tell the holder was not a live Chronos.
    expect(listeningAt - writtenAt).toBeGreaterThanOrEqual(DEFAULT_LOCK_LEASE_MS);
    expect(chronos.logs.find((l) => l.msg.startsWith('store lock taken over'))).toMatchObject({
      reason: 'lease_expired',
      holder_pid: unrelated.pid,
    });
    expect(unrelated.exitCode).toBeNull();
    await waitForHit(r, 10_000);
  }, 40_000);
});
