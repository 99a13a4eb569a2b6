import { ChronosError, type ErrorCode } from '../errors.js';

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

/**
 * The one wire format for an instant sent to NAS: ISO-8601 in UTC with `Z`, second precision when the
 * instant is a whole second (`2026-03-08T07:00:00Z`), milliseconds kept otherwise. The fire route,
 * reconcile and the provision call all use this, so a `dedup_key` built anywhere matches.
 */
export function formatFireAt(ms: number): string {
  const iso = new Date(ms).toISOString();
  return iso.endsWith('.000Z') ? `${iso.slice(0, -5)}Z` : iso;
}

/** `<job_id>:<fire_at>` with the exact string sent as `fire_at`. */
export function dedupKey(jobId: string, fireAtMs: number): string {
  return `${jobId}:${formatFireAt(fireAtMs)}`;
}

const ISO_INSTANT =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(?:(Z)|([+-])(\d{2}):?(\d{2}))$/i;

/**
 * Strict ISO-8601 instant with an explicit offset (`Z` or `±hh:mm`) to epoch ms, or undefined.
 * `Date.parse` is not used because it accepts naive times (read in the server's zone) and free text.
 * Digits past milliseconds are truncated.
 */
export function parseFireAt(raw: string): number | undefined {
  const m = ISO_INSTANT.exec(raw);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, zulu, sign, oh, om] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = s === undefined ? 0 : Number(s);
  const millis = frac === undefined ? 0 : Number(frac.slice(0, 3).padEnd(3, '0'));
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return undefined;
  const local = Date.UTC(year, month - 1, day, hour, minute, second, millis);
  // Date.UTC rolls 31 Feb over into March; reject instead of guessing.
  if (new Date(local).getUTCDate() !== day) return undefined;
  if (zulu) return local;
  const offsetHours = Number(oh);
  const offsetMinutes = Number(om);
  if (offsetHours > 23 || offsetMinutes > 59) return undefined;
  const offsetMs = (offsetHours * 60 + offsetMinutes) * 60_000;
  return sign === '-' ? local + offsetMs : local - offsetMs;
}
