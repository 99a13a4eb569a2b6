// src/nas/ owns hop 1, the calls to NAS: the client interface and errors (this file), the undici client,
// retries, the access-token source, and whether the chronos provider can work (provider-check.ts).
import { ChronosError, type ErrorCode } from '../errors.js';
import { formatFireAt } from '../fire-at.js';

// The wire instant is shared with the fire route, which must not depend on the NAS client.
export { formatFireAt, parseFireAt } from '../fire-at.js';

// This module is imported by the fire path, which must stay cheap on a cold start: types, the error
// class and the fire_at format/parse helpers only. The undici implementation is in http-client.ts.

/** Arm one one-shot for `job_id` at `fire_at` (epoch ms). NAS upserts by job id. */
export interface ArmRequest {
  job_id: string;
  fire_at: number;
}

/**
 * What NAS answered to a provision. Any 2xx is an arm: the reply body is informational, and a NAS may
 * answer with an empty body or without `schedule_id` (docs/contract.md, hop 1).
 */
export interface ArmReceipt {
  /** NAS's id for the arm when the reply named one, else null. */
  schedule_id: string | null;
}

/** One arm as reported by NAS `list`. */
export interface ArmedEntry {
  job_id: string;
  /** Epoch ms, parsed from `fire_at_raw`: compare this, never the string (an offset change is no change). */
  fire_at: number;
  /** NAS's id for the arm, or null when the item carried none (it is informational). */
  schedule_id: string | null;
  fire_at_raw: string;
}

/**
 * A `list` reply read tolerantly: the envelope `{"armed": [...]}` must parse, then each item stands on
 * its own. Readable items are trusted; the others are skipped and counted.
 */
export interface ArmedList {
  /** Items with a non-empty string `job_id` and an ISO-8601 `fire_at` with offset. */
  entries: ArmedEntry[];
  /** How many items were skipped because they could not be read. */
  skipped: number;
  /**
   * Job ids of skipped items that did name a job (a readable `job_id`, a bad `fire_at`), each once: NAS
   * holds something for these jobs that Chronos cannot read, so it must not cancel them on that account.
   */
  unreadableJobIds: string[];
}

export interface NasClient {
  provision(req: ArmRequest, signal?: AbortSignal): Promise<ArmReceipt>;
  cancel(jobId: string, signal?: AbortSignal): Promise<void>;
  list(signal?: AbortSignal): Promise<ArmedList>;
  close(): Promise<void>;
}

export type NasErrorCode = Extract<
  ErrorCode,
  'nas_unreachable' | 'nas_rejected' | 'nas_unauthorized' | 'nas_invalid_client'
>;

export interface NasErrorInit {
  /** HTTP status of the reply, absent for transport errors and timeouts. */
  status?: number;
  /** Whether calling again later can succeed (transport errors, timeouts, 429, 5xx). */
  retryable: boolean;
  /** Delay NAS asked for with `Retry-After`, in ms. */
  retryAfterMs?: number;
  details?: Record<string, unknown>;
  cause?: unknown;
}

/**
 * A failed NAS call. A subclass (not just details) so that callers can branch on `retryable` and
 * `status` with types, while `isChronosError(err, 'nas_invalid_client')` keeps working.
 * `status` and `retryable` are also copied into `details` so the HTTP error mapper and the logs see them.
 */
export class NasError extends ChronosError {
  readonly status: number | undefined;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;

  constructor(code: NasErrorCode, message: string, init: NasErrorInit) {
    super(
      code,
      message,
      {
        ...init.details,
        ...(init.status === undefined ? {} : { status: init.status }),
        retryable: init.retryable,
      },
      init.cause === undefined ? undefined : { cause: init.cause },
    );
    this.status = init.status;
    this.retryable = init.retryable;
    this.retryAfterMs = init.retryAfterMs;
  }
}

export function isNasError(err: unknown): err is NasError {
  return err instanceof NasError;
}

/** `<job_id>:<fire_at>` with the exact string sent as `fire_at`. */
export function dedupKey(jobId: string, fireAtMs: number): string {
  return `${jobId}:${formatFireAt(fireAtMs)}`;
}
