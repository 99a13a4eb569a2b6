import type { Logger } from '../../src/logger.js';

export type Level = 'error' | 'warn' | 'info' | 'debug';
export interface LogEntry {
  level: Level;
  obj: object;
  msg: string | undefined;
}

/** A Logger that keeps what it is given, by level, for assertions. */
export function recordingLogger(): { logger: Logger; entries: LogEntry[]; at(level: Level): LogEntry[] } {
  const entries: LogEntry[] = [];
  const fn =
    (level: Level) =>
    (objOrMsg: object | string, msg?: string): void => {
      entries.push(
        typeof objOrMsg === 'string' ? { level, obj: {}, msg: objOrMsg } : { level, obj: objOrMsg, msg },
      );
    };
  return {
    logger: { error: fn('error'), warn: fn('warn'), info: fn('info'), debug: fn('debug') },
    entries,
    at: (level) => entries.filter((e) => e.level === level),
  };
}
