import { type ParseArgsConfig, parseArgs } from 'node:util';
import { errorMessage } from '../errors.js';
import { zoneOffset } from '../jobs/zone.js';

/** A mistake in the command line itself: printed with the command's usage, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** What a command may touch; the dispatcher passes the real process, tests may capture. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  env: Readonly<Record<string, string | undefined>>;
  readStdin(): Promise<string>;
  /** Whether stdin is a terminal (a person typing), not a pipe or a file. */
  stdinIsTTY: boolean;
}

export const processIo: CliIo = {
  out: (text) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
  err: (text) => process.stderr.write(text.endsWith('\n') ? text : `${text}\n`),
  env: process.env,
  readStdin: async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  },
  stdinIsTTY: process.stdin.isTTY === true,
};

type Options = NonNullable<ParseArgsConfig['options']>;

/** parseArgs's own wording ("Option '--jobs <value>' argument missing") in the words of the other messages. */
export function usageErrorFrom(err: unknown): UsageError | undefined {
  const { code, message } = err as { code?: string; message?: string };
  if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS')) return undefined;
  const quoted = /'([^']+)'/.exec(message ?? '')?.[1] ?? '';
  const option = quoted.split(' ')[0] ?? quoted;
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return new UsageError(`unknown option ${option}`);
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return new UsageError(`unexpected argument "${quoted}"`);
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return new UsageError(
        /argument missing/.test(message ?? '') ? `${option} needs a value` : `${option} takes no value`,
      );
    default:
      return new UsageError(message ?? code);
  }
}

/** parseArgs with its errors turned into usage errors (exit 2) instead of stack traces. */
export function parseCommandArgs<O extends Options>(argv: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (err) {
    throw usageErrorFrom(err) ?? new UsageError(errorMessage(err));
  }
}

export function parseCount(value: string | undefined, flag: string, fallback: number, max = 1000): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > max) {
    throw new UsageError(`${flag} must be a whole number between 1 and ${max}, got "${value}"`);
  }
  return Number(value);
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** `2026-03-08 03:00:00 -04:00`: the wall time a person in that zone sees, with its offset. */
export function formatInZone(instant: number, zone: string): string {
  const offsetMs = zoneOffset(zone, instant);
  const wall = new Date(instant + offsetMs);
  const sign = offsetMs < 0 ? '-' : '+';
  const offsetMinutes = Math.abs(Math.round(offsetMs / 60_000));
  const date = `${wall.getUTCFullYear()}-${pad(wall.getUTCMonth() + 1)}-${pad(wall.getUTCDate())}`;
  const time = `${pad(wall.getUTCHours())}:${pad(wall.getUTCMinutes())}:${pad(wall.getUTCSeconds())}`;
  return `${date} ${time} ${sign}${pad(Math.floor(offsetMinutes / 60))}:${pad(offsetMinutes % 60)}`;
}

/** A plain left-aligned table; cells are single-line. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}
