import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorMessage } from '../../src/errors.js';
import { claimOccurrence } from '../../src/occurrence/claim.js';
import { FileStore } from '../../src/store/file-store.js';
import { bundleStoreChild, childEnv, spawnLines } from './child-process.js';
import { claimReq, deadPid, makeJob, T0 } from './fixtures.js';

// FileStore against other processes: a second store process, a live lock holder, a low descriptor limit.

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'chronos-file-store-'));
}

async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('FileStore with other processes', () => {
  let dir: string;
  const dirs: string[] = [];
  const fresh = async () => {
    dir = await tempDir();
    dirs.push(dir);
    return dir;
  };
  afterAll(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  describe('with a real second process', () => {
    let child: { file: string; cleanup: () => Promise<void> };
    beforeAll(async () => {
      child = await bundleStoreChild();
    });
    afterAll(async () => {
      await child.cleanup();
    });

    it('admits each occurrence once when both processes claim the same keys concurrently', async () => {
      const store = await FileStore.open({ dir: await fresh() });
      await store.createJob(makeJob('j'));
      const count = 40;
      const other = spawnLines(child.file, ['claim', dir, 'j', String(T0), String(count)]);
      await other.waitFor((l) => l === 'ready');
      other.child.stdin.write('go\n');
      const mine: string[] = [];
      for (let i = 0; i < count; i++)
        mine.push((await claimOccurrence(store, claimReq('j', T0 + i, { now: Date.now() }))).outcome);
      await other.waitFor((l) => l === 'done');
      other.child.stdin.write('exit\n');
      expect(await other.exited).toEqual({ code: 0, signal: null });
      const theirs = new Map(
        other.lines.filter((l) => /^\d+ /.test(l)).map((l) => l.split(' ') as [string, string]),
      );
      let claimedHere = 0;
      for (let i = 0; i < count; i++) {
        const here = mine[i];
        const there = theirs.get(String(T0 + i));
        expect([here, there].sort(), `fire_at ${T0 + i}`).toEqual(['claimed', 'duplicate']);
        if (here === 'claimed') claimedHere += 1;
      }
      expect((await store.getJob('j'))?.repeat.completed).toBe(count);
      console.log(`real-process race: this process won ${claimedHere}/${count}`);
      await store.close();
    });
  });

  describe('the write lock', () => {
    let child: { file: string; cleanup: () => Promise<void> };
    beforeAll(async () => {
      child = await bundleStoreChild();
    });
    afterAll(async () => {
      await child.cleanup();
    });

    it('is broken when its holder died', async () => {
      // No lingering: the test then checks that the broken lock is gone once the write is done.
      const store = await FileStore.open({ dir: await fresh(), lockTimeoutMs: 2000, lockLingerMs: 0 });
      const lockPath = join(dir, 'chronos.lock');
      const holder = { boot_id: randomUUID(), pid: await deadPid(), host: hostname(), acquired_at: 'then' };
      await writeFile(lockPath, JSON.stringify(holder));
      const started = Date.now();
      await store.createJob(makeJob('a'));
      expect(Date.now() - started).toBeLessThan(1000);
      await expect(stat(lockPath)).rejects.toMatchObject({ code: 'ENOENT' });
      await store.close();
    });

    it('is broken when left unreadable long ago (holder died between create and write)', async () => {
      const store = await FileStore.open({ dir: await fresh(), lockTimeoutMs: 2000 });
      const lockPath = join(dir, 'chronos.lock');
      await writeFile(lockPath, '');
      const past = new Date(Date.now() - 60_000);
      await utimes(lockPath, past, past);
      await store.createJob(makeJob('a'));
      expect((await store.getJob('a'))?.id).toBe('a');
      await store.close();
    });

    /** A process that keeps `path` renewed (touches it) as a live holder does, until killed. */
    const renewingHolder = (path: string) =>
      spawn(
        process.execPath,
        [
          '-e',
          `const fs = require('node:fs'); setInterval(() => { try { const t = new Date(); fs.utimesSync(${JSON.stringify(path)}, t, t); } catch {} }, 50);`,
        ],
        { env: childEnv(), stdio: 'ignore' },
      );

    it('times out with store_locked naming the file and holder while a live holder keeps renewing it', async () => {
      const store = await FileStore.open({ dir: await fresh(), lockTimeoutMs: 300, lockLeaseMs: 1_000 });
      await store.createJob(makeJob('a'));
      const lockPath = join(dir, 'chronos.lock');
      const holderProc = renewingHolder(lockPath);
      try {
        const holder = { boot_id: randomUUID(), pid: holderProc.pid, host: hostname(), acquired_at: 'now' };
        await writeFile(lockPath, JSON.stringify(holder));
        const started = Date.now();
        const err = await caught(store.updateJob('a', (j) => ({ ...j, name: 'x' })));
        const waited = Date.now() - started;
        expect(err).toMatchObject({ code: 'store_locked' });
        expect(errorMessage(err)).toContain(lockPath);
        expect(errorMessage(err)).toContain(`pid ${holderProc.pid}`);
        // Renewals seen while waiting: the holder is alive, so the normal timeout applies, not the lease.
        expect(waited).toBeGreaterThanOrEqual(290);
        expect(waited).toBeLessThan(1_000);
        // Reads never wait for the lock.
        expect((await store.getJob('a'))?.name).toBe('a');
        expect(await readFile(lockPath, 'utf8')).toBe(JSON.stringify(holder));
        // Once the holder is gone, writes go through again.
        holderProc.kill('SIGKILL');
        await new Promise((resolve) => holderProc.once('exit', resolve));
        await store.updateJob('a', (j) => ({ ...j, name: 'x' }));
        expect((await store.getJob('a'))?.name).toBe('x');
      } finally {
        holderProc.kill('SIGKILL');
        await store.close();
      }
    });

    it('cleans up temp files only under the lock (open waits for a live, renewing writer)', async () => {
      await fresh();
      await mkdir(join(dir, 'jobs'), { recursive: true });
      const lockPath = join(dir, 'chronos.lock');
      const holderProc = renewingHolder(lockPath);
      try {
        const holder = { boot_id: randomUUID(), pid: holderProc.pid, host: hostname(), acquired_at: 'now' };
        await writeFile(lockPath, JSON.stringify(holder));
        const inFlight = join(dir, 'jobs', '.x.json.0123456789ab.tmp');
        await writeFile(inFlight, 'being written');
        await expect(FileStore.open({ dir, lockTimeoutMs: 200, lockLeaseMs: 1_000 })).rejects.toMatchObject({
          code: 'store_locked',
        });
        expect(await readFile(inFlight, 'utf8')).toBe('being written');
      } finally {
        holderProc.kill('SIGKILL');
      }
    });

    it('breaks at once a lock naming another host that was not renewed within its lease (a moved volume)', async () => {
      await fresh();
      const lockPath = join(dir, 'chronos.lock');
      const holder = {
        boot_id: randomUUID(),
        pid: process.pid,
        host: 'old-machine-that-is-gone',
        acquired_at: 'yesterday',
        lease_ms: 10_000,
      };
      await writeFile(lockPath, JSON.stringify(holder));
      const past = new Date(Date.now() - 3_600_000);
      await utimes(lockPath, past, past);
      const started = Date.now();
      const store = await FileStore.open({ dir, lockTimeoutMs: 5_000, lockLingerMs: 0 });
      expect(Date.now() - started).toBeLessThan(1_000);
      await store.createJob(makeJob('a'));
      await store.close();
      await expect(stat(lockPath)).rejects.toMatchObject({ code: 'ENOENT' });
    });

    it.each([
      ['another host', () => ({ pid: 4242, host: 'some-other-machine' })],
      ['a live pid of an unrelated process on this host', () => ({ pid: process.ppid, host: hostname() })],
    ])('waits out a fresh lock naming %s for its lease, then breaks it', async (_name, who) => {
      await fresh();
      const leaseMs = 600;
      const lockPath = join(dir, 'chronos.lock');
      // Fresh (mtime now) and never renewed: nobody can prove its holder alive or dead.
      await writeFile(
        lockPath,
        JSON.stringify({ boot_id: randomUUID(), ...who(), acquired_at: 'now', lease_ms: leaseMs }),
      );
      const started = Date.now();
      // The timeout is shorter than the lease: a holder that does not renew is still waited out.
      const store = await FileStore.open({ dir, lockTimeoutMs: 100, lockLeaseMs: 5_000, lockLingerMs: 0 });
      const waited = Date.now() - started;
      expect(waited).toBeGreaterThanOrEqual(leaseMs - 50);
      expect(waited).toBeLessThan(leaseMs + 2_000);
      await store.createJob(makeJob('a'));
      expect((await store.getJob('a'))?.id).toBe('a');
      await store.close();
    });

    it('two live processes still exclude each other when one holds the lock for several leases', async () => {
      const store = await FileStore.open({ dir: await fresh(), lockTimeoutMs: 10_000, lockLeaseMs: 300 });
      await store.createJob(makeJob('a'));
      await store.close();
      // The child holds the lock for ~7 leases with its event loop free, as during a stalled fsync.
      const other = spawnLines(child.file, ['hold', dir, '300', '2000']);
      try {
        await other.waitFor((l) => l === 'held');
        const waiter = await FileStore.open({ dir, lockTimeoutMs: 10_000, lockLeaseMs: 300 });
        // open() itself took the lock: it must have waited for the child's release, never broken it.
        expect(other.lines).toContain('releasing');
        await waiter.updateJob('a', (j) => ({ ...j, name: 'after' }));
        await waiter.close();
        expect(await other.exited).toMatchObject({ code: 0 });
      } finally {
        other.child.kill('SIGKILL');
      }
    });
  });
});

describe('FileStore listing many jobs', () => {
  it('lists more jobs than the process may open files at once (no EMFILE)', async () => {
    const dir = await tempDir();
    const bundleDir = await tempDir();
    try {
      // Write the job files directly (as a long-lived store would have): creating 600 jobs through the
      // store would spend seconds in fsync for nothing this test is about.
      await FileStore.open({ dir }).then((s) => s.close());
      await Promise.all(
        Array.from({ length: 600 }, (_, i) => {
          const job = makeJob(`job-${i}`);
          return writeFile(
            join(dir, 'jobs', `${job.id}.json`),
            JSON.stringify({ version: 1, job, ledger: [] }),
          );
        }),
      );
      // The store alone, bundled to plain JS: the child needs no TS loader and no dist/ build.
      const entry = join(bundleDir, 'file-store.mjs');
      await build({
        entryPoints: [new URL('../../src/store/file-store.ts', import.meta.url).pathname],
        outfile: entry,
        bundle: true,
        format: 'esm',
        platform: 'node',
        target: 'node20',
        logLevel: 'error',
      });
      const script = `const { FileStore } = await import(${JSON.stringify(entry)}); const s = await FileStore.open({ dir: ${JSON.stringify(dir)} }); console.log((await s.listJobs()).length);`;
      // 256 descriptors: far fewer than the jobs, as in a container with a low limit and many more jobs.
      const child = spawn(
        'bash',
        ['-c', `ulimit -n 256 && exec "${process.execPath}" --input-type=module -e '${script}'`],
        {
          env: childEnv(),
        },
      );
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
      });
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      expect(err).not.toContain('EMFILE');
      expect(code).toBe(0);
      expect(out.trim()).toBe('600');
    } finally {
      await rm(dir, { recursive: true, force: true });
      await rm(bundleDir, { recursive: true, force: true });
    }
  });
});
