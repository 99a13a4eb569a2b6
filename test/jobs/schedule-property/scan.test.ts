/** nextOccurrence against a minute-by-minute scan of real instants near DST transitions (see ./cases.ts). */
import { describe, expect, it } from 'vitest';
import { nextOccurrence, parseSchedule } from '../../../src/jobs/schedule.js';
import { describeCase, generator, TRANSITIONS_2026 } from './cases.js';

describe('nextOccurrence properties', () => {
  it('agrees with a minute-by-minute scan of real instants near transitions (600 cases)', () => {
    const gen = generator(424242);
    const formats = new Map<string, Intl.DateTimeFormat>();
    // The wall clock of `zone` at a whole-minute instant, as "local fields read as UTC".
    const wallAt = (zone: string, instant: number): number => {
      let format = formats.get(zone);
      if (!format) {
        format = new Intl.DateTimeFormat('en-US', {
          timeZone: zone,
          hourCycle: 'h23',
          year: 'numeric',
          month: 'numeric',
          day: 'numeric',
          hour: 'numeric',
          minute: 'numeric',
        });
        formats.set(zone, format);
      }
      // "3/8/2026, 02:30": format() is several times cheaper than formatToParts().
      const [month, day, year, hour, minute] = format.format(instant).match(/\d+/g)!.map(Number) as number[];
      return Date.UTC(year!, month! - 1, day!, hour!, minute!);
    };
    const expand = (text: string, min: number, max: number): Set<number> => {
      const values = new Set<number>();
      for (const item of text.split(',')) {
        const [range, stepText] = item.split('/');
        const step = stepText === undefined ? 1 : Number(stepText);
        const [low, high] =
          range === '*'
            ? [min, max]
            : range!.includes('-')
              ? range!.split('-').map(Number)
              : [Number(range), Number(range)];
        for (let v = low!; v <= high!; v += step) values.add(v);
      }
      return values;
    };
    const MINUTE = 60_000;
    for (let i = 0; i < 600; i++) {
      // Fire at least daily (day fields *) so the scan stays short; hours mixed around the transitions.
      const [minuteText, hourText] = gen.cron().split(' ').slice(-5) as [string, string];
      const expression = `${minuteText} ${hourText} * * *`;
      const zone = gen.pick(Object.keys(TRANSITIONS_2026));
      const base =
        Date.parse(gen.pick(TRANSITIONS_2026[zone]!)) + gen.int(-4 * 3600, 4 * 3600) * 1000 + gen.int(0, 999);
      const minutes = expand(minuteText, 0, 59);
      const hours = expand(hourText, 0, 23);
      const hourWild = hourText.startsWith('*');
      const matches = (wall: number): boolean => {
        const date = new Date(wall);
        return minutes.has(date.getUTCMinutes()) && hours.has(date.getUTCHours());
      };

      let expected: number | null = null;
      let instant = Math.floor(base / MINUTE) * MINUTE + MINUTE;
      let previousWall = wallAt(zone, instant - MINUTE);
      for (let step = 0; step < 2 * 24 * 60 && expected === null; step++, instant += MINUTE) {
        const wall = wallAt(zone, instant);
        // Clock jumped forward: wall times skipped by the gap fire at the first instant after it.
        for (let skipped = previousWall + MINUTE; skipped < wall && expected === null; skipped += MINUTE) {
          if (matches(skipped)) expected = instant;
        }
        if (expected === null && matches(wall)) {
          // The same wall time shown earlier means this is the second pass of a repeated hour.
          const earlier = instant - 3 * 3_600_000;
          const shift = wallAt(zone, earlier) - earlier - (wall - instant);
          const shownBefore = shift > 0 && wallAt(zone, instant - shift) === wall;
          if (hourWild || !shownBefore) expected = instant;
        }
        previousWall = wall;
      }
      const schedule = parseSchedule(expression, { timezone: zone, anchor: 0 });
      const actual = nextOccurrence(schedule, base);
      expect(
        actual === null ? null : new Date(actual).toISOString(),
        `${describeCase(expression, zone, base)}`,
      ).toBe(expected === null ? null : new Date(expected).toISOString());
    }
  }, 120_000);
});
