// The instant format of the wire contract (docs/contract.md, Instants on the wire): what Chronos sends
// to NAS as `fire_at` and what it accepts in a fire. Core: the fire route, the NAS client and reconcile
// all format and parse through here, so a `dedup_key` built anywhere matches.

/**
 * The one wire format for an instant sent to NAS: ISO-8601 in UTC with `Z`, second precision when the
 * instant is a whole second (`2026-03-08T07:00:00Z`), milliseconds kept otherwise. The fire route,
 * reconcile and the provision call all use this, so a `dedup_key` built anywhere matches.
 */
export function formatFireAt(ms: number): string {
  const iso = new Date(ms).toISOString();
  return iso.endsWith('.000Z') ? `${iso.slice(0, -5)}Z` : iso;
}

const ISO_INSTANT =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(?:(Z)|([+-])(\d{2}):?(\d{2}))$/i;

/**
 * Strict ISO-8601 instant with an explicit offset (`Z` or `±hh:mm`) to epoch ms, or undefined.
 * `Date.parse` is not used because it accepts naive times (read in the server's zone) and free text.
 * Digits past milliseconds are truncated.
 */
export function parseFireAt(raw: string): number | undefined {
  const m = ISO_INSTANT.exec(raw);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, zulu, sign, oh, om] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = s === undefined ? 0 : Number(s);
  const millis = frac === undefined ? 0 : Number(frac.slice(0, 3).padEnd(3, '0'));
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return undefined;
  const local = Date.UTC(year, month - 1, day, hour, minute, second, millis);
  // Date.UTC rolls 31 Feb over into March; reject instead of guessing.
  if (new Date(local).getUTCDate() !== day) return undefined;
  if (zulu) return local;
  const offsetHours = Number(oh);
  const offsetMinutes = Number(om);
  if (offsetHours > 23 || offsetMinutes > 59) return undefined;
  const offsetMs = (offsetHours * 60 + offsetMinutes) * 60_000;
  return sign === '-' ? local + offsetMs : local - offsetMs;
}
