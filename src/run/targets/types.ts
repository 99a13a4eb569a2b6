import type { Clock } from '../../clock.js';
import type { Job } from '../../jobs/model.js';

export interface TargetContext {
  job: Job;
  fire_at: number;
  run_id: string;
  attempt: number;
  /** Aborted from outside the run (replace policy, shutdown); the reason is reported as `aborted: <reason>`. */
  signal: AbortSignal;
  timeoutMs: number;
  outputLimitBytes: number;
  /** Drives the run timeout; the system clock when omitted. */
  clock?: Clock;
}

export interface TargetResult {
  ok: boolean;
  /** Bounded excerpt of what the target produced (response body, process output, handler result). */
  output: string | null;
  error: string | null;
  timedOut: boolean;
}

export function abortReasonText(signal: AbortSignal): string {
  const reason: unknown = signal.reason;
  if (typeof reason === 'string') return reason;
  if (reason instanceof Error) return reason.message;
  return 'aborted';
}

export function abortedResult(signal: AbortSignal, output: string | null = null): TargetResult {
  return { ok: false, output, error: `aborted: ${abortReasonText(signal)}`, timedOut: false };
}

export function timedOutResult(timeoutMs: number, output: string | null = null): TargetResult {
  return { ok: false, output, error: `timed out after ${formatSeconds(timeoutMs)}`, timedOut: true };
}

export function formatSeconds(ms: number): string {
  const seconds = ms / 1000;
  return `${Number.isInteger(seconds) ? seconds : seconds.toFixed(3).replace(/0+$/, '')}s`;
}

export function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    const message =
      err.message || (err instanceof AggregateError ? err.errors.map(errorText).join('; ') : '');
    const cause =
      err.cause instanceof Error && err.cause.message !== message ? ` (${err.cause.message})` : '';
    return (code && !message.includes(code) ? `${code}: ${message}` : message || err.name) + cause;
  }
  return String(err);
}
