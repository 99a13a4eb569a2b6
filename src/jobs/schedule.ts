/**
 * The schedule grammar (docs/schedules.md) and the next-occurrence computation.
 *
 * Cron fields are matched by croner against wall time (local fields encoded as UTC, see zone.ts), and
 * the DST rules are applied here when wall times are mapped back to instants. Letting croner work in
 * the zone itself would leave the rules to its own heuristics, which differ from docs/schedules.md (Time zones and DST) for times in a
 * gap under a wildcard hour and for lists or ranges in the hour field during an overlap.
 */
import { Cron } from 'croner';
import { ChronosError, errorMessage } from '../errors.js';
import { nearbyFallBack, normalizeTimeZone, resolveWallTime, utcFromFields, zoneOffset } from './zone.js';

export type Schedule =
  | { kind: 'cron'; expression: string; timezone: string; hasSeconds: boolean }
  | { kind: 'interval'; everyMs: number; anchor: number }
  | { kind: 'once'; at: number };

export interface ScheduleContext {
  /** The job's zone (IANA); a CRON_TZ= prefix overrides it. Naive `at` times are read in it. */
  timezone: string;
  /** Origin of `every` and relative (`in`, `+`) schedules: the job's anchor_at. */
  anchor: number;
}

export const ACCEPTED_FORMS: readonly string[] = Object.freeze([
  '"*/15 9-17 * * MON-FRI" (cron: minute hour day-of-month month day-of-week; names allowed)',
  '"*/10 * * * * *" (cron with a leading seconds field)',
  '"@hourly", "@daily", "@weekly", "@monthly", "@yearly" (cron nicknames)',
  '"CRON_TZ=Europe/Paris 0 9 * * *" (cron in a zone other than the job\'s)',
  '"every 90s", "every 15m", "every 1h30m", "every 2d" (repeat; units s m h d w)',
  '"at 2026-12-24T18:00:00+01:00" (once, at an exact instant)',
  '"at 2026-12-24 18:00" (once, a local time in the job\'s zone)',
  '"in 45m", "+90s" (once, that long after the job is created)',
]);

const SECOND_MS = 1000;
const MINUTE_MS = 60 * SECOND_MS;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;
const MAX_DURATION_DAYS = 366;
const MAX_DURATION_MS = MAX_DURATION_DAYS * DAY_MS;

const UNIT_MS: Readonly<Record<string, number>> = {
  s: SECOND_MS,
  m: MINUTE_MS,
  h: HOUR_MS,
  d: DAY_MS,
  w: 7 * DAY_MS,
};

function invalidSchedule(text: string, problem: string): ChronosError {
  return new ChronosError('invalid_schedule', `${problem}. Accepted forms: ${ACCEPTED_FORMS.join('; ')}`, {
    schedule: text,
    // The problem alone, for reports that list many problems and show the accepted forms once.
    problem,
    accepted_forms: ACCEPTED_FORMS,
  });
}

/** Whether a schedule string is a one-shot (`at …`, `in …`, `+…`), without parsing it fully. */
export function isOneShotSchedule(text: string): boolean {
  return /^\s*(?:(?:at|in)\s|\+)/i.test(text);
}

export function parseSchedule(text: string, ctx: ScheduleContext): Schedule {
  const fail = (problem: string): ChronosError => invalidSchedule(text, problem);
  const trimmed = text.trim();
  if (trimmed === '') throw fail('the schedule is empty');

  const zonePrefix = /^cron_tz=(\S*)\s*([\s\S]*)$/i.exec(trimmed);
  if (zonePrefix) {
    const zone = requireZone(zonePrefix[1]!, fail);
    const rest = zonePrefix[2]!;
    if (rest === '') throw fail(`"CRON_TZ=${zonePrefix[1]}" must be followed by a cron expression`);
    if (/^(every|at|in)(\s|$)|^\+/i.test(rest)) {
      throw fail('CRON_TZ= applies only to cron expressions and nicknames');
    }
    return cronSchedule(rest, zone, fail);
  }

  const keyword = /^(every|at|in)(?:\s+([\s\S]*))?$/i.exec(trimmed);
  if (keyword) {
    const word = keyword[1]!.toLowerCase();
    const argument = keyword[2] ?? '';
    if (word === 'every') {
      if (argument === '') throw fail('"every" needs a duration, e.g. "every 15m"');
      return { kind: 'interval', everyMs: parseDuration(argument, fail), anchor: ctx.anchor };
    }
    if (word === 'in') {
      if (argument === '') throw fail('"in" needs a duration, e.g. "in 45m"');
      return { kind: 'once', at: ctx.anchor + parseDuration(argument, fail) };
    }
    if (argument === '') throw fail('"at" needs a date and time, e.g. "at 2026-12-24 18:00"');
    return { kind: 'once', at: parseAt(argument, ctx.timezone, fail) };
  }
  if (trimmed.startsWith('+')) {
    const argument = trimmed.slice(1).trim();
    if (argument === '') throw fail('"+" needs a duration, e.g. "+90s"');
    return { kind: 'once', at: ctx.anchor + parseDuration(argument, fail) };
  }
  if (/^(?:\d+\s*[smhdw]\s*)+$/i.test(trimmed)) {
    throw fail(
      `"${trimmed}" is ambiguous: write "every ${trimmed}" for a repeating job or "in ${trimmed}" for a one-shot`,
    );
  }
  return cronSchedule(trimmed, requireZone(ctx.timezone, fail), fail);
}

