/**
 * Time-zone arithmetic on top of Intl, which is the only zone database a Node process carries.
 *
 * "Wall time" here is a local date and time of some zone encoded as if it were a UTC instant
 * (Date.UTC of the local fields). It lets cron matching run on plain UTC arithmetic, while the
 * mapping back to real instants, where DST gaps and overlaps live, stays in one place.
 */

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(zone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(zone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(zone, formatter);
  }
  return formatter;
}

/**
 * The zone's canonical spelling when `zone` is a zone Intl knows, otherwise null. Only letter case is
 * normalised: ICU maps some current names to legacy ones (Asia/Kolkata → Asia/Calcutta), and users
 * should see back the name they wrote.
 */
export function normalizeTimeZone(zone: string): string | null {
  let normalized = normalizedZones.get(zone);
  if (normalized === undefined) {
    normalized = lookUpZone(zone);
    // Constructing a DateTimeFormat costs ~100 µs; the set of zones in use is small.
    if (normalizedZones.size >= 1_000) normalizedZones.clear();
    normalizedZones.set(zone, normalized);
  }
  return normalized;
}

const normalizedZones = new Map<string, string | null>();

export function isValidTimeZone(zone: string): boolean {
  return normalizeTimeZone(zone) !== null;
}

/**
 * UTC needs no zone data. Answering it without Intl spares a process the ICU set-up (~20 ms here) on its
 * first occurrence computation, which for a woken process lands on the fire path.
 */
const UTC_NAMES = new Map([
  ['utc', 'UTC'],
  ['etc/utc', 'Etc/UTC'],
]);

function isUtc(zone: string): boolean {
  return zone === 'UTC' || zone === 'Etc/UTC';
}

function lookUpZone(zone: string): string | null {
  if (zone.trim() === '' || zone !== zone.trim()) return null;
  const utc = UTC_NAMES.get(zone.toLowerCase());
  if (utc) return utc;
  let resolved: string;
  try {
    resolved = new Intl.DateTimeFormat('en-US', { timeZone: zone }).resolvedOptions().timeZone;
  } catch {
    return null;
  }
  return resolved.toLowerCase() === zone.toLowerCase() ? resolved : zone;
}

/** Date.UTC without its two-digit-year quirk. */
export function utcFromFields(
  year: number,
  month: number,
  day: number,
  hour = 0,
  minute = 0,
  second = 0,
  ms = 0,
): number {
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, ms);
  return date.getTime();
}

// Offsets are constant between transitions, and no zone has two transitions within one hour, so an
// hour whose first and last second share an offset has that offset throughout and can be memoised.
const offsetCache = new Map<string, Map<number, number>>();
const OFFSET_CACHE_LIMIT = 50_000;

// format() and a regular expression cost a quarter of formatToParts(); en-US with numeric fields and
// h23 prints "3/8/2026, 02:30:00".
const FORMATTED = /^(\d+)\/(\d+)\/(\d+),? (\d+):(\d+):(\d+)$/;

function computeOffset(zone: string, instant: number): number {
  const whole = Math.floor(instant / 1000) * 1000;
  const formatter = formatterFor(zone);
  const match = FORMATTED.exec(formatter.format(whole));
  if (match) {
    const [month, day, year, hour, minute, second] = match.slice(1).map(Number) as number[];
    return utcFromFields(year!, month!, day!, hour!, minute!, second!) - whole;
  }
  const fields: Record<string, number> = {};
  for (const part of formatter.formatToParts(whole)) fields[part.type] = Number(part.value);
  const { year = 0, month = 1, day = 1, hour = 0, minute = 0, second = 0 } = fields;
  return utcFromFields(year, month, day, hour, minute, second) - whole;
}

/** The zone's UTC offset at `instant`, in ms (wall time minus instant): +3_600_000 for CET. */
export function zoneOffset(zone: string, instant: number): number {
  if (isUtc(zone)) return 0;
  const hourStart = Math.floor(instant / HOUR_MS) * HOUR_MS;
  let cache = offsetCache.get(zone);
  const cached = cache?.get(hourStart);
  if (cached !== undefined) return cached;
  const atStart = computeOffset(zone, hourStart);
  const atEnd = computeOffset(zone, hourStart + HOUR_MS - 1000);
  if (atStart !== atEnd) return computeOffset(zone, instant);
  if (!cache) {
    cache = new Map();
    offsetCache.set(zone, cache);
  } else if (cache.size >= OFFSET_CACHE_LIMIT) {
    cache.clear();
  }
  cache.set(hourStart, atStart);
  return atStart;
}

