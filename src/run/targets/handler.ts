import { systemClock } from '../../clock.js';
import { ChronosError } from '../../errors.js';
import type { HandlerTarget, Job } from '../../jobs/model.js';
import { boundText } from '../output.js';
import { abortedResult, errorText, type TargetContext, type TargetResult, timedOutResult } from './types.js';

export interface HandlerInput {
  job: Job;
  fire_at: number;
  run_id: string;
  attempt: number;
  /** Aborted on timeout, replacement or shutdown; a long handler should watch it. */
  signal: AbortSignal;
  payload: unknown;
}

export type HandlerFn = (input: HandlerInput) => unknown;

export interface HandlerRegistry {
  /** Throws `invalid_config` when the name is empty or already taken. */
  register(name: string, fn: HandlerFn): void;
  get(name: string): HandlerFn | undefined;
  names(): string[];
}

export function createHandlerRegistry(): HandlerRegistry {
  const handlers = new Map<string, HandlerFn>();
  return {
    register(name, fn) {
      if (name.length === 0) throw new ChronosError('invalid_config', 'a handler needs a non-empty name');
      if (handlers.has(name)) {
        throw new ChronosError('invalid_config', `a handler is already registered under "${name}"`);
      }
      handlers.set(name, fn);
    },
    get: (name) => handlers.get(name),
    names: () => [...handlers.keys()].sort(),
  };
}

/** Strings are kept as written; anything else is shown as JSON. */
function renderResult(value: unknown, limit: number): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value.length === 0 ? null : boundText(value, limit);
  try {
    const json = JSON.stringify(value);
    return json === undefined ? null : boundText(json, limit);
  } catch (err) {
    return `[result not serialisable: ${errorText(err)}]`;
  }
}

/**
 * A handler cannot be stopped from outside; on timeout or abort its signal is aborted and the run
 * ends at once, whatever the function does afterwards.
 */
export async function executeHandler(
  target: HandlerTarget,
  ctx: TargetContext,
  registry: HandlerRegistry,
): Promise<TargetResult> {
  const fn = registry.get(target.name);
  if (!fn) {
    return {
      ok: false,
      output: null,
      error: `no handler registered under "${target.name}"`,
      timedOut: false,
    };
  }
  if (ctx.signal.aborted) return abortedResult(ctx.signal);
  const clock = ctx.clock ?? systemClock;
  const controller = new AbortController();
  let stopped: (result: TargetResult) => void = () => {};
  const interruption = new Promise<TargetResult>((resolve) => {
    stopped = resolve;
  });
  const onOuterAbort = () => {
    controller.abort(ctx.signal.reason);
    stopped(abortedResult(ctx.signal));
  };
  ctx.signal.addEventListener('abort', onOuterAbort, { once: true });
  const timer = clock.setTimeout(() => {
    const result = timedOutResult(ctx.timeoutMs);
    controller.abort(new Error(result.error ?? 'timed out'));
    stopped(result);
  }, ctx.timeoutMs);

  const call = (async (): Promise<TargetResult> => {
    try {
      const value = await fn({
        job: ctx.job,
        fire_at: ctx.fire_at,
        run_id: ctx.run_id,
        attempt: ctx.attempt,
        signal: controller.signal,
        payload: target.payload,
      });
      return { ok: true, output: renderResult(value, ctx.outputLimitBytes), error: null, timedOut: false };
    } catch (err) {
      return {
        ok: false,
        output: null,
        error: boundText(errorText(err), ctx.outputLimitBytes),
        timedOut: false,
      };
    }
  })();

  try {
    return await Promise.race([call, interruption]);
  } finally {
    clock.clearTimeout(timer);
    ctx.signal.removeEventListener('abort', onOuterAbort);
  }
}