function requireZone(zone: string, fail: (problem: string) => ChronosError): string {
  const normalized = normalizeTimeZone(zone);
  if (normalized === null) {
    throw fail(`unknown time zone "${zone}": use an IANA name such as Europe/Paris or UTC`);
  }
  return normalized;
}

// ---------------------------------------------------------------------------------------------------
// Durations

function parseDuration(argument: string, fail: (problem: string) => ChronosError): number {
  const compact = argument.replace(/\s+/g, '');
  if (/^\d+$/.test(compact)) {
    throw fail(
      `the duration "${argument}" has no unit: write e.g. "${compact}s" or "${compact}m" (units s, m, h, d, w)`,
    );
  }
  if (!/^(?:\d+(?:\.\d+)?[a-z]+)+$/i.test(compact)) {
    throw fail(
      `"${argument}" is not a duration: write whole numbers with units s, m, h, d, w, e.g. "90s" or "1h30m"`,
    );
  }
  let total = 0;
  const seen = new Set<string>();
  for (const match of compact.matchAll(/(\d+(?:\.\d+)?)([a-z]+)/gi)) {
    const amount = match[1]!;
    const unit = match[2]!.toLowerCase();
    const unitMs = UNIT_MS[unit];
    if (unitMs === undefined) {
      const hint = unit === 'ms' ? ' (the smallest unit is s)' : '';
      throw fail(`unknown unit "${match[2]}" in the duration "${argument}": use s, m, h, d or w${hint}`);
    }
    if (amount.includes('.')) {
      throw fail(
        `"${amount}${match[2]}" is not a whole number of units: combine units instead, e.g. "1h30m"`,
      );
    }
    if (seen.has(unit)) throw fail(`the unit "${unit}" appears twice in the duration "${argument}"`);
    seen.add(unit);
    total += Number(amount) * unitMs;
  }
  if (total < SECOND_MS) throw fail(`the duration "${argument}" is zero: it must be at least 1s`);
  if (total > MAX_DURATION_MS) {
    throw fail(`the duration "${argument}" is longer than the maximum of ${MAX_DURATION_DAYS}d`);
  }
  return total;
}

// ---------------------------------------------------------------------------------------------------
// One-shot times

const AT_PATTERN =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

function parseAt(argument: string, zone: string, fail: (problem: string) => ChronosError): number {
  const match = AT_PATTERN.exec(argument);
  if (!match) {
    const dateOnly = /^\d{4}-\d{2}-\d{2}$/.test(argument) ? ' (a time of day is required)' : '';
    throw fail(
      `"${argument}" is not a date and time${dateOnly}: write "at YYYY-MM-DD HH:MM[:SS]" in the job's zone ` +
        'or an ISO-8601 instant with an offset such as "at 2026-12-24T18:00:00+01:00"',
    );
  }
  const [year, month, day, hour, minute] = match.slice(1, 6).map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  const second = match[6] === undefined ? 0 : Number(match[6]);
  const ms = match[7] === undefined ? 0 : Number(match[7].padEnd(3, '0').slice(0, 3));
  if (month < 1 || month > 12) throw fail(`month "${match[2]}" in "${argument}" is out of range 01-12`);
  const daysInMonth = new Date(utcFromFields(year, month + 1, 0)).getUTCDate();
  if (day < 1 || day > daysInMonth) {
    throw fail(`day "${match[3]}" in "${argument}" does not exist in ${match[1]}-${match[2]}`);
  }
  if (hour > 23) throw fail(`hour "${match[4]}" in "${argument}" is out of range 00-23`);
  if (minute > 59) throw fail(`minute "${match[5]}" in "${argument}" is out of range 00-59`);
  if (second > 59) throw fail(`second "${match[6]}" in "${argument}" is out of range 00-59`);
  const wall = utcFromFields(year, month, day, hour, minute, second, ms);

  const offsetText = match[8];
  if (offsetText === undefined) return resolveWallTime(requireZone(zone, fail), wall).first;
  if (offsetText.toUpperCase() === 'Z') return wall;
  const digits = offsetText.slice(1).replace(':', '');
  const offsetHours = Number(digits.slice(0, 2));
  const offsetMinutes = digits.length > 2 ? Number(digits.slice(2)) : 0;
  if (offsetHours > 23 || offsetMinutes > 59) throw fail(`the UTC offset "${offsetText}" is out of range`);
  const sign = offsetText.startsWith('-') ? -1 : 1;
  return wall - sign * (offsetHours * HOUR_MS + offsetMinutes * MINUTE_MS);
}

