// src/logging/ owns how the process logger is made: its format (LOG_FORMAT, this file) and the pretty
// formatter (pretty.ts, loaded only when chosen). What each part logs is that part's own business.
import pino, { type DestinationStream, type Logger } from 'pino';

/** How log lines are written (LOG_FORMAT): one JSON object per line, or one readable line per event. */
export type LogFormat = 'json' | 'pretty';

export interface LoggerOptions {
  level: string;
  /** LOG_FORMAT; unset means pretty on a terminal, JSON otherwise (a pipe, a file, a log collector). */
  format: LogFormat | undefined;
  /** Whether stdout is a terminal; decides the format when none is configured. */
  stdoutIsTTY: boolean;
  /** Where lines go (default: stdout); tests capture them here. */
  destination?: DestinationStream;
}

export function resolveLogFormat(configured: LogFormat | undefined, stdoutIsTTY: boolean): LogFormat {
  return configured ?? (stdoutIsTTY ? 'pretty' : 'json');
}

/** Header paths that may carry a credential; pino replaces them before a line is written. */
export const REDACTED_PATHS = ['req.headers.authorization', 'headers.authorization', '*.authorization'];

/**
 * The process logger. JSON lines carry `time` as an ISO string with milliseconds. The pretty formatter is
 * a module of its own, imported only when asked for, so the JSON path (a woken process answering its first
 * fire) loads nothing more than pino itself.
 */
export async function createLogger(options: LoggerOptions): Promise<Logger> {
  const format = resolveLogFormat(options.format, options.stdoutIsTTY);
  const settings = {
    level: options.level,
    base: { service: 'chronos', pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  };
  if (format === 'json') {
    return options.destination ? pino(settings, options.destination) : pino(settings);
  }
  const { prettyDestination } = await import('./pretty.js');
  return pino(settings, prettyDestination(options.destination ?? pino.destination({ dest: 1, sync: false })));
}
