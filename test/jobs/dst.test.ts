/**
 * docs/schedules.md "Time zones and DST". Every expected instant below was worked out by hand from the zone's
 * rules (and the transition instants checked with Intl), not produced by the code under test.
 *
 * Transitions in 2026 used here:
 * - America/New_York: 2026-03-08 02:00 EST → 03:00 EDT (07:00Z); 2026-11-01 02:00 EDT → 01:00 EST (06:00Z).
 * - Europe/Berlin:    2026-03-29 02:00 CET → 03:00 CEST (01:00Z); 2026-10-25 03:00 CEST → 02:00 CET (01:00Z).
 * - Australia/Sydney: 2026-04-05 03:00 AEDT → 02:00 AEST (2026-04-04T16:00Z);
 *                     2026-10-04 02:00 AEST → 03:00 AEDT (2026-10-03T16:00Z).
 * - America/Santiago: 2026-04-05 00:00 -03 → 2026-04-04 23:00 -04 (03:00Z);
 *                     2026-09-06 00:00 -04 → 01:00 -03 (04:00Z).
 */
import { describe, expect, it } from 'vitest';
import { nextOccurrence, parseSchedule } from '../../src/jobs/schedule.js';

const ZONES = ['America/New_York', 'Europe/Berlin', 'Australia/Sydney', 'America/Santiago'] as const;
type Zone = (typeof ZONES)[number];

function chain(expression: string, zone: string, base: string, count: number): string[] {
  const schedule = parseSchedule(expression, { timezone: zone, anchor: 0 });
  const out: string[] = [];
  let at = Date.parse(base);
  for (let i = 0; i < count; i++) {
    const next = nextOccurrence(schedule, at);
    if (next === null) throw new Error(`no occurrence after ${new Date(at).toISOString()}`);
    expect(next).toBeGreaterThan(at);
    out.push(new Date(next).toISOString().replace('.000Z', 'Z'));
    at = next;
  }
  return out;
}

// Read with Intl directly, independent of src/jobs/zone.ts.
function localParts(zone: string, instant: number): { date: string; hour: number; minute: number } {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-CA', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
    })
      .formatToParts(instant)
      .map((part) => [part.type, part.value]),
  );
  return {
    date: `${parts.year}-${parts.month}-${parts.day}`,
    hour: Number(parts.hour),
    minute: Number(parts.minute),
  };
}

describe('transition instants assumed by these tables (Intl)', () => {
  const cases: [Zone, string, string, string][] = [
    ['America/New_York', '2026-03-08T07:00:00Z', 'GMT-5', 'GMT-4'],
    ['America/New_York', '2026-11-01T06:00:00Z', 'GMT-4', 'GMT-5'],
    ['Europe/Berlin', '2026-03-29T01:00:00Z', 'GMT+1', 'GMT+2'],
    ['Europe/Berlin', '2026-10-25T01:00:00Z', 'GMT+2', 'GMT+1'],
    ['Australia/Sydney', '2026-04-04T16:00:00Z', 'GMT+11', 'GMT+10'],
    ['Australia/Sydney', '2026-10-03T16:00:00Z', 'GMT+10', 'GMT+11'],
    ['America/Santiago', '2026-04-05T03:00:00Z', 'GMT-3', 'GMT-4'],
    ['America/Santiago', '2026-09-06T04:00:00Z', 'GMT-4', 'GMT-3'],
  ];
  const offsetName = (zone: string, instant: number): string =>
    new Intl.DateTimeFormat('en-US', { timeZone: zone, timeZoneName: 'shortOffset' })
      .formatToParts(instant)
      .find((part) => part.type === 'timeZoneName')!.value;
  it.each(cases)('%s %s: %s → %s', (zone, at, before, after) => {
    const instant = Date.parse(at);
    expect(offsetName(zone, instant - 1000)).toBe(before);
    expect(offsetName(zone, instant)).toBe(after);
  });
});

