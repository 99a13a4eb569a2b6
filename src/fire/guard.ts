import type { Clock, TimerHandle } from '../clock.js';
import {
  ALLOWED_ALGORITHMS,
  acceptedIssuers,
  FIRE_PURPOSE,
  type TokenFailure,
  timeClaimProblem,
} from './token.js';

/*
 * What stands between the open internet and the fire route's signature check (docs/contract.md, rows 2
 * and 3; docs/operations.md, "junk fires"). Requests whose token is refused never count against the
 * budget of verified fires, and an address that keeps sending refused tokens gets its next implausible
 * ones refused without a signature check. Nothing here allocates per request beyond one map entry per
 * address and window.
 */

/**
 * Counts hits per key in fixed windows. All keys share one window: when it rolls over the map is emptied,
 * so memory is bounded by the keys seen in one window, and by `maxKeys` on top: past it, new keys share one
 * overflow count (a flood from many addresses then shares one budget instead of growing the map).
 */
export class FixedWindowCounter {
  private windowStart = Number.NEGATIVE_INFINITY;
  private readonly counts = new Map<string, number>();

  constructor(
    private readonly clock: Pick<Clock, 'now'>,
    readonly windowMs: number,
    private readonly maxKeys = 10_000,
  ) {}

  /** Adds one hit for `key` and returns its count in the current window, this hit included. */
  hit(key: string): number {
    const slot = this.slot(key);
    const count = (this.counts.get(slot) ?? 0) + 1;
    this.counts.set(slot, count);
    return count;
  }

  /** The count for `key` in the current window, without adding to it. */
  count(key: string): number {
    this.roll();
    return this.counts.get(this.counts.has(key) ? key : OVERFLOW_KEY) ?? 0;
  }

  /** Milliseconds until the current window ends (at least 1). */
  remainingMs(): number {
    this.roll();
    return Math.max(1, this.windowStart + this.windowMs - this.clock.now());
  }

  private slot(key: string): string {
    this.roll();
    if (this.counts.has(key) || this.counts.size < this.maxKeys) return key;
    return OVERFLOW_KEY;
  }

  private roll(): void {
    const now = this.clock.now();
    if (now - this.windowStart < this.windowMs) return;
    this.windowStart = now;
    this.counts.clear();
  }
}

const OVERFLOW_KEY = '\0overflow';

export interface PrecheckOptions {
  audience: string | undefined;
  issuer: string | undefined;
  now: number;
}

/**
 * Whether an Authorization header could hold a fire token NAS minted, judged from its text alone: no
 * signature check, no key lookup. Returns the refusal code, or null when the token is plausible (its
 * signature still decides). A token NAS minted for us always passes, so refusing on this never refuses a
 * real fire; the full check (token.ts) would refuse everything this refuses, though possibly with another
 * code first.
 */
export function precheckFireToken(
  authorization: string | undefined,
  opts: PrecheckOptions,
): TokenFailure | null {
  if (!authorization) return 'token_missing';
  const match = /^Bearer\s+([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\s*$/i.exec(authorization);
  if (!match) return 'token_malformed';
  const header = decodeSegment(match[1]!);
  const claims = decodeSegment(match[2]!);
  if (!header || !claims) return 'token_malformed';
  if (typeof header['alg'] !== 'string' || !ALLOWED_ALGORITHMS.includes(header['alg']))
    return 'alg_not_allowed';
  const aud = claims['aud'];
  const audiences = Array.isArray(aud) ? aud : [aud];
  if (opts.audience === undefined || !audiences.includes(opts.audience)) return 'audience_mismatch';
  if (!acceptedIssuers(opts.issuer).includes(claims['iss'] as string)) return 'issuer_mismatch';
  const timing = timeClaimProblem(claims, opts.now);
  if (timing !== null) return timing;
  if (claims['purpose'] !== FIRE_PURPOSE) return 'purpose_mismatch';
  return null;
}

function decodeSegment(segment: string): Record<string, unknown> | undefined {
  // A fire token is well under 2 KB; a huge segment is junk and not worth decoding.
  if (segment.length > 8192) return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** How refused fire requests are written to the log. */
export interface RefusalLogOptions {
  clock: Clock;
  warn(obj: Record<string, unknown>, msg: string): void;
  /** Length of one aggregation interval (default 10 s). */
  intervalMs?: number;
  /** Distinct (cause, address) pairs tracked per interval; the rest are counted together (default 100). */
  maxKeys?: number;
  /** The message of the per-interval summary line (default: the fire route's). */
  summaryMsg?: string;
}

export const REFUSED_MSG = 'fire refused: invalid token';
export const RATE_LIMITED_MSG = 'fire refused: rate limit';
export const REFUSALS_SUMMARY_MSG = 'fire refusals in the last interval';
export const DEFAULT_REFUSAL_LOG_INTERVAL_MS = 10_000;

interface RefusalCount {
  code: string;
  ip: string;
  count: number;
}

/**
 * One log line for the first refusal of each cause and address in an interval (a misconfiguration shows
 * at once, with its detail), then one summary line per interval with the counts. A flood of junk therefore
 * writes a few lines per interval, not one per request. The interval timer is unref'd: it never keeps a
 * scale-to-zero process awake; close() writes what is pending.
 */
export class RefusalLog {
  private readonly intervalMs: number;
  private readonly maxKeys: number;
  private counts = new Map<string, RefusalCount>();
  private timer: TimerHandle | undefined;
  private intervalStart = 0;

  constructor(private readonly opts: RefusalLogOptions) {
    this.intervalMs = opts.intervalMs ?? DEFAULT_REFUSAL_LOG_INTERVAL_MS;
    this.maxKeys = opts.maxKeys ?? 100;
  }

  /** `msg` is the line written for the first one of an interval (default: a refused token). */
  record(code: string, ip: string, detail?: string, msg = REFUSED_MSG): void {
    let key = `${code}\0${ip}`;
    let entry = this.counts.get(key);
    if (!entry && this.counts.size >= this.maxKeys) {
      key = `${code}\0*`;
      entry = this.counts.get(key);
      ip = '*';
    }
    if (entry) {
      entry.count += 1;
      return;
    }
    this.counts.set(key, { code, ip, count: 1 });
    this.opts.warn({ code, detail, ip }, msg);
    if (!this.timer) {
      this.intervalStart = this.opts.clock.now();
      this.timer = this.opts.clock.setTimeout(() => {
        this.timer = undefined;
        this.flush();
      }, this.intervalMs);
      this.timer.unref();
    }
  }

  /** Writes the summary of the current interval (if anything beyond first refusals happened) and starts afresh. */
  flush(): void {
    if (this.timer) this.opts.clock.clearTimeout(this.timer);
    this.timer = undefined;
    const entries = [...this.counts.values()];
    this.counts = new Map();
    // Each entry's first refusal was logged on its own; a summary is only news when more followed.
    if (!entries.some((e) => e.count > 1)) return;
    const refused = entries.reduce((sum, e) => sum + e.count, 0);
    entries.sort((a, b) => b.count - a.count);
    this.opts.warn(
      {
        interval_ms: Math.max(0, this.opts.clock.now() - this.intervalStart),
        refused,
        by_cause: entries.slice(0, 20),
        ...(entries.length > 20 ? { more_causes: entries.length - 20 } : {}),
      },
      this.opts.summaryMsg ?? REFUSALS_SUMMARY_MSG,
    );
  }

  close(): void {
    this.flush();
  }
}