// ---------------------------------------------------------------------------------------------------
// Cron

const NICKNAMES: Readonly<Record<string, string>> = {
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *',
  '@monthly': '0 0 1 * *',
  '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@hourly': '0 * * * *',
};

interface FieldSpec {
  label: string;
  min: number;
  max: number;
  /** Names for min, min+1, ... (months from JAN = 1, days from SUN = 0). */
  names?: readonly string[];
}

const SECOND_FIELD: FieldSpec = { label: 'second', min: 0, max: 59 };
const MINUTE_FIELD: FieldSpec = { label: 'minute', min: 0, max: 59 };
const HOUR_FIELD: FieldSpec = { label: 'hour', min: 0, max: 23 };
const DOM_FIELD: FieldSpec = { label: 'day-of-month', min: 1, max: 31 };
const MONTH_FIELD: FieldSpec = {
  label: 'month',
  min: 1,
  max: 12,
  names: ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'],
};
// 7 is Sunday as well as 0, as in Vixie cron, so that SAT-SUN can be written 6-7.
const DOW_FIELD: FieldSpec = {
  label: 'day-of-week',
  min: 0,
  max: 7,
  names: ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'],
};

interface ParsedField {
  values: number[];
  /** The field starts with `*` (Vixie cron's test for "unrestricted" in the day-field rule). */
  star: boolean;
}

function parseFieldValue(token: string, field: FieldSpec, fieldText: string, fail: FailFn): number {
  if (/^\d+$/.test(token)) {
    const value = Number(token);
    if (value < field.min || value > field.max) {
      throw fail(`${field.label} field "${token}" is out of range ${field.min}-${field.max}`);
    }
    return value;
  }
  if (field.names) {
    const index = field.names.indexOf(token.toUpperCase());
    if (index >= 0) return index + field.min;
    if (/^[a-z]+$/i.test(token)) {
      const first = field.names[0];
      const last = field.names[field.names.length - 1];
      throw fail(
        `${field.label} field "${fieldText}": "${token}" is not a ${field.label} name (${first}-${last})`,
      );
    }
  }
  throw fail(
    `${field.label} field "${fieldText}" is not valid: "${token}" is not a number` +
      (field.names ? ' or a name' : '') +
      ' (allowed: numbers' +
      (field.names ? ', names' : '') +
      ', *, lists with ",", ranges with "-", steps with "/")',
  );
}

type FailFn = (problem: string) => ChronosError;