describe('spring-forward gap: a wall time that does not exist fires once, at the first instant after the gap', () => {
  const cases: [string, Zone, string, string[]][] = [
    // The example in docs/schedules.md. Mar 7 02:30 EST, Mar 8 gap → 03:00 EDT, Mar 9 02:30 EDT.
    [
      '30 2 * * *',
      'America/New_York',
      '2026-03-07T00:00:00Z',
      ['2026-03-07T07:30:00Z', '2026-03-08T07:00:00Z', '2026-03-09T06:30:00Z'],
    ],
    [
      '0 2 * * *',
      'America/New_York',
      '2026-03-07T12:00:00Z',
      ['2026-03-08T07:00:00Z', '2026-03-09T06:00:00Z'],
    ],
    // Two wall times in the same gap share its end: one fire, not two.
    [
      '0,30 2 * * *',
      'America/New_York',
      '2026-03-08T06:00:00Z',
      ['2026-03-08T07:00:00Z', '2026-03-09T06:00:00Z'],
    ],
    [
      '59 2 * * *',
      'America/New_York',
      '2026-03-08T00:00:00Z',
      ['2026-03-08T07:00:00Z', '2026-03-09T06:59:00Z'],
    ],
    // Six fields: second precision inside the gap.
    [
      '30 15 2 * * *',
      'America/New_York',
      '2026-03-08T00:00:00Z',
      ['2026-03-08T07:00:00Z', '2026-03-09T06:15:30Z'],
    ],
    ['30 2 * * *', 'Europe/Berlin', '2026-03-28T12:00:00Z', ['2026-03-29T01:00:00Z', '2026-03-30T00:30:00Z']],
    // Southern hemisphere: spring forward in October. Oct 3 02:30 AEST = Oct 2 16:30Z.
    [
      '30 2 * * *',
      'Australia/Sydney',
      '2026-10-02T00:00:00Z',
      ['2026-10-02T16:30:00Z', '2026-10-03T16:00:00Z', '2026-10-04T15:30:00Z'],
    ],
    // Transition at midnight: Sep 6 00:00 does not exist; 01:00 -03 (04:00Z) is the first instant after.
    [
      '0 0 * * *',
      'America/Santiago',
      '2026-09-05T00:00:00Z',
      ['2026-09-05T04:00:00Z', '2026-09-06T04:00:00Z', '2026-09-07T03:00:00Z'],
    ],
    [
      '30 0 * * *',
      'America/Santiago',
      '2026-09-05T00:00:00Z',
      ['2026-09-05T04:30:00Z', '2026-09-06T04:00:00Z', '2026-09-07T03:30:00Z'],
    ],
    // The gap rule holds for a wildcard hour too: 02:30 EST fires at 03:00 EDT, then 03:30 EDT as usual.
    [
      '30 * * * *',
      'America/New_York',
      '2026-03-08T05:00:00Z',
      [
        '2026-03-08T05:30:00Z',
        '2026-03-08T06:30:00Z',
        '2026-03-08T07:00:00Z',
        '2026-03-08T07:30:00Z',
        '2026-03-08T08:30:00Z',
      ],
    ],
    [
      '0 * * * *',
      'America/New_York',
      '2026-03-08T05:30:00Z',
      ['2026-03-08T06:00:00Z', '2026-03-08T07:00:00Z', '2026-03-08T08:00:00Z'],
    ],
    // Every minute: 02:00-02:59 all land on 07:00Z, which is also the real 03:00.
    [
      '* * * * *',
      'America/New_York',
      '2026-03-08T06:58:00Z',
      ['2026-03-08T06:59:00Z', '2026-03-08T07:00:00Z', '2026-03-08T07:01:00Z'],
    ],
    [
      '0 * * * *',
      'America/Santiago',
      '2026-09-06T02:30:00Z',
      ['2026-09-06T03:00:00Z', '2026-09-06T04:00:00Z', '2026-09-06T05:00:00Z'],
    ],
  ];
  it.each(cases)('%s in %s from %s', (expression, zone, base, expected) => {
    expect(chain(expression, zone, base, expected.length)).toEqual(expected);
  });
});

