import { Agent, request } from 'undici';
import { formatInstant } from '../clock.js';
import { VERSION } from '../version.js';
import type { ArmTable } from './arms.js';
import {
  type Arm,
  describeError,
  type EmulatorContext,
  formatDuration,
  MAX_HISTORY,
  sleep,
  timerAt,
} from './context.js';
import type { SigningKeys } from './signing.js';
import type { DeliveryAttempt } from './types.js';
import { NOT_JSON, parseRetryAfter, tryParseJson } from './wire.js';

const FIRE_PATH = '/api/cron/fire';
const MAX_REPLY_CHARS = 4096;

export interface DeliveryOptions {
  baseDelayMs: number;
  maxDelayMs: number;
  deliveryTimeoutMs: number;
  audience: string;
  /** The emulator's URL, the `iss` of fire tokens (known once it listens). */
  issuer(): string;
  deliverVia?: (fireUrl: string) => string;
}

/**
 * Hop 3: one timer per arm, due at fire_at − earlyMs; at the due time a signed POST to the agent,
 * retried with backoff (or Retry-After) until a 2xx or deliveryAttempts; then the arm's key is consumed
 * and the row's post-delivery bookkeeping runs (ArmTable.deliveryEnded).
 */
export class Deliveries {
  private readonly log: DeliveryAttempt[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private readonly dispatcher = new Agent({ connections: 64 });

  constructor(
    private readonly ctx: EmulatorContext,
    private readonly table: ArmTable,
    private readonly keys: SigningKeys,
    private readonly opts: DeliveryOptions,
  ) {
    table.onArmed = (arm) => this.schedule(arm);
  }

  attempts(): DeliveryAttempt[] {
    return [...this.log];
  }

  /** Re-times every arm still waiting for its timer (earlyMs changed). */
  retimeAll(): void {
    for (const arm of this.table.values()) if (arm.timer) this.schedule(arm);
  }

  schedule(arm: Arm): void {
    arm.timer?.cancel();
    const dueMs = Math.max(0, arm.fireAtMs - this.ctx.faults.earlyMs);
    arm.timer = timerAt(this.ctx, dueMs, () => {
      arm.timer = undefined;
      this.onDue(arm);
    });
  }

  /** Deliver now, ignoring the timer (fireNow / the control endpoint); resolves with the first attempt. */
  deliverNow(arm: Arm): Promise<DeliveryAttempt> {
    return this.start(arm, true);
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.inflight]);
    await this.dispatcher.close();
  }

  private onDue(arm: Arm): void {
    const { ctx, table } = this;
    if (!table.isCurrent(arm) || ctx.closing.aborted) return;
    if (ctx.faults.dropDeliveries > 0) {
      ctx.faults.dropDeliveries -= 1;
      table.removeIfCurrent(arm);
      table.consume(arm, 'dropped');
      ctx.log(
        `drop     ${arm.job_id} ${arm.fire_at}  (fault: dropDeliveries, ${ctx.faults.dropDeliveries} left)`,
      );
      ctx.notify();
      return;
    }
    void this.start(arm, false);
  }

  private start(arm: Arm, manual: boolean): Promise<DeliveryAttempt> {
    arm.timer?.cancel();
    arm.timer = undefined;
    let resolveFirst!: (attempt: DeliveryAttempt) => void;
    const first = new Promise<DeliveryAttempt>((resolve) => {
      resolveFirst = resolve;
    });
    const run = this.run(arm, manual ? { manual: true } : {}, resolveFirst);
    this.inflight.add(run);
    void run.finally(() => this.inflight.delete(run));
    return first;
  }

  private async run(
    arm: Arm,
    flags: { manual?: true },
    resolveFirst: (attempt: DeliveryAttempt) => void,
  ): Promise<void> {
    const { ctx, table } = this;
    for (let attempt = 1; ; attempt++) {
      const { result, retryAfterMs } = await this.post(arm, attempt, flags);
      if (attempt === 1) resolveFirst(result);
      if (result.status >= 200 && result.status < 300) {
        table.consume(arm, 'delivered');
        if (ctx.faults.duplicateDelivery && !ctx.closing.aborted) {
          await this.post(arm, attempt, { ...flags, duplicate: true });
        }
        // A provision that replaced this arm while the POST was in flight must survive.
        table.removeIfCurrent(arm);
        table.deliveryEnded(arm);
        ctx.notify();
        return;
      }
      if (ctx.closing.aborted) return;
      if (attempt >= ctx.faults.deliveryAttempts) {
        ctx.log(`give up  ${arm.job_id} ${arm.fire_at} after ${attempt} attempts`);
        table.consume(arm, 'given_up');
        table.removeIfCurrent(arm);
        table.deliveryEnded(arm);
        ctx.notify();
        return;
      }
      if (arm.superseded.signal.aborted) {
        ctx.log(`stop     ${arm.job_id} ${arm.fire_at}  (arm replaced or cancelled; no more retries)`);
        return;
      }
      const backoff = Math.min(this.opts.maxDelayMs, this.opts.baseDelayMs * 2 ** (attempt - 1));
      const delay = Math.max(0, retryAfterMs ?? backoff);
      ctx.log(`retry    ${arm.job_id} ${arm.fire_at} in ${formatDuration(delay)}`);
      const waited = await sleep(ctx, delay, arm.superseded.signal);
      if (!waited) {
        if (!ctx.closing.aborted) {
          ctx.log(`stop     ${arm.job_id} ${arm.fire_at}  (arm replaced or cancelled; no more retries)`);
        }
        return;
      }
    }
  }

  private fireUrl(arm: Arm): string {
    const direct = arm.agent_callback_url.replace(/\/+$/, '') + FIRE_PATH;
    return this.opts.deliverVia ? this.opts.deliverVia(direct) : direct;
  }

  private async post(
    arm: Arm,
    attempt: number,
    flags: { duplicate?: true; manual?: true },
  ): Promise<{ result: DeliveryAttempt; retryAfterMs?: number }> {
    const { ctx } = this;
    const result: DeliveryAttempt = {
      job_id: arm.job_id,
      fire_at: arm.fire_at,
      attempt,
      at: formatInstant(ctx.now()),
      status: 0,
      ...flags,
    };
    let retryAfterMs: number | undefined;
    try {
      const token = await this.keys.sign(
        { aud: this.opts.audience, iss: this.opts.issuer() },
        { sub: arm.job_id },
      );
      const res = await request(this.fireUrl(arm), {
        method: 'POST',
        dispatcher: this.dispatcher,
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          accept: 'application/json',
          'user-agent': `nas-emulator/${VERSION}`,
        },
        body: JSON.stringify({ job_id: arm.job_id, fire_at: arm.fire_at }),
        signal: AbortSignal.any([ctx.closing, AbortSignal.timeout(this.opts.deliveryTimeoutMs)]),
      });
      result.status = res.statusCode;
      const text = await res.body.text();
      if (text.length > 0) result.body = parseReply(text);
      if (res.statusCode === 425 || res.statusCode === 429 || res.statusCode === 503) {
        retryAfterMs = parseRetryAfter(res.headers['retry-after'], ctx.now());
      }
    } catch (err) {
      result.error = describeError(err);
    }
    this.log.push(result);
    if (this.log.length > MAX_HISTORY) this.log.splice(0, this.log.length / 2);
    const outcome = result.status === 0 ? `✗ ${result.error}` : `→ ${result.status}`;
    const tag = flags.duplicate ? '  (fault: duplicate)' : flags.manual ? '  (manual)' : '';
    ctx.log(`deliver  ${arm.job_id} ${arm.fire_at} attempt ${attempt} ${outcome}${tag}`);
    ctx.notify();
    return retryAfterMs === undefined ? { result } : { result, retryAfterMs };
  }
}

/** The agent's reply as recorded: parsed JSON when it is JSON, else text (bounded). */
function parseReply(text: string): unknown {
  const bounded = text.length > MAX_REPLY_CHARS ? text.slice(0, MAX_REPLY_CHARS) : text;
  if (bounded.length === text.length) {
    const parsed = tryParseJson(text);
    if (parsed !== NOT_JSON) return parsed;
  }
  return bounded;
}
