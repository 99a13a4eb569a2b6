import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/clock.js';
import { armLockOf } from '../../../src/store/arm-lock.js';
import { PostgresLeaseBackend } from '../../../src/store/postgres/arm-lease.js';
import { ConnectingStore } from '../../../src/store/postgres/connecting-store.js';
import { createSql, PostgresStore } from '../../../src/store/postgres/postgres-store.js';
import { freshDatabase } from '../../helpers/pg-test.js';

/*
 * The arm lease on a real PostgreSQL server: two stores (two replicas' pools) on one database. Real time:
 * the lease's expiry is the database's clock, which a ManualClock cannot move.
 */

const logger = pino({ level: 'silent' });
const stores: PostgresStore[] = [];
afterAll(async () => {
  for (const store of stores) await store.close();
});

async function replicaStores(): Promise<[PostgresStore, PostgresStore]> {
  const url = await freshDatabase('arm_lease');
  const a = await PostgresStore.open({ url });
  const b = await PostgresStore.open({ url });
  stores.push(a, b);
  return [a, b];
}

describe('the arm lease on PostgreSQL', () => {
  it('lets one replica hold it at a time and tells each when the other held it since', async () => {
    const [a, b] = await replicaStores();
    const lockA = a.armLock({ holder: 'a', clock: systemClock, logger });
    const lockB = b.armLock({ holder: 'b', clock: systemClock, logger });
    const order: string[] = [];
    let releaseA!: () => void;
    const aHolding = new Promise<void>((resolve) => {
      releaseA = resolve;
    });
    let aIn!: () => void;
    const aEntered = new Promise<void>((resolve) => {
      aIn = resolve;
    });
    const first = lockA.hold(async ({ othersSince }) => {
      order.push(`a in ${othersSince}`);
      aIn();
      await aHolding;
      order.push('a out');
    });
    await aEntered;
    const second = lockB.hold(async ({ othersSince }) => {
      order.push(`b in ${othersSince}`);
    });
    // B polls the lease while A holds it; it gets in only after A released.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(order).toEqual(['a in true']);
    releaseA();
    await Promise.all([first, second]);
    expect(order).toEqual(['a in true', 'a out', 'b in true']);

    await lockB.hold(async ({ othersSince }) => void order.push(`b in ${othersSince}`));
    await lockA.hold(async ({ othersSince }) => void order.push(`a in ${othersSince}`));
    expect(order.slice(3)).toEqual(['b in false', 'a in true']);
  });

  it('is taken over once a holder that died stops renewing it, by the database clock', async () => {
    const url = await freshDatabase('arm_lease_dead');
    const store = await PostgresStore.open({ url });
    stores.push(store);
    // A process that took the lease for 400 ms and died: nobody renews or releases it.
    const deadPool = createSql({ url });
    try {
      const dead = new PostgresLeaseBackend(deadPool);
      expect(await dead.tryAcquire('dead', 400)).toBe(1);
      expect(await dead.tryAcquire('other', 400)).toBeNull();
      const started = Date.now();
      await store.armLock({ holder: 'b', clock: systemClock, logger }).hold(async () => {});
      expect(Date.now() - started).toBeGreaterThanOrEqual(300);
      expect(Date.now() - started).toBeLessThan(5_000);
      // The lease is free again after the section: a new holder gets it at once.
      expect(await dead.tryAcquire('next', 400)).not.toBeNull();
    } finally {
      await deadPool.end({ timeout: 1 });
    }
  });

  it('is what the store the server opens (connecting in the background) offers: shared, refused until connected', async () => {
    const url = await freshDatabase('arm_lease_server');
    const connected = await ConnectingStore.start({ url, clock: systemClock });
    const unreachable = await ConnectingStore.start({
      url: 'postgres://nobody@127.0.0.1:9/none',
      clock: systemClock,
      connectTimeoutMs: 1_000,
    });
    try {
      const lock = armLockOf(connected, { holder: 'server', clock: systemClock, logger });
      expect(lock.shared).toBe(true);
      expect(await lock.hold(async ({ othersSince }) => othersSince)).toBe(true);
      const refused = armLockOf(unreachable, { holder: 'server', clock: systemClock, logger });
      await expect(refused.hold(async () => 'armed')).rejects.toMatchObject({ code: 'store_unavailable' });
    } finally {
      await connected.close();
      await unreachable.close();
    }
  });
});
