import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { errorMessage, isChronosError } from '../../src/errors.js';
import { claimOccurrence } from '../../src/occurrence/claim.js';
import { FileStore } from '../../src/store/file-store.js';
import { CONTRACT_LEDGER_RETENTION, CONTRACT_RUN_RETENTION, storeContract } from './contract.js';
import { claimReq, makeJob, makeRun, T0 } from './fixtures.js';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'chronos-file-store-'));
}

storeContract('FileStore', async () => {
  const dir = await tempDir();
  const options = { dir, runRetention: CONTRACT_RUN_RETENTION, ledgerRetention: CONTRACT_LEDGER_RETENTION };
  let current = await FileStore.open(options);
  const reopen = async () => {
    await current.close();
    current = await FileStore.open(options);
    return current;
  };
  return {
    store: current,
    reopen,
    damageJob: async (id) => {
      await current.close();
      const path = join(dir, 'jobs', `${id}.json`);
      await writeFile(path, (await readFile(path, 'utf8')).slice(0, 40));
      return reopen();
    },
    damageHistory: async (id) => {
      await current.close();
      await writeFile(join(dir, 'runs', `${id}.json`), '{"version":1,"runs":[{"run_');
      return reopen();
    },
    cleanup: async () => {
      await current.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('FileStore', () => {
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

  it('lays out one file per job (job + ledger) and one per job history, private to the user', async () => {
    const store = await FileStore.open({ dir: await fresh() });
    await store.createJob(makeJob('a'));
    await claimOccurrence(store, claimReq('a', T0));
    await store.appendRun(makeRun('a', 'r1'));
    const doc = JSON.parse(await readFile(join(dir, 'jobs', 'a.json'), 'utf8'));
    expect(doc).toMatchObject({
      version: 1,
      job: { id: 'a', repeat: { completed: 1 } },
      ledger: [{ fire_at: T0 }],
    });
    const runs = JSON.parse(await readFile(join(dir, 'runs', 'a.json'), 'utf8'));
    expect(runs).toMatchObject({ version: 1, runs: [{ run_id: 'r1' }] });
    expect((await stat(join(dir, 'jobs', 'a.json'))).mode & 0o777).toBe(0o600);
    // The write lock may still linger from the last write (so writes that follow closely skip re-creating
    // it); how long it lingers is a timer, so its presence here is not asserted.
    expect((await readdir(dir)).filter((name) => name !== 'chronos.lock').sort()).toEqual([
      'jobs',
      'runs',
      'write-token',
    ]);
    expect(await readdir(join(dir, 'jobs'))).toEqual(['a.json']);
    await store.close();
    expect((await readdir(dir)).sort()).toEqual(['jobs', 'runs', 'write-token']);
    await expect(store.getJob('a')).rejects.toMatchObject({ code: 'store_unavailable' });
  });

  describe('a damaged file', () => {
    let deep = '1';
    for (let i = 0; i < 2_000; i++) deep = `{"a":${deep}}`;
    const poisoned = (id: string) =>
      `{"version":1,"job":${JSON.stringify({ ...makeJob(id), target: { type: 'handler', name: 'h', payload: 0 } }).replace('"payload":0', `"payload":${deep}`)},"ledger":[]}`;
    const cases: Array<[string, (path: string) => Promise<void>]> = [
      ['truncated JSON', (path) => writeFile(path, '{"version":1,"job":{"id":"a"')],
      [
        'an unknown version',
        (path) => writeFile(path, JSON.stringify({ version: 2, job: { id: 'a' }, ledger: [] })),
      ],
      [
        'another job inside',
        (path) => writeFile(path, JSON.stringify({ version: 1, job: { id: 'b' }, ledger: [] })),
      ],
      ['an empty file', (path) => writeFile(path, '')],
      ['a directory in its place (unreadable)', (path) => mkdir(path)],
      ['a body nested 2,000 levels deep', (path) => writeFile(path, poisoned('a'))],
      [
        'an instant that is not a number',
        (path) =>
          writeFile(
            path,
            JSON.stringify({ version: 1, job: { ...makeJob('a'), next_run_at: 'soon' }, ledger: [] }),
          ),
      ],
    ];
    const snapshot = async (path: string) =>
      (await stat(path)).isDirectory() ? 'dir' : readFile(path, 'utf8');

    for (const [what, damage] of cases) {
      it(`is contained to its job, reported once, never overwritten, and set aside on delete (${what})`, async () => {
        const reports: unknown[] = [];
        const store = await FileStore.open({ dir: await fresh(), onDamaged: (r) => reports.push(r) });
        await store.createJob(makeJob('ok'));
        await claimOccurrence(store, claimReq('ok', T0, { run_id: 'run-ok' }));
        await store.close();
        const path = join(dir, 'jobs', 'a.json');
        await damage(path);
        const bytes = await snapshot(path);

        const reopened = await FileStore.open({ dir, onDamaged: (r) => reports.push(r) });
        expect((await reopened.listJobs()).map((j) => j.id)).toEqual(['ok']);
        expect((await reopened.listClaimed()).map((r) => r.run_id)).toEqual(['run-ok']);
        const attempts: (() => Promise<unknown>)[] = [
          () => reopened.getJob('a'),
          () => reopened.getLedgerEntry('a', T0),
          () => reopened.peek('a'),
          () => reopened.updateJob('a', (j) => j),
          () => reopened.transact('a', () => ({ job: makeJob('a'), result: 0 })),
          () => claimOccurrence(reopened, claimReq('a', T0)),
          () => reopened.appendRun(makeRun('a', 'r1')),
        ];
        for (const attempt of attempts) {
          const err = await caught(attempt());
          expect(isChronosError(err, 'store_corrupt'), String(err)).toBe(true);
          expect(errorMessage(err)).toContain(path);
          expect(errorMessage(err)).toMatch(/backup/);
        }
        expect(await caught(reopened.createJob(makeJob('a')))).toMatchObject({ code: 'job_damaged' });
        const damaged = await reopened.damaged();
        expect(damaged).toEqual([{ job_id: 'a', kind: 'job', file: path, error: expect.any(String) }]);
        // Told once, however many reads met it.
        expect(reports).toEqual(damaged);
        expect(await snapshot(path)).toEqual(bytes);

        // Deleting the job moves its bytes aside; the id is free again.
        expect(await reopened.removeJob('a')).toBe(true);
        const aside = await readdir(join(dir, 'damaged', 'jobs'));
        expect(aside).toEqual([expect.stringMatching(/^a\.\d{4}-.*\.json$/)]);
        expect(await snapshot(join(dir, 'damaged', 'jobs', aside[0]!))).toEqual(bytes);
        expect(await reopened.damaged()).toEqual([]);
        expect(await readdir(join(dir, 'jobs'))).toEqual(['ok.json']);
        await reopened.createJob(makeJob('a'));
        expect((await reopened.listJobs()).map((j) => j.id)).toEqual(['a', 'ok']);
        await reopened.close();
      });
    }

    it('leaves a cached list as soon as any read meets the damage (damaged behind the store)', async () => {
      const store = await FileStore.open({ dir: await fresh() });
      await store.createJob(makeJob('a'));
      await store.createJob(makeJob('b'));
      expect((await store.listJobs()).map((j) => j.id)).toEqual(['a', 'b']);
      await writeFile(join(dir, 'jobs', 'a.json'), '{');
      await expect(store.updateJob('a', (j) => j)).rejects.toMatchObject({ code: 'store_corrupt' });
      expect((await store.listJobs()).map((j) => j.id)).toEqual(['b']);
      expect((await store.damaged()).map((d) => d.job_id)).toEqual(['a']);
      await store.close();
    });

    it('moves a damaged run history aside and starts a new one; the job and others are untouched', async () => {
      const reports: unknown[] = [];
      const store = await FileStore.open({ dir: await fresh(), onDamaged: (r) => reports.push(r) });
      await store.createJob(makeJob('a'));
      await store.createJob(makeJob('b'));
      await store.appendRun(makeRun('b', 'rb'));
      const path = join(dir, 'runs', 'a.json');
      await writeFile(path, '{nope');
      expect(await store.listRuns('a')).toEqual([]);
      const aside = await readdir(join(dir, 'damaged', 'runs'));
      expect(aside).toHaveLength(1);
      const movedTo = join(dir, 'damaged', 'runs', aside[0]!);
      expect(await readFile(movedTo, 'utf8')).toBe('{nope');
      expect(reports).toEqual([{ job_id: 'a', kind: 'history', file: movedTo, error: expect.any(String) }]);
      await store.appendRun(makeRun('a', 'r1'));
      expect((await store.listRuns('a')).map((r) => r.run_id)).toEqual(['r1']);
      expect((await store.listRuns('b')).map((r) => r.run_id)).toEqual(['rb']);
      await store.close();

      // Reported after a restart too, until the operator removes the moved file.
      const again = await FileStore.open({ dir });
      expect(await again.damaged()).toEqual([
        { job_id: 'a', kind: 'history', file: movedTo, error: expect.stringContaining('JSON') },
      ]);
      await again.close();
    });

    it('moves aside a directory standing where a run history should be, on the first run', async () => {
      const store = await FileStore.open({ dir: await fresh() });
      await store.createJob(makeJob('a'));
      await mkdir(join(dir, 'runs', 'a.json'));
      await store.appendRun(makeRun('a', 'r1'));
      expect((await store.listRuns('a')).map((r) => r.run_id)).toEqual(['r1']);
      expect(await store.damaged()).toEqual([
        expect.objectContaining({ job_id: 'a', kind: 'history', error: expect.stringContaining('EISDIR') }),
      ]);
      await store.close();
    });
  });

  it('ignores and removes temp files left by a crashed writer', async () => {
    await fresh();
    const first = await FileStore.open({ dir });
    await first.createJob(makeJob('a'));
    await first.close();
    await writeFile(join(dir, 'jobs', '.a.json.0123456789ab.tmp'), '{"version":1,"job":{"id"');
    await writeFile(join(dir, 'jobs', '.b.json.0123456789ab.tmp'), '');
    await writeFile(join(dir, 'runs', '.a.json.0123456789ab.tmp'), '{');
    const store = await FileStore.open({ dir });
    expect((await store.listJobs()).map((j) => j.id)).toEqual(['a']);
    expect(await readdir(join(dir, 'jobs'))).toEqual(['a.json']);
    expect(await readdir(join(dir, 'runs'))).toEqual([]);
    await store.close();
  });

  describe('two stores on one directory (as two processes would be)', () => {
    it('admit exactly one claim of an occurrence when both race for it', async () => {
      await fresh();
      const a = await FileStore.open({ dir });
      const b = await FileStore.open({ dir });
      await a.createJob(makeJob('j'));
      for (let round = 0; round < 5; round++) {
        const fireAt = T0 + round;
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => claimOccurrence(i % 2 ? a : b, claimReq('j', fireAt))),
        );
        expect(results.filter((r) => r.outcome === 'claimed')).toHaveLength(1);
        expect(results.filter((r) => r.outcome === 'duplicate')).toHaveLength(19);
      }
      expect((await b.getJob('j'))?.repeat.completed).toBe(5);
      await a.close();
      await b.close();
    });

    it("see each other's writes in cached lists", async () => {
      await fresh();
      const a = await FileStore.open({ dir });
      const b = await FileStore.open({ dir });
      await a.createJob(makeJob('one'));
      expect((await a.listJobs()).map((j) => j.id)).toEqual(['one']);
      expect((await b.listJobs()).map((j) => j.id)).toEqual(['one']);
      await b.createJob(makeJob('two'));
      expect((await a.listJobs()).map((j) => j.id)).toEqual(['one', 'two']);
      // A writes after B did: its own write must not hide B's from its cache.
      await b.updateJob('one', (j) => ({ ...j, name: 'renamed by b' }));
      await a.createJob(makeJob('three'));
      const seenByA = await a.listJobs();
      expect(seenByA.map((j) => [j.id, j.name])).toEqual([
        ['one', 'renamed by b'],
        ['three', 'three'],
        ['two', 'two'],
      ]);
      await claimOccurrence(b, claimReq('two', T0));
      expect((await a.listClaimed()).map((r) => r.job_id)).toEqual(['two']);
      await b.removeJob('two');
      expect((await a.listJobs()).map((j) => j.id)).toEqual(['one', 'three']);
      expect(await a.listClaimed()).toEqual([]);
      await a.close();
      await b.close();
    });
  });
});

describe('FileStore lock lingering', () => {
  it('keeps the lock across close writes, lets another process in after the linger, and never deletes a lock it does not own', async () => {
    const dir = await tempDir();
    try {
      const a = await FileStore.open({ dir, lockLingerMs: 100 });
      const b = await FileStore.open({ dir, lockLingerMs: 0, lockTimeoutMs: 3000 });
      await a.createJob(makeJob('one'));
      const lockPath = join(dir, 'chronos.lock');
      const held = await readFile(lockPath, 'utf8');
      // b waits for a's linger to end, then writes.
      const started = Date.now();
      await b.createJob(makeJob('two'));
      expect(Date.now() - started).toBeGreaterThanOrEqual(50);
      await expect(stat(lockPath)).rejects.toMatchObject({ code: 'ENOENT' });

      // a's next write takes the lock again; someone then replaces the lock file: a neither trusts nor deletes it.
      await a.updateJob('one', (j) => ({ ...j, name: 'x' }));
      expect(await readFile(lockPath, 'utf8')).not.toBe(held);
      const foreign = JSON.stringify({
        boot_id: randomUUID(),
        pid: process.pid,
        host: hostname(),
        acquired_at: 'now',
      });
      await writeFile(lockPath, foreign);
      await a.close();
      expect(await readFile(lockPath, 'utf8')).toBe(foreign);
      await b.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('FileStore under a steady stream of writes', () => {
  it('still lets another process write: the lingering lock is released at least every ~500 ms', async () => {
    const dir = await tempDir();
    let stop = false;
    let stream: Promise<void> = Promise.resolve();
    try {
      const busy = await FileStore.open({ dir, lockLingerMs: 50 });
      const other = await FileStore.open({ dir, lockLingerMs: 0, lockTimeoutMs: 1000 });
      await busy.createJob(makeJob('busy'));
      stream = (async () => {
        for (let i = 0; !stop; i++) {
          await busy.updateJob('busy', (j) => ({ ...j, name: `n${i}` }));
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })();
      await new Promise((resolve) => setTimeout(resolve, 100));
      const started = Date.now();
      await other.createJob(makeJob('other'));
      expect(Date.now() - started).toBeLessThan(1000);
      stop = true;
      await stream;
      await busy.close();
      await other.close();
    } finally {
      // On a failure above, the stream of writes must end before its directory goes: otherwise the
      // removal fails (ENOTEMPTY) in place of the real error and the stream's next write is an unhandled
      // rejection in whatever test runs next.
      stop = true;
      await stream.catch(() => {});
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('FileStore write token', () => {
  it('still tells other processes about its writes after the token file was deleted', async () => {
    const dir = await tempDir();
    try {
      const writer = await FileStore.open({ dir, lockLingerMs: 0 });
      const reader = await FileStore.open({ dir, lockLingerMs: 0 });
      await writer.createJob(makeJob('one'));
      expect((await reader.listJobs()).map((j) => j.id)).toEqual(['one']);
      await rm(join(dir, 'write-token'));
      await writer.createJob(makeJob('two'));
      expect((await reader.listJobs()).map((j) => j.id)).toEqual(['one', 'two']);
      await writer.createJob(makeJob('three'));
      expect((await reader.listJobs()).map((j) => j.id)).toEqual(['one', 'three', 'two']);
      await writer.close();
      await reader.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
