import { describe, expect, it } from 'vitest';
import { ChronosError } from '../../src/errors.js';
import {
  CLAIM_LEASE_MS,
  LEASE_RENEW_EVERY_MS,
  LEASE_RENEW_RETRY_MS,
  LeaseKeeper,
} from '../../src/store/lease.js';
import { currentOwner } from '../../src/store/owner.js';
import type { Owner } from '../../src/store/store.js';
import { ManualClock } from '../helpers/manual-clock.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');

/** A store whose lease renewals fail while `down` (the database restarting), recording each call. */
function renewals() {
  const calls: Array<{ at: number; expiresAt: number; ok: boolean }> = [];
  const state = { down: false };
  const clock = new ManualClock(T0);
  const store = {
    async renewClaims(_owner: Owner, expiresAt: number): Promise<number> {
      calls.push({ at: clock.now(), expiresAt, ok: !state.down });
      if (state.down) throw new ChronosError('store_unavailable', 'PostgreSQL store: connection refused');
      return 1;
    },
  };
  return { calls, state, clock, store };
}

describe('LeaseKeeper', () => {
  it('renews the claims every period while runs are going, and none while idle', async () => {
    const { calls, clock, store } = renewals();
    let busy = true;
    const keeper = new LeaseKeeper({ store, owner: currentOwner(), clock, busy: () => busy });
    keeper.start();
    await clock.advance(LEASE_RENEW_EVERY_MS);
    await clock.advance(LEASE_RENEW_EVERY_MS);
    expect(calls.map((c) => [c.at - T0, c.expiresAt - c.at])).toEqual([
      [LEASE_RENEW_EVERY_MS, CLAIM_LEASE_MS],
      [2 * LEASE_RENEW_EVERY_MS, CLAIM_LEASE_MS],
    ]);
    busy = false;
    await clock.advance(LEASE_RENEW_EVERY_MS);
    expect(calls).toHaveLength(2);
    keeper.stop();
  });

  it('tries a failed renewal again within seconds, backing off up to the period, then keeps the period', async () => {
    const { calls, state, clock, store } = renewals();
    const errors: unknown[] = [];
    const keeper = new LeaseKeeper({
      store,
      owner: currentOwner(),
      clock,
      busy: () => true,
      onError: (err) => errors.push(err),
    });
    keeper.start();
    state.down = true;
    await clock.advance(LEASE_RENEW_EVERY_MS);
    for (const wait of [1, 2, 4]) await clock.advance(wait * LEASE_RENEW_RETRY_MS);
    state.down = false;
    await clock.advance(8 * LEASE_RENEW_RETRY_MS);
    await clock.advance(LEASE_RENEW_EVERY_MS);
    expect(calls.map((c) => [(c.at - T0 - LEASE_RENEW_EVERY_MS) / LEASE_RENEW_RETRY_MS, c.ok])).toEqual([
      [0, false],
      [1, false],
      [3, false],
      [7, false],
      [15, true],
      [15 + LEASE_RENEW_EVERY_MS / LEASE_RENEW_RETRY_MS, true],
    ]);
    expect(errors).toHaveLength(4);
    keeper.stop();
  });
});