describe('fall-back overlap, fixed hour: fires once, at the first occurrence', () => {
  const cases: [string, Zone, string, string[]][] = [
    // The example in docs/schedules.md: 01:30 EDT = 05:30Z only; Nov 2 01:30 EST = 06:30Z.
    [
      '30 1 * * *',
      'America/New_York',
      '2026-10-31T12:00:00Z',
      ['2026-11-01T05:30:00Z', '2026-11-02T06:30:00Z'],
    ],
    // Base between the two 01:30s, on the first, on the second, and with a ms fraction: never the second.
    ['30 1 * * *', 'America/New_York', '2026-11-01T05:30:00Z', ['2026-11-02T06:30:00Z']],
    ['30 1 * * *', 'America/New_York', '2026-11-01T05:30:00.500Z', ['2026-11-02T06:30:00Z']],
    ['30 1 * * *', 'America/New_York', '2026-11-01T05:45:00Z', ['2026-11-02T06:30:00Z']],
    ['30 1 * * *', 'America/New_York', '2026-11-01T06:15:00Z', ['2026-11-02T06:30:00Z']],
    ['30 1 * * *', 'America/New_York', '2026-11-01T06:30:00Z', ['2026-11-02T06:30:00Z']],
    // A fixed hour with a stepped minute: each wall time once, on the first pass.
    [
      '*/15 1 * * *',
      'America/New_York',
      '2026-11-01T04:50:00Z',
      [
        '2026-11-01T05:00:00Z',
        '2026-11-01T05:15:00Z',
        '2026-11-01T05:30:00Z',
        '2026-11-01T05:45:00Z',
        '2026-11-02T06:00:00Z',
      ],
    ],
    // A list in the hour field is not a wildcard either.
    [
      '30 1,3 * * *',
      'America/New_York',
      '2026-11-01T05:00:00Z',
      ['2026-11-01T05:30:00Z', '2026-11-01T08:30:00Z', '2026-11-02T06:30:00Z'],
    ],
    // Berlin repeats 02:00-02:59: 02:30 CEST = 00:30Z; Oct 26 02:30 CET = 01:30Z.
    ['30 2 * * *', 'Europe/Berlin', '2026-10-24T12:00:00Z', ['2026-10-25T00:30:00Z', '2026-10-26T01:30:00Z']],
    ['30 2 * * *', 'Europe/Berlin', '2026-10-25T00:45:00Z', ['2026-10-26T01:30:00Z']],
    // Sydney falls back in April: 02:30 AEDT = Apr 4 15:30Z; Apr 6 02:30 AEST = Apr 5 16:30Z.
    [
      '30 2 * * *',
      'Australia/Sydney',
      '2026-04-04T00:00:00Z',
      ['2026-04-04T15:30:00Z', '2026-04-05T16:30:00Z'],
    ],
    ['30 2 * * *', 'Australia/Sydney', '2026-04-04T16:00:00Z', ['2026-04-05T16:30:00Z']],
    // Santiago repeats 23:00-23:59 on Apr 4: 23:30 -03 = Apr 5 02:30Z only; Apr 5 23:30 -04 = Apr 6 03:30Z.
    [
      '30 23 * * *',
      'America/Santiago',
      '2026-04-04T12:00:00Z',
      ['2026-04-05T02:30:00Z', '2026-04-06T03:30:00Z'],
    ],
    ['30 23 * * *', 'America/Santiago', '2026-04-05T03:00:00Z', ['2026-04-06T03:30:00Z']],
    // Midnight after the overlap happens once: Apr 4 00:00 -03, Apr 5 00:00 -04, Apr 6 00:00 -04.
    [
      '0 0 * * *',
      'America/Santiago',
      '2026-04-03T12:00:00Z',
      ['2026-04-04T03:00:00Z', '2026-04-05T04:00:00Z', '2026-04-06T04:00:00Z'],
    ],
    [
      '30 0 * * *',
      'America/Santiago',
      '2026-04-03T12:00:00Z',
      ['2026-04-04T03:30:00Z', '2026-04-05T04:30:00Z', '2026-04-06T04:30:00Z'],
    ],
  ];
  it.each(cases)('%s in %s from %s', (expression, zone, base, expected) => {
    expect(chain(expression, zone, base, expected.length)).toEqual(expected);
  });
});