function parseField(text: string, field: FieldSpec, fail: FailFn): ParsedField {
  const values = new Set<number>();
  // Sunday is listed once as 0; 7 is only an input spelling.
  const top = field === DOW_FIELD ? 6 : field.max;
  for (const item of text.split(',')) {
    if (item === '') throw fail(`${field.label} field "${text}" has an empty list entry`);
    const parts = item.split('/');
    if (parts.length > 2) throw fail(`${field.label} field "${text}" has more than one "/" in "${item}"`);
    const base = parts[0]!;
    const stepText = parts[1];
    let step = 1;
    if (stepText !== undefined) {
      if (!/^\d+$/.test(stepText))
        throw fail(`step "${stepText}" in ${field.label} field "${text}" is not a number`);
      step = Number(stepText);
      const span = field.max - field.min + 1;
      if (step < 1) throw fail(`step "${stepText}" in ${field.label} field "${text}" must be at least 1`);
      if (step > span) {
        throw fail(
          `step "${stepText}" in ${field.label} field "${text}" is larger than the field's range ${field.min}-${field.max}`,
        );
      }
    }
    let low: number;
    let high: number;
    if (base === '*') {
      low = field.min;
      high = top;
    } else if (base.includes('-')) {
      const bounds = base.split('-');
      if (bounds.length !== 2 || bounds[0] === '' || bounds[1] === '') {
        throw fail(`${field.label} field "${text}" has a malformed range "${base}"`);
      }
      low = parseFieldValue(bounds[0]!, field, text, fail);
      high = parseFieldValue(bounds[1]!, field, text, fail);
      if (low > high) {
        const sundayHint = field === DOW_FIELD ? ' (7 also means Sunday, e.g. "FRI-7")' : '';
        throw fail(
          `range "${base}" in ${field.label} field runs backwards: put the smaller value first${sundayHint}`,
        );
      }
    } else {
      low = parseFieldValue(base, field, text, fail);
      if (stepText !== undefined) {
        throw fail(
          `"${item}" in ${field.label} field: a step needs "*" or a range before it, e.g. "${base}-${field.max}/${stepText}"`,
        );
      }
      high = low;
    }
    for (let value = low; value <= high; value += step)
      values.add(field === DOW_FIELD && value === 7 ? 0 : value);
  }
  return { values: [...values].sort((a, b) => a - b), star: text.startsWith('*') };
}

interface CompiledCron {
  /** Matches wall time: constructed at UTC offset 0 over local fields. */
  matcher: Cron;
  /** The hour field is `*` or `*` with a step: the expression fires on both passes of a repeated hour. */
  hourWild: boolean;
  hasSeconds: boolean;
}

const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function compileCron(expression: string, fail: FailFn): CompiledCron {
  let fields = expression.trim().split(/\s+/);
  if (fields.length === 1 && fields[0]!.startsWith('@')) {
    const nickname = fields[0]!.toLowerCase();
    if (nickname === '@reboot')
      throw fail('"@reboot" is not supported: Chronos fires on a clock, not at start-up');
    const expanded = NICKNAMES[nickname];
    if (expanded === undefined) {
      throw fail(`unknown nickname "${fields[0]}": use @hourly, @daily, @weekly, @monthly or @yearly`);
    }
    fields = expanded.split(' ');
  }
  if (fields.length !== 5 && fields.length !== 6) {
    if (fields.length === 1 && /^\d{4}-\d{2}-\d{2}/.test(expression)) {
      throw fail(`"${expression}" looks like a date: write "at ${expression}" for a one-shot`);
    }
    if (fields.length === 1) throw fail(`"${expression}" is not a recognised schedule`);
    const yearHint = fields.length === 7 ? ' (a year field is not supported)' : '';
    throw fail(
      'a cron expression has 5 fields (minute hour day-of-month month day-of-week) or 6 (a leading seconds ' +
        `field, then those five); "${expression}" has ${fields.length}${yearHint}`,
    );
  }
  const hasSeconds = fields.length === 6;
  const texts = hasSeconds ? fields : ['0', ...fields];
  const specs = [SECOND_FIELD, MINUTE_FIELD, HOUR_FIELD, DOM_FIELD, MONTH_FIELD, DOW_FIELD];
  const parsed = specs.map((spec, index) => parseField(texts[index]!, spec, fail));
  const [, , hour, dom, month, dow] = parsed as [
    ParsedField,
    ParsedField,
    ParsedField,
    ParsedField,
    ParsedField,
    ParsedField,
  ];

  // Vixie cron: when both day fields are restricted a day matching either fires; when one starts with
  // `*`, only the other restricts.
  const dayFieldsAnd = dom.star || dow.star;
  if (dayFieldsAnd && !month.values.some((m) => dom.values.some((d) => d <= DAYS_IN_MONTH[m - 1]!))) {
    throw fail(
      `day-of-month "${texts[3]}" never occurs in month "${texts[4]}", so "${expression}" would never fire`,
    );
  }

  let matcher: Cron;
  try {
    // croner walks a `*` faster than the equivalent list. A full day field may become `*` only when the
    // day fields combine with AND: under OR, croner reads `*` as "no restriction" and drops the OR.
    const pattern = parsed.map((field, index) => {
      const spec = specs[index]!;
      const full = field.values.length === (spec === DOW_FIELD ? 7 : spec.max - spec.min + 1);
      const isDayField = spec === DOM_FIELD || spec === DOW_FIELD;
      return full && (!isDayField || dayFieldsAnd) ? '*' : field.values.join(',');
    });
    matcher = new Cron(pattern.join(' '), {
      utcOffset: 0,
      mode: '6-part',
      domAndDow: dayFieldsAnd,
    });
  } catch (error) {
    throw fail(`"${expression}" is not a valid cron expression (${errorMessage(error)})`);
  }
  return { matcher, hourWild: hour.star, hasSeconds };
}

