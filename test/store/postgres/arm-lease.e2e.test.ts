import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/clock.js';
import { type ArmBelief, armLockOf } from '../../../src/store/arm-lock.js';
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
      expect(await dead.tryAcquire('dead', 400)).toEqual({
        generation: 1,
        previousReleased: true,
        viewResetAt: 0,
      });
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

  it('carries the view of NAS arms from one holder to the next, written only by the holder at its release', async () => {
    const [a, b] = await replicaStores();
    const lockA = a.armLock({ holder: 'a', clock: systemClock, logger });
    const lockB = b.armLock({ holder: 'b', clock: systemClock, logger });
    const T = Date.parse('2030-01-01T00:00:00Z');

    expect(await lockA.hold(async ({ view }) => view)).toEqual({ reset: true, beliefs: new Map() });
    await lockA.hold(async (held) => {
      held.record(
        new Map<string, ArmBelief>([
          ['tick', T],
          ['gone', 'absent'],
        ]),
      );
    });
    // B's first hold takes the whole view; A's next hold, only what B recorded since A's last.
    expect(await lockB.hold(async ({ view }) => view)).toEqual({
      reset: true,
      beliefs: new Map<string, unknown>([
        ['tick', T],
        ['gone', 'absent'],
      ]),
    });
    await lockB.hold(async (held) => held.record(new Map([['tick', T + 60_000]])));
    expect(await lockA.hold(async ({ view }) => view)).toEqual({
      reset: false,
      beliefs: new Map([['tick', T + 60_000]]),
    });
    expect(await lockA.hold(async ({ view }) => view)).toBeNull();

    // A release by a replica that no longer holds the lease records nothing.
    const backend = a.leaseBackend();
    await backend.release('not-the-holder', new Map([['tick', 'unknown']]));
    expect(await backend.readView(null)).toEqual(
      new Map<string, unknown>([
        ['tick', T + 60_000],
        ['gone', 'absent'],
      ]),
    );
  });

  it('empties the view when the lease is taken over after a holder died without releasing it', async () => {
    const url = await freshDatabase('arm_lease_view_reset');
    const store = await PostgresStore.open({ url });
    stores.push(store);
    const backend = store.leaseBackend();
    const lock = store.armLock({ holder: 'b', clock: systemClock, logger });
    await lock.hold(async (held) => held.record(new Map([['tick', 1_900_000_000_000]])));
    // A holder that takes the lease for 300 ms and never releases it: its NAS calls are unrecorded.
    expect(await backend.tryAcquire('dead', 300)).toMatchObject({ previousReleased: true });
    const view = await lock.hold(async ({ view }) => view);
    expect(view).toEqual({ reset: true, beliefs: new Map() });
    expect(await backend.readView(null)).toEqual(new Map());
    // The holder after that one released cleanly: its successor trusts the (empty) view again.
    expect(await backend.tryAcquire('next', 300)).toMatchObject({ previousReleased: true });
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
