import { describe, expect, it } from 'vitest';
import { makeView } from '../../src/store/ledger.js';
import { currentOwner } from '../../src/store/owner.js';
import type { LedgerEntry } from '../../src/store/store.js';
import { makeJob, T0 } from './fixtures.js';

function row(fireAt: number, status: LedgerEntry['status']): LedgerEntry {
  return {
    job_id: 'a',
    fire_at: fireAt,
    status,
    trigger: 'nas',
    run_id: `r-${fireAt}`,
    owner: currentOwner(),
    claimed_at: T0,
    expires_at: T0 + 1000,
  };
}

describe('ledger views', () => {
  it('answers every question from a whole ledger', () => {
    const view = makeView(makeJob('a'), [row(3, 'finished'), row(2, 'claimed'), row(1, 'finished')]);
    expect(view.entry(2)?.status).toBe('claimed');
    expect(view.entry(4)).toBeUndefined();
    expect(view.latest()?.fire_at).toBe(3);
    expect(view.claimed().map((r) => r.fire_at)).toEqual([2]);
  });

  it('read for one instant: answers for that instant only, and refuses to guess the rest', () => {
    const held = makeView(makeJob('a'), [row(3, 'finished')], 3);
    expect(held.entry(3)?.run_id).toBe('r-3');
    const missing = makeView(makeJob('a'), [], 5);
    expect(missing.entry(5)).toBeUndefined();
    for (const view of [held, missing]) {
      expect(() => view.entry(2)).toThrow(/read for instant/);
      expect(() => view.latest()).toThrow(/latest row/);
      expect(() => view.claimed()).toThrow(/claimed rows/);
    }
  });
});
