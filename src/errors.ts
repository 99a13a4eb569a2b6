/**
 * One error type for the whole service. `code` is stable and machine-readable: tests assert on it,
 * the HTTP error handler maps it to a status (src/http/errors.ts), and operators grep logs for it.
 */
export type ErrorCode =
  // configuration and input
  | 'invalid_config'
  | 'invalid_schedule'
  | 'validation_failed'
  | 'invalid_json'
  | 'unsupported_media_type'
  | 'commands_disabled'
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
  | 'fire_too_early'
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
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isChronosError(err: unknown, code?: ErrorCode): err is ChronosError {
  return err instanceof ChronosError && (code === undefined || err.code === code);
}

/** The message of anything thrown: an Error's message, anything else as a string. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
