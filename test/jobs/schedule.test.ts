import { describe, expect, it } from 'vitest';
import { isChronosError } from '../../src/errors.js';
import {
  ACCEPTED_FORMS,
  nextOccurrence,
  parseSchedule,
  type Schedule,
  type ScheduleContext,
} from '../../src/jobs/schedule.js';

const ANCHOR = Date.parse('2026-05-01T10:00:00Z');
const NY: ScheduleContext = { timezone: 'America/New_York', anchor: ANCHOR };
const UTC: ScheduleContext = { timezone: 'UTC', anchor: ANCHOR };

const ms = (iso: string): number => Date.parse(iso);
const iso = (instant: number | null): string | null =>
  instant === null ? null : new Date(instant).toISOString();

/** The next `count` occurrences, each computed from the previous one. */
function chain(schedule: Schedule, base: string, count: number): (string | null)[] {
  const out: (string | null)[] = [];
  let at: number | null = ms(base);
  for (let i = 0; i < count && at !== null; i++) {
    at = nextOccurrence(schedule, at);
    out.push(iso(at));
  }
  return out;
}

describe('parseSchedule: accepted forms', () => {
  const cases: [string, ScheduleContext, Schedule][] = [
    [
      '*/15 9-17 * * MON-FRI',
      NY,
      { kind: 'cron', expression: '*/15 9-17 * * MON-FRI', timezone: 'America/New_York', hasSeconds: false },
    ],
    [
      '  0   9 * * *  ',
      NY,
      { kind: 'cron', expression: '0 9 * * *', timezone: 'America/New_York', hasSeconds: false },
    ],
    [
      '*/10 * * * * *',
      UTC,
      { kind: 'cron', expression: '*/10 * * * * *', timezone: 'UTC', hasSeconds: true },
    ],
    [
      '0 0 1 jan,jul sun',
      UTC,
      { kind: 'cron', expression: '0 0 1 jan,jul sun', timezone: 'UTC', hasSeconds: false },
    ],
    ['@hourly', UTC, { kind: 'cron', expression: '@hourly', timezone: 'UTC', hasSeconds: false }],
    ['@DAILY', UTC, { kind: 'cron', expression: '@daily', timezone: 'UTC', hasSeconds: false }],
    ['@weekly', UTC, { kind: 'cron', expression: '@weekly', timezone: 'UTC', hasSeconds: false }],
    ['@monthly', UTC, { kind: 'cron', expression: '@monthly', timezone: 'UTC', hasSeconds: false }],
    ['@yearly', UTC, { kind: 'cron', expression: '@yearly', timezone: 'UTC', hasSeconds: false }],
    ['@annually', UTC, { kind: 'cron', expression: '@annually', timezone: 'UTC', hasSeconds: false }],
    ['@midnight', UTC, { kind: 'cron', expression: '@midnight', timezone: 'UTC', hasSeconds: false }],
    [
      'CRON_TZ=Europe/Paris 0 9 * * *',
      NY,
      { kind: 'cron', expression: '0 9 * * *', timezone: 'Europe/Paris', hasSeconds: false },
    ],
    [
      'cron_tz=europe/paris @daily',
      NY,
      { kind: 'cron', expression: '@daily', timezone: 'Europe/Paris', hasSeconds: false },
    ],
    ['every 90s', NY, { kind: 'interval', everyMs: 90_000, anchor: ANCHOR }],
    ['every 15m', NY, { kind: 'interval', everyMs: 900_000, anchor: ANCHOR }],
    ['every 1h30m', NY, { kind: 'interval', everyMs: 5_400_000, anchor: ANCHOR }],
    ['EVERY 1H 30M', NY, { kind: 'interval', everyMs: 5_400_000, anchor: ANCHOR }],
    ['every 2d', NY, { kind: 'interval', everyMs: 172_800_000, anchor: ANCHOR }],
    ['every 1w', NY, { kind: 'interval', everyMs: 604_800_000, anchor: ANCHOR }],
    ['every 1d12h', NY, { kind: 'interval', everyMs: 129_600_000, anchor: ANCHOR }],
    ['every 1s', NY, { kind: 'interval', everyMs: 1_000, anchor: ANCHOR }],
    ['every 366d', NY, { kind: 'interval', everyMs: 31_622_400_000, anchor: ANCHOR }],
    ['at 2026-12-24T18:00:00+01:00', NY, { kind: 'once', at: ms('2026-12-24T17:00:00Z') }],
    ['at 2026-12-24T18:00:00Z', NY, { kind: 'once', at: ms('2026-12-24T18:00:00Z') }],
    ['at 2026-12-24t18:00:00.250z', NY, { kind: 'once', at: ms('2026-12-24T18:00:00.250Z') }],
    ['at 2026-12-24T18:00-0530', NY, { kind: 'once', at: ms('2026-12-24T23:30:00Z') }],
    ['at 2026-12-24 18:00+05', NY, { kind: 'once', at: ms('2026-12-24T13:00:00Z') }],
    // Naive times are read in the job's zone: 18:00 EST is 23:00Z.
    ['at 2026-12-24 18:00', NY, { kind: 'once', at: ms('2026-12-24T23:00:00Z') }],
    ['at 2026-12-24T18:00:30', NY, { kind: 'once', at: ms('2026-12-24T23:00:30Z') }],
    ['AT 2026-07-04 09:15', NY, { kind: 'once', at: ms('2026-07-04T13:15:00Z') }],
    [
      'at 2026-12-24 18:00',
      { timezone: 'Europe/Paris', anchor: ANCHOR },
      { kind: 'once', at: ms('2026-12-24T17:00:00Z') },
    ],
    // In the spring-forward gap: the first instant after it (03:00 EDT).
    ['at 2026-03-08 02:30', NY, { kind: 'once', at: ms('2026-03-08T07:00:00Z') }],
    // In the fall-back overlap: the earlier of the two instants (01:30 EDT).
    ['at 2026-11-01 01:30', NY, { kind: 'once', at: ms('2026-11-01T05:30:00Z') }],
    ['in 45m', NY, { kind: 'once', at: ANCHOR + 2_700_000 }],
    ['IN 1h30m', NY, { kind: 'once', at: ANCHOR + 5_400_000 }],
    ['+90s', NY, { kind: 'once', at: ANCHOR + 90_000 }],
    ['+ 2d', NY, { kind: 'once', at: ANCHOR + 172_800_000 }],
  ];
  it.each(cases)('%j', (text, ctx, expected) => {
    expect(parseSchedule(text, ctx)).toEqual(expected);
  });

  it('accepts every example quoted in ACCEPTED_FORMS', () => {
    const examples = ACCEPTED_FORMS.flatMap((form) => [...form.matchAll(/"([^"]+)"/g)].map((m) => m[1]!));
    expect(examples.length).toBeGreaterThanOrEqual(15);
    for (const example of examples) expect(() => parseSchedule(example, NY), example).not.toThrow();
  });
});

describe('parseSchedule: rejections', () => {
  const cases: [string, ScheduleContext, string][] = [
    ['', UTC, 'the schedule is empty'],
    ['   ', UTC, 'the schedule is empty'],
    ['30m', UTC, '"30m" is ambiguous: write "every 30m" for a repeating job or "in 30m" for a one-shot'],
    ['1h30m', UTC, '"1h30m" is ambiguous'],
    ['90s', UTC, '"90s" is ambiguous'],
    ['61 * * * *', UTC, 'minute field "61" is out of range 0-59'],
    ['* 24 * * *', UTC, 'hour field "24" is out of range 0-23'],
    ['* * 0 * *', UTC, 'day-of-month field "0" is out of range 1-31'],
    ['* * 32 * *', UTC, 'day-of-month field "32" is out of range 1-31'],
    ['* * * 13 *', UTC, 'month field "13" is out of range 1-12'],
    ['* * * * 8', UTC, 'day-of-week field "8" is out of range 0-7'],
    ['60 * * * * *', UTC, 'second field "60" is out of range 0-59'],
    ['0 0-70 * * * *', UTC, 'minute field "70" is out of range 0-59'],
    ['* * * * * * *', UTC, 'has 7 (a year field is not supported)'],
    ['* * * *', UTC, 'a cron expression has 5 fields'],
    ['hello world', UTC, 'a cron expression has 5 fields'],
    ['garbage', UTC, '"garbage" is not a recognised schedule'],
    ['2026-12-24T18:00', UTC, 'looks like a date: write "at 2026-12-24T18:00"'],
    ['* * * * FOO', UTC, '"FOO" is not a day-of-week name (SUN-SAT)'],
    ['* * * MON *', UTC, '"MON" is not a month name (JAN-DEC)'],
    ['* JAN * * *', UTC, 'hour field "JAN" is not valid'],
    ['L * * * *', UTC, 'minute field "L" is not valid'],
    ['0 0 L * *', UTC, 'day-of-month field "L" is not valid'],
    ['0 0 ? * MON', UTC, 'day-of-month field "?" is not valid'],
    ['0 0 * * MON#2', UTC, 'day-of-week field "MON#2" is not valid'],
    ['*/0 * * * *', UTC, 'step "0" in minute field "*/0" must be at least 1'],
    ['*/61 * * * *', UTC, 'step "61" in minute field "*/61" is larger than'],
    ['5/15 * * * *', UTC, 'a step needs "*" or a range before it, e.g. "5-59/15"'],
    ['1,,2 * * * *', UTC, 'minute field "1,,2" has an empty list entry'],
    ['0 17-9 * * *', UTC, 'range "17-9" in hour field runs backwards'],
    ['0 0 * * FRI-MON', UTC, 'range "FRI-MON" in day-of-week field runs backwards'],
    ['0 0 31 4 *', UTC, 'would never fire'],
    ['0 0 30 2 *', UTC, 'would never fire'],
    ['@reboot', UTC, '"@reboot" is not supported'],
    ['@often', UTC, 'unknown nickname "@often"'],
    ['0 9 * * *', { timezone: 'Mars/Base', anchor: ANCHOR }, 'unknown time zone "Mars/Base"'],
    ['CRON_TZ=Mars/Base 0 9 * * *', UTC, 'unknown time zone "Mars/Base"'],
    ['CRON_TZ=Europe/Paris', UTC, 'must be followed by a cron expression'],
    ['CRON_TZ=Europe/Paris every 5m', UTC, 'CRON_TZ= applies only to cron expressions'],
    ['at 2026-12-24 18:00', { timezone: 'Mars/Base', anchor: ANCHOR }, 'unknown time zone "Mars/Base"'],
    ['every', UTC, '"every" needs a duration'],
    ['every 0s', UTC, 'the duration "0s" is zero: it must be at least 1s'],
    ['every 0m0s', UTC, 'is zero'],
    [
      'every 500ms',
      UTC,
      'unknown unit "ms" in the duration "500ms": use s, m, h, d or w (the smallest unit is s)',
    ],
    ['every 5 minutes', UTC, 'unknown unit "minutes"'],
    ['every 1.5h', UTC, '"1.5h" is not a whole number of units'],
    ['every 30', UTC, 'the duration "30" has no unit'],
    ['every 1h1h', UTC, 'the unit "h" appears twice'],
    ['every 367d', UTC, 'the duration "367d" is longer than the maximum of 366d'],
    ['every 53w', UTC, 'longer than the maximum of 366d'],
    ['every 99999999999999999999s', UTC, 'longer than the maximum'],
    ['every soon', UTC, '"soon" is not a duration'],
    ['in', UTC, '"in" needs a duration'],
    ['in 0s', UTC, 'is zero'],
    ['in 400d', UTC, 'longer than the maximum'],
    ['+', UTC, '"+" needs a duration'],
    ['+30', UTC, 'has no unit'],
    ['at', UTC, '"at" needs a date and time'],
    ['at tomorrow', UTC, '"tomorrow" is not a date and time'],
    ['at 2026-12-24', UTC, '(a time of day is required)'],
    ['at 2026-13-01 10:00', UTC, 'month "13" in "2026-13-01 10:00" is out of range 01-12'],
    ['at 2026-02-29 10:00', UTC, 'day "29" in "2026-02-29 10:00" does not exist in 2026-02'],
    ['at 2026-04-31 10:00', UTC, 'day "31" in "2026-04-31 10:00" does not exist'],
    ['at 2026-12-24 24:00', UTC, 'hour "24" in "2026-12-24 24:00" is out of range 00-23'],
    ['at 2026-12-24 18:60', UTC, 'minute "60"'],
    ['at 2026-12-24 18:00:61', UTC, 'second "61"'],
    ['at 2026-12-24T18:00:00+25:00', UTC, 'the UTC offset "+25:00" is out of range'],
  ];
  it.each(cases)('%j', (text, ctx, problem) => {
    let caught: unknown;
    try {
      parseSchedule(text, ctx);
    } catch (error) {
      caught = error;
    }
    expect(isChronosError(caught, 'invalid_schedule')).toBe(true);
    const error = caught as Error & { details: Record<string, unknown> };
    expect(error.message).toContain(problem);
    expect(error.message).toContain('Accepted forms: ');
    expect(error.message.indexOf(problem)).toBeLessThan(error.message.indexOf('Accepted forms: '));
    expect(error.details).toEqual({
      schedule: text,
      problem: expect.stringContaining(problem),
      accepted_forms: ACCEPTED_FORMS,
    });
  });

  it('accepts a leap day that exists', () => {
    expect(parseSchedule('at 2028-02-29 10:00', UTC)).toEqual({
      kind: 'once',
      at: ms('2028-02-29T10:00:00Z'),
    });
    expect(iso(nextOccurrence(parseSchedule('0 0 29 2 *', UTC), ms('2026-03-01T00:00:00Z')))).toBe(
      '2028-02-29T00:00:00.000Z',
    );
  });
});

describe('nextOccurrence: cron in UTC', () => {
  // 2026-01-01 is a Thursday.
  const cases: [string, string, number, string[]][] = [
    [
      '*/15 * * * *',
      '2026-01-01T00:00:00Z',
      3,
      ['2026-01-01T00:15:00.000Z', '2026-01-01T00:30:00.000Z', '2026-01-01T00:45:00.000Z'],
    ],
    [
      '*/15 9-17 * * MON-FRI',
      '2026-01-02T17:40:00Z',
      2,
      ['2026-01-02T17:45:00.000Z', '2026-01-05T09:00:00.000Z'],
    ],
    [
      '0 12 * JAN,jul Sat',
      '2026-01-01T00:00:00Z',
      2,
      ['2026-01-03T12:00:00.000Z', '2026-01-10T12:00:00.000Z'],
    ],
    ['0 12 * jul SAT', '2026-01-01T00:00:00Z', 1, ['2026-07-04T12:00:00.000Z']],
    ['0 8 1 * *', '2026-01-15T00:00:00Z', 2, ['2026-02-01T08:00:00.000Z', '2026-03-01T08:00:00.000Z']],
    ['5,10 0 * * *', '2026-01-01T00:05:00Z', 2, ['2026-01-01T00:10:00.000Z', '2026-01-02T00:05:00.000Z']],
    [
      '0 0-12/6 * * *',
      '2026-01-01T00:00:00Z',
      3,
      ['2026-01-01T06:00:00.000Z', '2026-01-01T12:00:00.000Z', '2026-01-02T00:00:00.000Z'],
    ],
    // Both day fields restricted: either matches (Vixie cron). The 13th or any Friday.
    [
      '0 0 13 * FRI',
      '2026-01-01T00:00:00Z',
      4,
      [
        '2026-01-02T00:00:00.000Z',
        '2026-01-09T00:00:00.000Z',
        '2026-01-13T00:00:00.000Z',
        '2026-01-16T00:00:00.000Z',
      ],
    ],
    // One day field starting with `*`: only the other restricts.
    ['0 0 * * 1', '2026-01-01T00:00:00Z', 2, ['2026-01-05T00:00:00.000Z', '2026-01-12T00:00:00.000Z']],
    ['0 0 1,15 * *', '2026-01-01T00:00:00Z', 2, ['2026-01-15T00:00:00.000Z', '2026-02-01T00:00:00.000Z']],
    // 7 is Sunday too; SAT-SUN is written 6-7.
    ['0 0 * * 7', '2026-01-01T00:00:00Z', 1, ['2026-01-04T00:00:00.000Z']],
    [
      '0 0 * * 6-7',
      '2026-01-01T00:00:00Z',
      3,
      ['2026-01-03T00:00:00.000Z', '2026-01-04T00:00:00.000Z', '2026-01-10T00:00:00.000Z'],
    ],
    ['@hourly', '2026-01-01T10:20:00Z', 2, ['2026-01-01T11:00:00.000Z', '2026-01-01T12:00:00.000Z']],
    ['@daily', '2026-01-01T10:20:00Z', 1, ['2026-01-02T00:00:00.000Z']],
    ['@midnight', '2026-01-01T10:20:00Z', 1, ['2026-01-02T00:00:00.000Z']],
    ['@weekly', '2026-01-01T10:20:00Z', 2, ['2026-01-04T00:00:00.000Z', '2026-01-11T00:00:00.000Z']],
    ['@monthly', '2026-01-01T10:20:00Z', 1, ['2026-02-01T00:00:00.000Z']],
    ['@yearly', '2026-01-01T10:20:00Z', 1, ['2027-01-01T00:00:00.000Z']],
    ['@annually', '2026-01-01T00:00:00Z', 1, ['2027-01-01T00:00:00.000Z']],
    // Six fields: a leading seconds field.
    [
      '*/20 * * * * *',
      '2026-01-01T00:00:00.500Z',
      3,
      ['2026-01-01T00:00:20.000Z', '2026-01-01T00:00:40.000Z', '2026-01-01T00:01:00.000Z'],
    ],
    ['30 0 9 * * *', '2026-01-01T09:00:30Z', 1, ['2026-01-02T09:00:30.000Z']],
    ['15,45 * * * * *', '2026-01-01T00:00:15Z', 2, ['2026-01-01T00:00:45.000Z', '2026-01-01T00:01:15.000Z']],
  ];
  it.each(cases)('%s from %s', (text, base, count, expected) => {
    expect(chain(parseSchedule(text, UTC), base, count)).toEqual(expected);
  });

  it('is strictly after the base, also when the base is an occurrence or has a millisecond fraction', () => {
    const daily = parseSchedule('0 9 * * *', UTC);
    expect(iso(nextOccurrence(daily, ms('2026-01-01T09:00:00.000Z')))).toBe('2026-01-02T09:00:00.000Z');
    expect(iso(nextOccurrence(daily, ms('2026-01-01T08:59:59.999Z')))).toBe('2026-01-01T09:00:00.000Z');
    expect(iso(nextOccurrence(daily, ms('2026-01-01T09:00:00.001Z')))).toBe('2026-01-02T09:00:00.000Z');
    const everySecond = parseSchedule('* * * * * *', UTC);
    expect(iso(nextOccurrence(everySecond, ms('2026-01-01T00:00:00.999Z')))).toBe('2026-01-01T00:00:01.000Z');
    expect(iso(nextOccurrence(everySecond, ms('2026-01-01T00:00:01.000Z')))).toBe('2026-01-01T00:00:02.000Z');
  });

  it('applies a CRON_TZ prefix instead of the job zone', () => {
    // 09:00 IST (+05:30) is 03:30Z; 09:00 EST would be 14:00Z.
    const schedule = parseSchedule('CRON_TZ=Asia/Kolkata 0 9 * * *', NY);
    expect(schedule).toMatchObject({ timezone: 'Asia/Kolkata' });
    expect(chain(schedule, '2026-01-01T00:00:00Z', 2)).toEqual([
      '2026-01-01T03:30:00.000Z',
      '2026-01-02T03:30:00.000Z',
    ]);
    expect(chain(parseSchedule('0 9 * * *', NY), '2026-01-01T00:00:00Z', 1)).toEqual([
      '2026-01-01T14:00:00.000Z',
    ]);
  });

  it('works on a schedule object rebuilt from its fields (as stored)', () => {
    const stored = JSON.parse(JSON.stringify(parseSchedule('*/15 9-17 * * MON-FRI', NY))) as Schedule;
    // Friday 2026-01-02 17:50 EST → Monday 09:00 EST.
    expect(iso(nextOccurrence(stored, ms('2026-01-02T22:50:00Z')))).toBe('2026-01-05T14:00:00.000Z');
  });
});

describe('nextOccurrence: intervals', () => {
  const anchor = ms('2026-05-01T10:00:00Z');
  const every15m = parseSchedule('every 15m', { timezone: 'UTC', anchor });
  const cases: [string, string, string][] = [
    ['before the anchor', '2026-05-01T09:00:00Z', '2026-05-01T10:15:00.000Z'],
    ['at the anchor', '2026-05-01T10:00:00Z', '2026-05-01T10:15:00.000Z'],
    ['between grid points', '2026-05-01T10:20:00Z', '2026-05-01T10:30:00.000Z'],
    ['exactly on a grid point', '2026-05-01T10:30:00Z', '2026-05-01T10:45:00.000Z'],
    ['just before a grid point', '2026-05-01T10:44:59.999Z', '2026-05-01T10:45:00.000Z'],
    // Fired late (or slept through many slots): the next grid point, not a burst of the missed ones.
    ['three days of missed slots later', '2026-05-04T10:07:00Z', '2026-05-04T10:15:00.000Z'],
  ];
  it.each(cases)('%s', (_label, base, expected) => {
    expect(iso(nextOccurrence(every15m, ms(base)))).toBe(expected);
  });

  it('stays on the anchored grid when each fire is late (no drift)', () => {
    // Each run starts 40 s late and takes 3 min; the next occurrence is computed after completion.
    let scheduled = nextOccurrence(every15m, anchor)!;
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) {
      seen.push(iso(scheduled)!);
      scheduled = nextOccurrence(every15m, scheduled + 40_000 + 180_000)!;
    }
    expect(seen).toEqual([
      '2026-05-01T10:15:00.000Z',
      '2026-05-01T10:30:00.000Z',
      '2026-05-01T10:45:00.000Z',
      '2026-05-01T11:00:00.000Z',
    ]);
  });

  it('uses absolute time: every 1d is 24 h, also across a DST change', () => {
    const daily = parseSchedule('every 1d', {
      timezone: 'America/New_York',
      anchor: ms('2026-03-07T17:00:00Z'),
    });
    expect(chain(daily, '2026-03-07T17:00:00Z', 2)).toEqual([
      '2026-03-08T17:00:00.000Z',
      '2026-03-09T17:00:00.000Z',
    ]);
  });
});

describe('nextOccurrence: one-shots', () => {
  const at = parseSchedule('at 2026-12-24T18:00:00+01:00', UTC);
  it.each([
    ['before', '2026-12-24T16:59:59.999Z', '2026-12-24T17:00:00.000Z'],
    ['at the instant', '2026-12-24T17:00:00Z', null],
    ['after', '2026-12-25T00:00:00Z', null],
  ])('%s', (_label, base, expected) => {
    expect(iso(nextOccurrence(at, ms(base)))).toBe(expected);
  });

  it('relative forms count from the anchor, not from the base', () => {
    const inForm = parseSchedule('in 45m', { timezone: 'UTC', anchor: ms('2026-05-01T10:00:00Z') });
    const plusForm = parseSchedule('+90s', { timezone: 'UTC', anchor: ms('2026-05-01T10:00:00Z') });
    expect(iso(nextOccurrence(inForm, ms('2026-05-01T10:30:00Z')))).toBe('2026-05-01T10:45:00.000Z');
    expect(iso(nextOccurrence(plusForm, ms('2026-05-01T10:00:00Z')))).toBe('2026-05-01T10:01:30.000Z');
    expect(nextOccurrence(plusForm, ms('2026-05-01T10:01:30Z'))).toBeNull();
  });
});