describe('fall-back overlap, hour *: fires on every real instant that matches (both passes)', () => {
  const cases: [string, Zone, string, string[]][] = [
    // 00:00 EDT, 01:00 EDT, 01:00 EST, 02:00 EST, 03:00 EST.
    [
      '0 * * * *',
      'America/New_York',
      '2026-11-01T03:30:00Z',
      [
        '2026-11-01T04:00:00Z',
        '2026-11-01T05:00:00Z',
        '2026-11-01T06:00:00Z',
        '2026-11-01T07:00:00Z',
        '2026-11-01T08:00:00Z',
      ],
    ],
    // 00:30 EDT, 01:30 EDT, 01:30 EST, 02:30 EST.
    [
      '30 * * * *',
      'America/New_York',
      '2026-11-01T04:00:00Z',
      ['2026-11-01T04:30:00Z', '2026-11-01T05:30:00Z', '2026-11-01T06:30:00Z', '2026-11-01T07:30:00Z'],
    ],
    // A base inside the first pass goes to the second pass of an earlier wall time, never back in time.
    [
      '0 * * * *',
      'America/New_York',
      '2026-11-01T05:30:00Z',
      ['2026-11-01T06:00:00Z', '2026-11-01T07:00:00Z'],
    ],
    [
      '30 * * * *',
      'America/New_York',
      '2026-11-01T05:30:00Z',
      ['2026-11-01T06:30:00Z', '2026-11-01T07:30:00Z'],
    ],
    // A stepped wildcard hour counts as a wildcard: 01:30 fires on both passes.
    [
      '30 */1 * * *',
      'America/New_York',
      '2026-11-01T05:00:00Z',
      ['2026-11-01T05:30:00Z', '2026-11-01T06:30:00Z', '2026-11-01T07:30:00Z'],
    ],
    // A base inside the second pass continues in the second pass.
    ['0 * * * *', 'America/New_York', '2026-11-01T06:30:00Z', ['2026-11-01T07:00:00Z']],
    [
      '*/20 * * * *',
      'America/New_York',
      '2026-11-01T05:30:00Z',
      [
        '2026-11-01T05:40:00Z',
        '2026-11-01T06:00:00Z',
        '2026-11-01T06:20:00Z',
        '2026-11-01T06:40:00Z',
        '2026-11-01T07:00:00Z',
      ],
    ],
    [
      '* * * * *',
      'America/New_York',
      '2026-11-01T05:58:00Z',
      ['2026-11-01T05:59:00Z', '2026-11-01T06:00:00Z', '2026-11-01T06:01:00Z'],
    ],
    [
      '0 */2 * * *',
      'America/New_York',
      '2026-11-01T03:30:00Z',
      ['2026-11-01T04:00:00Z', '2026-11-01T07:00:00Z', '2026-11-01T09:00:00Z'],
    ],
    // Berlin: 01:00 CEST, 02:00 CEST, 02:00 CET, 03:00 CET.
    [
      '0 * * * *',
      'Europe/Berlin',
      '2026-10-24T22:30:00Z',
      ['2026-10-24T23:00:00Z', '2026-10-25T00:00:00Z', '2026-10-25T01:00:00Z', '2026-10-25T02:00:00Z'],
    ],
    [
      '30 * * * *',
      'Europe/Berlin',
      '2026-10-24T23:00:00Z',
      ['2026-10-24T23:30:00Z', '2026-10-25T00:30:00Z', '2026-10-25T01:30:00Z', '2026-10-25T02:30:00Z'],
    ],
    // Sydney: 01:00 AEDT, 02:00 AEDT, 02:00 AEST, 03:00 AEST.
    [
      '0 * * * *',
      'Australia/Sydney',
      '2026-04-04T13:30:00Z',
      ['2026-04-04T14:00:00Z', '2026-04-04T15:00:00Z', '2026-04-04T16:00:00Z', '2026-04-04T17:00:00Z'],
    ],
    // Santiago: 22:00 -03, 23:00 -03, 23:00 -04, 00:00 -04.
    [
      '0 * * * *',
      'America/Santiago',
      '2026-04-05T00:30:00Z',
      ['2026-04-05T01:00:00Z', '2026-04-05T02:00:00Z', '2026-04-05T03:00:00Z', '2026-04-05T04:00:00Z'],
    ],
    [
      '30 * * * *',
      'America/Santiago',
      '2026-04-05T01:00:00Z',
      ['2026-04-05T01:30:00Z', '2026-04-05T02:30:00Z', '2026-04-05T03:30:00Z', '2026-04-05T04:30:00Z'],
    ],
  ];
  it.each(cases)('%s in %s from %s', (expression, zone, base, expected) => {
    expect(chain(expression, zone, base, expected.length)).toEqual(expected);
  });
});

describe('0 9 * * * stays at 09:00 local on every day of a year', () => {
  it.each([...ZONES, 'Asia/Kolkata', 'Pacific/Chatham'])('%s', (zone) => {
    const schedule = parseSchedule('0 9 * * *', { timezone: zone, anchor: 0 });
    let at = Date.parse('2025-12-31T12:00:00Z');
    let previousDate = '';
    const dates = new Set<string>();
    for (let i = 0; i < 365; i++) {
      const next = nextOccurrence(schedule, at)!;
      expect(next).toBeGreaterThan(at);
      const local = localParts(zone, next);
      expect({ hour: local.hour, minute: local.minute }).toEqual({ hour: 9, minute: 0 });
      expect(local.date > previousDate).toBe(true);
      dates.add(local.date);
      previousDate = local.date;
      at = next;
    }
    // 365 consecutive local dates: no day skipped, none doubled.
    expect(dates.size).toBe(365);
    const first = Date.parse(`${[...dates][0]}T00:00:00Z`);
    const last = Date.parse(`${[...dates][364]}T00:00:00Z`);
    expect((last - first) / 86_400_000).toBe(364);
  });
});

describe('CRON_TZ over a transition', () => {
  it('uses the prefix zone for the DST rules, not the job zone', () => {
    const schedule = parseSchedule('CRON_TZ=America/New_York 30 2 * * *', { timezone: 'UTC', anchor: 0 });
    expect(new Date(nextOccurrence(schedule, Date.parse('2026-03-08T00:00:00Z'))!).toISOString()).toBe(
      '2026-03-08T07:00:00.000Z',
    );
  });
});
