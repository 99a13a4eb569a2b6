import type { Clock } from '../clock.js';
import type { ArmedOneShot, FaultSwitches } from './types.js';

// What the parts of the emulator share: its clock, event log, listeners and fault switches.

export interface EmulatorContext {
  clock: Clock;
  /** The emulator's clock: host clock + clockOffsetMs. */
  now(): number;
  log(line: string): void;
  /** Wakes every `waitFor` predicate; call after each state change. */
  notify(): void;
  faults: FaultSwitches;
  /** Aborted by close(): nothing new starts, waits end. */
  closing: AbortSignal;
}

export interface Cancellable {
  cancel(): void;
}

/** An armed one-shot with the emulator's own bookkeeping. */
export interface Arm extends ArmedOneShot {
  fireAtMs: number;
  timer?: Cancellable;
  /** Aborted when this arm is replaced or cancelled, so waiting retries give up. */
  superseded: AbortController;
}

/** Histories (deliveries, hop-1 calls, consumed keys, removals) are bounded so a long dev session stays small. */
export const MAX_HISTORY = 100_000;

// setTimeout silently treats delays above 2^31-1 ms (~24.8 days) as 1 ms.
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Runs fn once the emulator clock reaches dueMs (emulator-clock ms); long waits are chunked. */
export function timerAt(ctx: EmulatorContext, dueMs: number, fn: () => void): Cancellable {
  const { clock } = ctx;
  let handle = clock.setTimeout(step, clampDelay(dueMs - ctx.now()));
  let cancelled = false;
  function step(): void {
    if (cancelled) return;
    const left = dueMs - ctx.now();
    // Re-check because long waits are chunked and Node timers may fire a millisecond early.
    if (left > 0) {
      handle = clock.setTimeout(step, clampDelay(left));
      return;
    }
    fn();
  }
  return {
    cancel() {
      cancelled = true;
      clock.clearTimeout(handle);
    },
  };
}

/** Resolves true after ms, or false as soon as signal or the emulator's close aborts. */
export function sleep(ctx: EmulatorContext, ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const both = AbortSignal.any([signal, ctx.closing]);
    if (both.aborted) return resolve(false);
    const timer = timerAt(ctx, ctx.now() + ms, () => {
      both.removeEventListener('abort', onAbort);
      resolve(true);
    });
    function onAbort(): void {
      timer.cancel();
      resolve(false);
    }
    both.addEventListener('abort', onAbort, { once: true });
  });
}

function clampDelay(ms: number): number {
  return Math.min(MAX_TIMER_MS, Math.max(0, ms));
}

export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    const code = (err as { code?: unknown }).code ?? (cause as { code?: unknown } | undefined)?.code;
    if (err.name === 'TimeoutError' || err.name === 'AbortError') return err.name;
    return typeof code === 'string' ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

export function formatDuration(ms: number): string {
  const abs = Math.abs(ms);
  if (abs < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  if (abs < 3_600_000) return `${(ms / 60_000).toFixed(1)}m`;
  if (abs < 86_400_000) return `${(ms / 3_600_000).toFixed(1)}h`;
  return `${(ms / 86_400_000).toFixed(1)}d`;
}
