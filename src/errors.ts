/**
 * One error type for the whole service. `code` is stable and machine-readable: tests assert on it,
 * the HTTP error handler maps it to a status (src/http/errors.ts), and operators grep logs for it.
 * Every code here is thrown somewhere, and each is the `error` of the reply body it causes (except
 * `invalid_fire_token`, whose body the contract fixes); docs/operations.md lists them, and
 * test/errors.test.ts keeps that list and this type in step.
 */
export type ErrorCode =
  // configuration and input
  | 'invalid_config'
  | 'invalid_schedule'
  | 'validation_failed'
  | 'invalid_json'
  | 'unsupported_media_type'
  | 'commands_disabled'
  | 'bad_request'
  | 'not_found'
  | 'rate_limited'
  // jobs
  | 'job_not_found'
  | 'job_exists'
  | 'job_file_managed'
  | 'job_damaged'
  | 'run_in_progress'
  // store
  | 'store_corrupt'
  | 'store_unavailable'
  | 'store_locked'
  // fire path
  | 'invalid_fire_token'
  | 'too_early'
  | 'draining'
  | 'claim_failed'
  // NAS
  | 'nas_unreachable'
  | 'nas_rejected'
  | 'nas_invalid_client'
  | 'nas_unauthorized'
  // admin
  | 'unauthorized'
  | 'admin_disabled'
  | 'internal';

export class ChronosError extends Error {
  override readonly name = 'ChronosError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Extra structured detail safe to show to the caller (field paths, hints). */
    readonly details?: Record<string, unknown>,
    options?: ChronosErrorOptions,
  ) {
    super(message, options && 'cause' in options ? { cause: options.cause } : undefined);
    if (options?.retryAfterSeconds !== undefined) this.retryAfterSeconds = options.retryAfterSeconds;
    if (options?.expected) this.expected = true;
  }
  /** Sent as `Retry-After` (seconds) by the HTTP error handler; a 503 without it gets 5. */
  readonly retryAfterSeconds?: number;
  /**
   * An expected refusal (draining, a fire that cannot be claimed yet) whose message is written for the
   * caller and whose cause the thrower already logged: the handler sends the message even on a 5xx, and
   * does not log it again.
   */
  readonly expected?: boolean;
}

export interface ChronosErrorOptions {
  cause?: unknown;
  retryAfterSeconds?: number;
  expected?: boolean;
}

export function isChronosError(err: unknown, code?: ErrorCode): err is ChronosError {
  return err instanceof ChronosError && (code === undefined || err.code === code);
}

/** The message of anything thrown: an Error's message, anything else as a string. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
