/**
 * The one logger type Chronos's parts take: the four levels of pino's API that they call. A pino logger
 * is one (main.ts makes it and hands it to Fastify, which needs all of pino); so is a test's recorder.
 * Parts take a Logger, never a `log(obj, msg)` callback: the part that knows what happened picks the level.
 */
export interface Logger {
  error: LogFn;
  warn: LogFn;
  info: LogFn;
  debug: LogFn;
}

export interface LogFn {
  (obj: object, msg?: string): void;
  (msg: string): void;
}
