/** Fixed-hour daily expressions over seeded random zones and bases, DST included (see ./cases.ts). */
import { describe, expect, it } from 'vitest';
import { nextOccurrence, parseSchedule } from '../../../src/jobs/schedule.js';
import { describeCase, generator } from './cases.js';

describe('nextOccurrence properties', () => {
  it('fixed-hour daily expressions fire once per local date, at their time or at the end of a gap (1,000 cases)', () => {
    const gen = generator(77);
    const formats = new Map<string, Intl.DateTimeFormat>();
    const local = (zone: string, instant: number) => {
      let format = formats.get(zone);
      if (!format) {
        format = new Intl.DateTimeFormat('en-CA', {
          timeZone: zone,
          hourCycle: 'h23',
          year: 'numeric',
          month: '2-digit',
          day: '2-digit',
          hour: '2-digit',
          minute: '2-digit',
          timeZoneName: 'longOffset',
        });
        formats.set(zone, format);
      }
      const parts = Object.fromEntries(format.formatToParts(instant).map((part) => [part.type, part.value]));
      return {
        date: `${parts.year}-${parts.month}-${parts.day}`,
        hour: Number(parts.hour),
        minute: Number(parts.minute),
        offset: parts.timeZoneName,
      };
    };
    for (let i = 0; i < 1_000; i++) {
      const { expression, hour, minute } = gen.fixedDaily();
      const zone = gen.zone();
      const start = gen.base();
      const schedule = parseSchedule(expression, { timezone: zone, anchor: start });
      const dates = new Set<string>();
      let at = start;
      for (let step = 0; step < 8; step++) {
        const next = nextOccurrence(schedule, at)!;
        const label = `${describeCase(expression, zone, at)} gave ${new Date(next).toISOString()}`;
        expect(next, label).toBeGreaterThan(at);
        const fields = local(zone, next);
        expect(dates.has(fields.date), `${label}: second fire on ${fields.date}`).toBe(false);
        dates.add(fields.date);
        if (fields.hour !== hour || fields.minute !== minute) {
          // Only allowed when the wall time did not exist: then the result is a transition instant.
          expect(local(zone, next - 1000).offset, `${label}: wrong local time`).not.toBe(fields.offset);
        }
        at = next;
      }
    }
  }, 120_000);
});
