import postgres from 'postgres';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { claimOccurrence } from '../../../src/occurrence/claim.js';
import { ConnectingStore } from '../../../src/store/postgres/connecting-store.js';
import { PostgresStore } from '../../../src/store/postgres/postgres-store.js';
import { ManualClock } from '../../helpers/manual-clock.js';
import { freshDatabase } from '../../helpers/pg-test.js';
import { type PostgresServer, startPostgres } from '../../helpers/postgres.js';
import { claimReq, makeJob, T0 } from '../fixtures.js';

const opened: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
});

async function open(url: string, extra: { statementTimeoutMs?: number; applicationName?: string } = {}) {
  const store = await PostgresStore.open({ url, ...extra });
  opened.push(store);
  return store;
}

/** An admin session holding job `id`'s row lock until `release()` (as another replica's transaction would). */
async function holdJobLock(url: string, id: string) {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const conn = await sql.reserve();
  await conn`BEGIN`;
  await conn`SELECT 1 FROM chronos_jobs WHERE id = ${id} FOR UPDATE`;
  return {
    sql,
    async release() {
      await conn`COMMIT`.catch(() => {});
      conn.release();
      await sql.end({ timeout: 1 });
    },
  };
}

describe('PostgresStore faults (shared server)', () => {
  it('bounds a statement blocked on a lock with the statement timeout: store_unavailable, nothing written', async () => {
    const url = await freshDatabase('timeout');
    const store = await open(url, { statementTimeoutMs: 300 });
    await store.createJob(makeJob('a'));
    const lock = await holdJobLock(url, 'a');
    try {
      const started = Date.now();
      await expect(claimOccurrence(store, claimReq('a', T0 + 60_000))).rejects.toMatchObject({
        code: 'store_unavailable',
        details: { sqlstate: '57014' },
      });
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      await lock.release();
    }
    expect(await store.getLedgerEntry('a', T0 + 60_000)).toBeUndefined();
    expect((await claimOccurrence(store, claimReq('a', T0 + 60_000))).outcome).toBe('claimed');
  });

  it('answers store_unavailable for a connection cut mid-transaction, writes nothing, and reconnects', async () => {
    const url = await freshDatabase('cut');
    const store = await open(url, { applicationName: 'chronos-cut-test' });
    await store.createJob(makeJob('a'));
    const lock = await holdJobLock(url, 'a');
    try {
      const claim = claimOccurrence(store, claimReq('a', T0 + 60_000)).then(
        () => 'resolved',
        (err: unknown) => err,
      );
      // The claim waits on the row lock, inside its transaction; its session is then killed.
      const admin = postgres(url, { max: 1, onnotice: () => {} });
      try {
        const deadline = Date.now() + 10_000;
        for (;;) {
          const [row] = await admin`SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE application_name = 'chronos-cut-test' AND wait_event_type = 'Lock'`;
          if (row?.['n'] === 1) break;
          if (Date.now() > deadline) throw new Error('the claim never waited on the lock');
          await new Promise((r) => setTimeout(r, 20));
        }
        await admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE application_name = 'chronos-cut-test'`;
      } finally {
        await admin.end({ timeout: 1 });
      }
      // Cut: no uncaught exception from the driver (a cut connection must not take the process down).
      expect(await claim).toMatchObject({ code: 'store_unavailable' });
    } finally {
      await lock.release();
    }
    expect(await store.getLedgerEntry('a', T0 + 60_000)).toBeUndefined();
    expect((await store.getJob('a'))?.repeat.completed).toBe(0);
    expect((await claimOccurrence(store, claimReq('a', T0 + 60_000))).outcome).toBe('claimed');
  });
});

describe('PostgresStore faults (a private server, stopped and started)', () => {
  let server: PostgresServer;
  let url: string;
  beforeAll(async () => {
    server = await startPostgres({ label: 'faults' });
    url = await server.createDatabase('faults');
  });
  afterAll(async () => {
    await server.destroy();
  });

  it('fails calls while the database is down and recovers after it restarts, without reopening', async () => {
    const store = await open(url);
    await store.createJob(makeJob('a'));
    await server.stop();
    await expect(claimOccurrence(store, claimReq('a', T0 + 60_000))).rejects.toMatchObject({
      code: 'store_unavailable',
    });
    await expect(store.listJobs()).rejects.toMatchObject({ code: 'store_unavailable' });
    await server.start();
    expect(await store.getLedgerEntry('a', T0 + 60_000)).toBeUndefined();
    expect((await claimOccurrence(store, claimReq('a', T0 + 60_000))).outcome).toBe('claimed');
    expect((await store.listJobs()).map((j) => j.id)).toEqual(['a']);
  });

  it('answers within a second or so after a long outage, so fires are refused or claimed before NAS gives up', async () => {
    const store = await open(url);
    await store.createJob(makeJob('b'));
    await server.stop();
    // Each failed connect lengthens the driver's wait before the next; its own policy reaches 20 s.
    for (let i = 0; i < 8; i++) {
      const started = Date.now();
      await expect(store.getJob('b')).rejects.toMatchObject({ code: 'store_unavailable' });
      expect(Date.now() - started, `failed call ${i + 1}`).toBeLessThan(3_000);
    }
    await server.start();
    const started = Date.now();
    expect((await store.getJob('b'))?.id).toBe('b');
    expect(Date.now() - started).toBeLessThan(3_000);
  }, 60_000);

  it('ConnectingStore: 503-style store_unavailable until the database is reached, retried with backoff', async () => {
    await server.stop();
    const clock = new ManualClock(T0);
    const failures: number[] = [];
    let ready = 0;
    const store = await ConnectingStore.start({
      url,
      clock,
      connectTimeoutMs: 1_000,
      onAttemptFailed: (_err, _attempt, retryInMs) => failures.push(retryInMs),
      onReady: (attempts) => {
        ready = attempts;
      },
    });
    opened.push(store);
    expect(store.ready).toBe(false);
    await expect(store.getJob('a')).rejects.toMatchObject({
      code: 'store_unavailable',
      details: { reason: 'database_unreachable' },
    });
    expect(failures).toEqual([500]);
    // The next attempt waits for the clock; it fails too while the server is down, and backs off.
    await clock.advance(500);
    await waitUntil(() => failures.length === 2);
    expect(failures).toEqual([500, 1000]);
    await server.start();
    await clock.advance(1000);
    await store.whenReady();
    expect(ready).toBe(3);
    expect((await store.getJob('a'))?.id).toBe('a');
  });
});

async function waitUntil(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