/** The wall time (see top of file) shown by a clock in `zone` at `instant`, milliseconds kept. */
export function wallTime(zone: string, instant: number): number {
  return instant + zoneOffset(zone, instant);
}

export interface ResolvedWallTime {
  /**
   * The earliest instant whose wall time is at or after the requested one. For an ordinary wall time
   * that is its instant; in a fall-back overlap the earlier of the two; in a spring-forward gap the
   * first instant after the gap (the transition itself).
   */
  first: number;
  /** In a fall-back overlap, the later of the two instants; otherwise null. */
  second: number | null;
  /** True when the wall time does not exist (spring-forward gap). */
  inGap: boolean;
}

/** Map a wall time of `zone` back to real instants. */
export function resolveWallTime(zone: string, wall: number): ResolvedWallTime {
  // The offsets a day either side bracket any single transition near this wall time.
  const offsetBefore = zoneOffset(zone, wall - DAY_MS);
  const offsetAfter = zoneOffset(zone, wall + DAY_MS);
  if (offsetBefore === offsetAfter) {
    const instant = wall - offsetBefore;
    if (wallTime(zone, instant) === wall) return { first: instant, second: null, inGap: false };
  }
  const candidates = new Set<number>();
  for (const offset of [offsetBefore, offsetAfter]) {
    candidates.add(wall - offset);
    candidates.add(wall - zoneOffset(zone, wall - offset));
  }
  const matching = [...candidates]
    .filter((instant) => wallTime(zone, instant) === wall)
    .sort((a, b) => a - b);
  const earliest = matching[0];
  if (earliest !== undefined) {
    const latest = matching[matching.length - 1]!;
    return { first: earliest, second: latest === earliest ? null : latest, inGap: false };
  }
  // Read with the new offset the wall time lands before the transition, with the old one after it.
  const transition = findTransition(
    zone,
    wall - Math.max(offsetBefore, offsetAfter),
    wall - Math.min(offsetBefore, offsetAfter),
  );
  return { first: transition ?? wall - offsetAfter, second: null, inGap: true };
}

/**
 * The first instant in (low, high] whose offset differs from the offset at `low`, or null if there is
 * none. Assumes at most one transition in the range; bisects to the second, as transitions fall on
 * whole seconds.
 */
export function findTransition(zone: string, low: number, high: number): number | null {
  let before = Math.floor(low / 1000) * 1000;
  let after = Math.ceil(high / 1000) * 1000;
  const offsetAtLow = zoneOffset(zone, before);
  if (zoneOffset(zone, after) === offsetAtLow) return null;
  while (after - before > 1000) {
    const middle = before + Math.floor((after - before) / 2000) * 1000;
    if (zoneOffset(zone, middle) === offsetAtLow) before = middle;
    else after = middle;
  }
  return after;
}

export interface FallBack {
  /** The transition instant. */
  at: number;
  /** Offset in ms before the transition (the larger one). */
  offsetBefore: number;
  /** Offset in ms after it. */
  offsetAfter: number;
}

/**
 * No zone has moved its clock back by more than this, nor had two transitions this close together.
 */
const MAX_SHIFT_MS = 3 * HOUR_MS;

/**
 * A fall-back transition within MAX_SHIFT_MS either side of `instant`: the only one whose repeated wall
 * times can matter for "the next occurrence after `instant`".
 */
export function nearbyFallBack(zone: string, instant: number): FallBack | null {
  const offsetNow = zoneOffset(zone, instant);
  const offsetEarlier = zoneOffset(zone, instant - MAX_SHIFT_MS);
  if (offsetEarlier > offsetNow) {
    const at = findTransition(zone, instant - MAX_SHIFT_MS, instant);
    return at === null ? null : { at, offsetBefore: offsetEarlier, offsetAfter: offsetNow };
  }
  const offsetLater = zoneOffset(zone, instant + MAX_SHIFT_MS);
  if (offsetLater < offsetNow) {
    const at = findTransition(zone, instant, instant + MAX_SHIFT_MS);
    return at === null ? null : { at, offsetBefore: offsetNow, offsetAfter: offsetLater };
  }
  return null;
}
