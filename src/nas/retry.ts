import { type Clock, systemClock } from '../clock.js';

export interface BackoffBounds {
  /** Delay cap of the first retry, in ms; doubles per attempt. */
  base: number;
  /** No delay exceeds this, in ms. */
  max: number;
}

/**
 * "Full jitter": a uniform delay in [0, min(max, base·2^(attempt-1))). Spreading retries over the
 * whole window keeps a fleet of processes that failed together from retrying together.
 * `attempt` is the attempt that just failed, starting at 1.
 */
export function computeBackoff(
  attempt: number,
  bounds: BackoffBounds,
  random: () => number = Math.random,
): number {
  const exponent = Math.max(0, attempt - 1);
  const window = Math.min(bounds.max, bounds.base * 2 ** exponent);
  return Math.floor(random() * window);
}

/**
 * A `Retry-After` header value (delta-seconds or HTTP-date) as a delay in ms from `nowMs`, or
 * undefined when absent or unparseable. A date in the past means "now" (0).
 */
export function parseRetryAfter(
  value: string | string[] | null | undefined,
  nowMs: number,
): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value;
  if (raw === undefined || raw === null) return undefined;
  const trimmed = raw.trim();
  if (trimmed === '') return undefined;
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  // HTTP-dates always name a weekday and a month; requiring a letter keeps "1.5" or "-3" from being
  // read by Date.parse as a year.
  if (!/[a-z]/i.test(trimmed)) return undefined;
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}

/** Resolve after `ms` on `clock`; reject with `signal.reason` as soon as `signal` aborts. */
export function sleep(ms: number, clock: Clock = systemClock, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clock.clearTimeout(handle);
      reject(signal?.reason);
    };
    const handle = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export interface RetryInfo {
  /** The attempt that just failed, starting at 1. */
  attempt: number;
  delayMs: number;
  error: unknown;
  /** True when the delay came from the error's Retry-After rather than the backoff. */
  fromRetryAfter: boolean;
}

export interface RetryOptions {
  /** Total attempts including the first; default 5. */
  maxAttempts?: number;
  /** Default 250. */
  baseDelayMs?: number;
  /**
   * Caps the backoff; default 15000. A Retry-After longer than this ends the call at once with its
   * error (carrying `retryAfterMs`): waiting less than NAS asked would only be refused again, so the
   * caller's own later retry (the chronos provider's heal timer) honours it, up to MAX_RETRY_AFTER_MS.
   */
  maxDelayMs?: number;
  clock?: Clock;
  random?: () => number;
  /** Stops everything, including a backoff sleep; `withRetry` then rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Default: the error has `retryable: true` (NasError does). */
  isRetryable?: (error: unknown, attempt: number) => boolean;
  /** Server-requested delay in ms, used instead of the backoff. Default: the error's `retryAfterMs`. */
  retryAfterMs?: (error: unknown) => number | undefined;
  /** Called before each backoff sleep (for a warning log line). */
  onRetry?: (info: RetryInfo) => void;
}

export const DEFAULT_RETRY = { maxAttempts: 5, baseDelayMs: 250, maxDelayMs: 15_000 } as const;

/**
 * The longest Retry-After honoured (5 minutes; docs/contract.md): a NAS that asks for hours must not
 * leave jobs unarmed that long while the process stays awake to arm them.
 */
export const MAX_RETRY_AFTER_MS = 300_000;

function defaultIsRetryable(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { retryable?: unknown }).retryable === true;
}

function defaultRetryAfter(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const value = (error as { retryAfterMs?: unknown }).retryAfterMs;
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : undefined;
}

/**
 * Call `fn(attempt)` until it resolves, the error is not retryable, or `maxAttempts` is reached (the
 * last error is then thrown as is). Sleeps use the Clock so tests drive them.
 */
export async function withRetry<T>(
  fn: (attempt: number) => Promise<T>,
  options: RetryOptions = {},
): Promise<T> {
  const maxAttempts = Math.max(1, options.maxAttempts ?? DEFAULT_RETRY.maxAttempts);
  const bounds: BackoffBounds = {
    base: options.baseDelayMs ?? DEFAULT_RETRY.baseDelayMs,
    max: options.maxDelayMs ?? DEFAULT_RETRY.maxDelayMs,
  };
  const clock = options.clock ?? systemClock;
  const random = options.random ?? Math.random;
  const isRetryable = options.isRetryable ?? defaultIsRetryable;
  const retryAfter = options.retryAfterMs ?? defaultRetryAfter;
  const { signal } = options;

  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (attempt >= maxAttempts || !isRetryable(error, attempt)) throw error;
      const hinted = retryAfter(error);
      if (hinted !== undefined && hinted > bounds.max) throw error;
      const delayMs = hinted === undefined ? computeBackoff(attempt, bounds, random) : hinted;
      options.onRetry?.({ attempt, delayMs, error, fromRetryAfter: hinted !== undefined });
      await sleep(delayMs, clock, signal);
    }
  }
}
