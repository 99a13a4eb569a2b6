/**
 * Properties of nextOccurrence over seeded random expressions, zones and bases (deterministic: a failure
 * prints the case and reproduces on every run).
 */
import { describe, expect, it } from 'vitest';
import { nextOccurrence, parseSchedule, type Schedule } from '../../src/jobs/schedule.js';

const ZONES = [
  'America/New_York',
  'Europe/Berlin',
  'Australia/Sydney',
  'America/Santiago',
  'Asia/Kolkata',
  'Pacific/Chatham',
  'UTC',
];

/** mulberry32: small, fast, and the same sequence on every platform. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function generator(seed: number) {
  const random = seededRandom(seed);
  const int = (low: number, high: number): number => low + Math.floor(random() * (high - low + 1));
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

  function field(min: number, max: number, favoured: readonly number[] = []): string {
    switch (int(0, 6)) {
      case 0:
        return '*';
      case 1:
        return `*/${int(1, Math.max(1, Math.floor((max - min + 1) / 2)))}`;
      case 2: {
        const count = int(2, 4);
        const values = new Set<number>();
        while (values.size < count) values.add(int(min, max));
        return [...values].sort((a, b) => a - b).join(',');
      }
      case 3: {
        const low = int(min, max - 1);
        const high = int(low + 1, max);
        return random() < 0.5 ? `${low}-${high}` : `${low}-${high}/${int(1, Math.max(1, high - low))}`;
      }
      case 4:
        return favoured.length > 0 ? String(pick(favoured)) : String(int(min, max));
      default:
        return String(int(min, max));
    }
  }

  // Hours 0-3 are where transitions happen (and 23-0 in Santiago, 2-3 in Chatham).
  const hourFavoured = [0, 1, 2, 3, 23];
  function cron(): string {
    const minute = field(0, 59, [0, 30, 45, 59]);
    const hour = field(0, 23, hourFavoured);
    // Days up to 28 so every generated expression can fire in every month.
    const dom = random() < 0.7 ? '*' : field(1, 28);
    const month = random() < 0.85 ? '*' : field(1, 12);
    const dow = random() < 0.7 ? '*' : pick([field(0, 6), 'MON-FRI', 'SAT,SUN', 'sun']);
    const fields = `${minute} ${hour} ${dom} ${month} ${dow}`;
    return random() < 0.15 ? `${field(0, 59, [0, 30])} ${fields}` : fields;
  }

  function fixedDaily(): { expression: string; hour: number; minute: number } {
    const hour = random() < 0.6 ? pick(hourFavoured) : int(0, 23);
    const minute = pick([0, 15, 30, 45, int(0, 59)]);
    return { expression: `${minute} ${hour} * * *`, hour, minute };
  }

  // Bases across 2026-2028, half of them within a day of a transition.
  const start = Date.parse('2026-01-01T00:00:00Z');
  const span = Date.parse('2029-01-01T00:00:00Z') - start;
  const transitions = [
    '2026-03-08T07:00:00Z',
    '2026-11-01T06:00:00Z',
    '2027-03-28T01:00:00Z',
    '2027-10-31T01:00:00Z',
    '2028-04-01T16:00:00Z',
    '2028-09-30T16:00:00Z',
    '2026-04-05T03:00:00Z',
    '2026-09-06T04:00:00Z',
    '2027-04-03T14:00:00Z',
    '2027-09-25T14:00:00Z',
  ].map(Date.parse);
  function base(): number {
    if (random() < 0.5) return start + Math.floor(random() * span);
    return pick(transitions) + int(-86_400, 86_400) * 1000 + int(0, 999);
  }

  return { random, int, pick, cron, fixedDaily, base, zone: () => pick(ZONES) };
}

const TRANSITIONS_2026: Record<string, [string, string]> = {
  'America/New_York': ['2026-03-08T07:00:00Z', '2026-11-01T06:00:00Z'],
  'Europe/Berlin': ['2026-03-29T01:00:00Z', '2026-10-25T01:00:00Z'],
  'Australia/Sydney': ['2026-04-04T16:00:00Z', '2026-10-03T16:00:00Z'],
  'America/Santiago': ['2026-04-05T03:00:00Z', '2026-09-06T04:00:00Z'],
  'Pacific/Chatham': ['2026-04-04T14:00:00Z', '2026-09-26T14:00:00Z'],
};

function describeCase(expression: string, zone: string, base: number): string {
  return `${expression} in ${zone} after ${new Date(base).toISOString()}`;
}

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