// Constructing the matcher is the slow part of a cron schedule; jobs share expressions, and a
// schedule object may be rebuilt from its stored fields, so compile by expression text.
const compiledByExpression = new Map<string, CompiledCron>();
const COMPILED_LIMIT = 5_000;

function rememberCompiled(expression: string, compiled: CompiledCron): void {
  if (compiledByExpression.size >= COMPILED_LIMIT) compiledByExpression.clear();
  compiledByExpression.set(expression, compiled);
}

function compiledFor(expression: string): CompiledCron {
  let compiled = compiledByExpression.get(expression);
  if (!compiled) {
    compiled = compileCron(expression, (problem) => invalidSchedule(expression, problem));
    rememberCompiled(expression, compiled);
  }
  return compiled;
}

function cronSchedule(text: string, timezone: string, fail: FailFn): Schedule {
  const expression = text.trim().split(/\s+/).join(' ');
  const canonical = expression.startsWith('@') ? expression.toLowerCase() : expression;
  let compiled = compiledByExpression.get(canonical);
  if (!compiled) {
    compiled = compileCron(canonical, fail);
    rememberCompiled(canonical, compiled);
  }
  return { kind: 'cron', expression: canonical, timezone, hasSeconds: compiled.hasSeconds };
}

// ---------------------------------------------------------------------------------------------------
// Next occurrence

/**
 * The first occurrence strictly after `after` (epoch ms), or null when there is none. Pure: it reads no
 * clock and does not depend on the host's zone.
 */
export function nextOccurrence(schedule: Schedule, after: number): number | null {
  switch (schedule.kind) {
    case 'once':
      return schedule.at > after ? schedule.at : null;
    case 'interval': {
      // The grid anchor + k*every (k ≥ 1): skipped slots are not made up, and the grid never drifts.
      const { anchor, everyMs } = schedule;
      const k = after < anchor ? 1 : Math.floor((after - anchor) / everyMs) + 1;
      return anchor + k * everyMs;
    }
    case 'cron':
      return nextCronOccurrence(compiledFor(schedule.expression), schedule.timezone, after);
  }
}

/**
 * The DST rules, from two facts about a zone's wall clock:
 * - Every matching wall time fires at the earliest instant whose wall time is at or after it
 *   (resolveWallTime's `first`): the instant itself, the first pass of a repeated time, or the end of a
 *   gap. That instant is after `after` exactly when the wall time is later than every wall time shown
 *   up to `after`, so the first candidate is the first match after that high-water mark.
 * - Under a wildcard hour, a repeated wall time also fires on its second pass; only a fall-back near
 *   `after` can offer one, and its second passes map to instants with the post-transition offset.
 */
function nextCronOccurrence(compiled: CompiledCron, zone: string, after: number): number | null {
  const wallNow = after + zoneOffset(zone, after);
  const fallBack = nearbyFallBack(zone, after);
  let highWater = wallNow;
  if (fallBack !== null && fallBack.at <= after) {
    highWater = Math.max(wallNow, fallBack.at - 1 + fallBack.offsetBefore);
  }
  const firstWall = compiled.matcher.nextRun(new Date(highWater));
  let best = firstWall === null ? null : resolveWallTime(zone, firstWall.getTime()).first;

  if (compiled.hourWild && fallBack !== null) {
    const repeatedFrom = fallBack.at + fallBack.offsetAfter;
    const repeatedUntil = fallBack.at + fallBack.offsetBefore;
    // A second pass is after `after` when its wall time, read with the new offset, is.
    const wall = compiled.matcher.nextRun(new Date(Math.max(after + fallBack.offsetAfter, repeatedFrom - 1)));
    if (wall !== null && wall.getTime() < repeatedUntil) {
      const secondPass = wall.getTime() - fallBack.offsetAfter;
      if (best === null || secondPass < best) best = secondPass;
    }
  }
  return best;
}
