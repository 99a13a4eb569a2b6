import type { DestinationStream } from 'pino';

/*
 * LOG_FORMAT=pretty (docs/operations.md, Logs): one readable line per event, for a person at a terminal.
 * Loaded only when that format is chosen. Field names are the JSON ones, so what a person reads on a
 * terminal can be searched for in a collector's JSON.
 */

const LEVELS: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};

/** Written by every line of this process, or already shown elsewhere on the line. */
const OMITTED = new Set(['time', 'level', 'msg', 'pid', 'service', 'hostname']);
/** Shown first, in this order, when present: what a person scans a fire's line for. */
const FIRST = [
  'action',
  'job_id',
  'fire_at',
  'status',
  'reply',
  'run_id',
  'trigger',
  'duration_ms',
  'error',
  'code',
];
const MAX_VALUE_CHARS = 300;

/**
 * `10:41:07.123Z INFO  job ran job_id=report fire_at=… status=succeeded …`: the time of day (UTC), the
 * level, the message, then the fields as key=value. Strings are quoted only when they hold spaces or
 * quotes; objects are written as compact JSON; an `err` shows its type and message (the stack is in the
 * JSON format). A line that is not a log object is passed through as it is.
 */
export function formatPrettyLine(line: string): string {
  let entry: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(line);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return line.trimEnd();
    entry = parsed as Record<string, unknown>;
  } catch {
    return line.trimEnd();
  }
  const time = typeof entry['time'] === 'string' ? timeOfDay(entry['time']) : '';
  const level = LEVELS[Number(entry['level'])] ?? String(entry['level'] ?? '');
  const parts = [time, level.padEnd(5), String(entry['msg'] ?? '')].filter((p) => p !== '');
  const keys = [
    ...FIRST.filter((k) => k in entry),
    ...Object.keys(entry).filter((k) => !OMITTED.has(k) && !FIRST.includes(k)),
  ];
  for (const key of keys) {
    const value = entry[key];
    if (value === undefined) continue;
    parts.push(`${key}=${key === 'err' ? errorText(value) : valueText(value)}`);
  }
  return parts.join(' ');
}

function timeOfDay(iso: string): string {
  // 2026-11-28T10:41:07.123Z → 10:41:07.123Z; anything else is shown whole.
  const match = /T(\d{2}:\d{2}:\d{2}(?:\.\d+)?Z)$/.exec(iso);
  return match?.[1] ?? iso;
}

function valueText(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  const bounded = text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS)}…` : text;
  return typeof value === 'string' && /[\s"=]/.test(bounded) ? JSON.stringify(bounded) : bounded;
}

function errorText(value: unknown): string {
  if (typeof value !== 'object' || value === null) return valueText(value);
  const err = value as { type?: unknown; message?: unknown; code?: unknown };
  const type = typeof err.type === 'string' && err.type !== 'Error' ? `${err.type}: ` : '';
  const code = typeof err.code === 'string' ? ` (${err.code})` : '';
  return JSON.stringify(`${type}${String(err.message ?? '')}${code}`);
}

/**
 * A pino destination that turns each JSON line into a pretty one and writes it to `sink`; flushing flushes
 * the sink, so the lines written just before an exit are not lost.
 */
export function prettyDestination(sink: DestinationStream & { flush?(cb: (err?: Error) => void): void }) {
  return {
    write(line: string): void {
      sink.write(`${formatPrettyLine(line)}\n`);
    },
    flush(cb: (err?: Error) => void): void {
      if (typeof sink.flush === 'function') sink.flush(cb);
      else cb();
    },
  };
}
