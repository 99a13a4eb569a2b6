import { formatInstant } from '../clock.js';
import { isChronosError } from '../errors.js';
import { toWholeSecond } from '../jobs/jobs.js';
import { nextOccurrence, parseSchedule, type Schedule } from '../jobs/schedule.js';
import { normalizeTimeZone } from '../jobs/zone.js';
import {
  type CliIo,
  EXIT_FAILURE,
  EXIT_OK,
  formatInZone,
  parseCommandArgs,
  parseCount,
  UsageError,
} from './common.js';

export const NEXT_USAGE = `Usage: chronos next "<schedule>" [--tz ZONE] [--from TIME] [--count N] [--json]

Prints the next occurrences of a schedule, without a job or a server.

Options:
  --tz ZONE      IANA zone for cron fields and naive times (default CHRONOS_TIMEZONE or UTC)
  --from TIME    start instant (default now): 2026-03-08T00:00:00Z, …+01:00, or a wall time without an
                 offset (2026-03-08 09:00), read in --tz; intervals and "in"/"+" count from it, rounded
                 up to a whole second as the server does for a job created at that instant
  --count N      how many occurrences (default 5)
  --json         print {"schedule","timezone","from","next":["<ISO UTC>",...]}
  -h, --help     this text

Examples:
  chronos next "30 2 * * *" --tz America/New_York --from 2026-03-07T12:00:00Z --count 3
  chronos next "every 90s" --count 4 --json`;

/**
 * `--from`: an instant with an offset (`2026-03-08T00:00:00Z`, `…+01:00`), or a wall time without one, read
 * in the zone the command shows (--tz, else CHRONOS_TIMEZONE, else UTC) like a job's "at" time.
 */
export function parseFrom(value: string, zone: string): number {
  const trimmed = value.trim();
  if (/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(trimmed)) {
    try {
      const parsed = parseSchedule(`at ${trimmed}`, { timezone: zone, anchor: 0 });
      if (parsed.kind === 'once') return parsed.at;
    } catch (err) {
      if (!isChronosError(err)) throw err;
    }
  }
  throw new UsageError(
    `--from must be a date and time such as 2026-03-08T00:00:00Z, 2026-03-08T00:00:00+01:00 or 2026-03-08 00:00 (read in --tz ${zone}), got "${value}"`,
  );
}

/** Up to `count` occurrences strictly after `from`; a one-shot yields at most one. */
export function occurrences(schedule: Schedule, from: number, count: number): number[] {
  const result: number[] = [];
  let after = from;
  while (result.length < count) {
    const next = nextOccurrence(schedule, after);
    if (next === null) break;
    result.push(next);
    after = next;
  }
  return result;
}

/** The zone a person should read the times in: a CRON_TZ= prefix wins over the job's zone. */
export function effectiveZone(schedule: Schedule, zone: string): string {
  return schedule.kind === 'cron' ? schedule.timezone : zone;
}

export async function runNext(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    argv,
    {
      tz: { type: 'string' },
      from: { type: 'string' },
      count: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    true,
  );
  if (values.help) {
    io.out(NEXT_USAGE);
    return EXIT_OK;
  }
  if (positionals.length !== 1) {
    throw new UsageError('give exactly one schedule, quoted: chronos next "*/15 * * * *"');
  }
  const text = positionals[0]!;
  const count = parseCount(values.count, '--count', 5);
  const zoneInput = values.tz ?? io.env['CHRONOS_TIMEZONE'] ?? 'UTC';
  const zone = normalizeTimeZone(zoneInput);
  if (zone === null) {
    io.err(`chronos next: unknown time zone "${zoneInput}": use an IANA name such as Europe/Paris or UTC`);
    return EXIT_FAILURE;
  }
  const from = values.from === undefined ? Date.now() : parseFrom(values.from, zone);

  let schedule: Schedule;
  try {
    // The server anchors a new job's intervals and relative one-shots on the whole second at or after its
    // creation (buildJob); the prediction uses the same anchor, or "every 10s" would drift from it.
    schedule = parseSchedule(text, { timezone: zone, anchor: toWholeSecond(from) });
  } catch (err) {
    if (!isChronosError(err)) throw err;
    io.err(`chronos next: invalid schedule "${text}": ${err.message}`);
    return EXIT_FAILURE;
  }
  const shownZone = effectiveZone(schedule, zone);
  const next = occurrences(schedule, from, count);
  if (values.json) {
    io.out(
      JSON.stringify({
        schedule: text,
        timezone: shownZone,
        from: formatInstant(from),
        next: next.map((at) => formatInstant(at)),
      }),
    );
    return EXIT_OK;
  }
  const lines = [`${text}  (${shownZone}, after ${formatInZone(from, zone)} = ${formatInstant(from)})`];
  if (next.length === 0) lines.push('  no occurrence after this instant');
  for (const at of next) lines.push(`  ${formatInZone(at, shownZone)}   ${formatInstant(at)}`);
  io.out(lines.join('\n'));
  return EXIT_OK;
}
