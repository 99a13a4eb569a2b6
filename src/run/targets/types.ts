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
  /**
   * Set when the target could not even start for a reason inside Chronos (the process is out of descriptors
   * or memory): the errno code. Such a failure is not the job's, and the runner retries it locally.
   */
  internal?: string;
}

/** Errors that say this process (or the machine) is out of a resource, not that the target failed. */
export const RESOURCE_ERROR_CODES: ReadonlySet<string> = new Set(['EMFILE', 'ENFILE', 'ENOMEM', 'EAGAIN']);

/** The resource-exhaustion code carried by `err` or its causes, if any. */
export function resourceErrorCode(err: unknown, depth = 0): string | undefined {
  if (!(err instanceof Error) || depth > 4) return undefined;
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== undefined && RESOURCE_ERROR_CODES.has(code)) return code;
  if (err instanceof AggregateError) {
    for (const inner of err.errors) {
      const found = resourceErrorCode(inner, depth + 1);
      if (found) return found;
    }
  }
  return resourceErrorCode(err.cause, depth + 1);
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
