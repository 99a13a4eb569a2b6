/** nextOccurrence is strictly increasing over seeded random expressions, zones and bases (see ./cases.ts). */
import { describe, expect, it } from 'vitest';
import { nextOccurrence, parseSchedule, type Schedule } from '../../../src/jobs/schedule.js';
import { describeCase, generator } from './cases.js';

describe('nextOccurrence properties', () => {
  it('is strictly after the base, and 20 chained occurrences strictly increase (4,000 cases)', () => {
    const gen = generator(20260101);
    for (let i = 0; i < 4_000; i++) {
      const expression = gen.cron();
      const zone = gen.zone();
      const start = gen.base();
      const schedule: Schedule = parseSchedule(expression, { timezone: zone, anchor: start });
      let at = start;
      for (let step = 0; step < 20; step++) {
        const next = nextOccurrence(schedule, at);
        if (next === null || !(next > at)) {
          expect.fail(
            `${describeCase(expression, zone, at)} gave ${next === null ? 'null' : new Date(next).toISOString()}`,
          );
        }
        at = next;
      }
    }
  }, 120_000);
});
