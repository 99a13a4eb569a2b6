import { randomBytes } from 'node:crypto';
import { formatInstant } from '../clock.js';
import {
  type Arm,
  type Cancellable,
  type EmulatorContext,
  formatDuration,
  MAX_HISTORY,
  timerAt,
} from './context.js';
import { JUNK_LIST_ITEMS } from './faults.js';
import type { ArmedOneShot, KeyOutcome, RowRemoval } from './types.js';
import { formatUtcPlusZero, validateProvision } from './wire.js';

export interface Hop1Outcome {
  status: number;
  reply: Record<string, unknown>;
  headers?: Record<string, string>;
}

/**
 * NAS's table: one row (arm) per job, the dedup keys it has consumed, and the rows its own bookkeeping
 * removed. provision/cancel/list are the hop-1 semantics on a validated, authenticated request; timing
 * and delivery live in delivery.ts, which arms register with through `onArmed`.
 */
export class ArmTable {
  private readonly arms = new Map<string, Arm>();
  private readonly consumed = new Map<string, { outcome: KeyOutcome; schedule_id: string }>();
  private readonly removals: RowRemoval[] = [];
  private readonly removalTimers = new Set<Cancellable>();
  /** Set by the delivery part: starts the timer of a new arm. */
  onArmed: (arm: Arm) => void = () => {};

  constructor(private readonly ctx: EmulatorContext) {}

  get(jobId: string): Arm | undefined {
    return this.arms.get(jobId);
  }

  values(): IterableIterator<Arm> {
    return this.arms.values();
  }

  isCurrent(arm: Arm): boolean {
    return this.arms.get(arm.job_id) === arm;
  }

  /** Drops arm from its row unless a newer arm replaced it (that one must survive). */
  removeIfCurrent(arm: Arm): void {
    if (this.isCurrent(arm)) this.arms.delete(arm.job_id);
  }

  /** Stops arm's timer and any retries waiting on it. */
  supersede(arm: Arm): void {
    arm.timer?.cancel();
    arm.timer = undefined;
    arm.superseded.abort();
  }

  /** Records that NAS is done with this arm's key (rememberKeys answers from this). */
  consume(arm: Arm, outcome: KeyOutcome): void {
    this.consumed.delete(arm.dedup_key);
    this.consumed.set(arm.dedup_key, { outcome, schedule_id: arm.schedule_id });
    // Map iteration order is insertion order, so the oldest key goes first.
    if (this.consumed.size > MAX_HISTORY) this.consumed.delete(this.consumed.keys().next().value as string);
  }

  consumedKeys(): Array<{ dedup_key: string; outcome: KeyOutcome }> {
    return [...this.consumed].map(([dedup_key, { outcome }]) => ({ dedup_key, outcome }));
  }

  rowRemovals(): RowRemoval[] {
    return [...this.removals];
  }

  /**
   * NAS's own bookkeeping after a delivery ended (removeRowOnDelivery): the row goes a fixed delay later on
   * the emulator clock, whatever arm it then holds, so an arm provisioned right after the 2xx is reliably
   * the one removed.
   */
  deliveryEnded(arm: Arm): void {
    const { ctx } = this;
    if (!ctx.faults.removeRowOnDelivery || ctx.closing.aborted) return;
    const delayMs = ctx.faults.removeRowDelayMs;
    const timer = timerAt(ctx, ctx.now() + delayMs, () => {
      this.removalTimers.delete(timer);
      const held = this.arms.get(arm.job_id);
      if (held) {
        this.supersede(held);
        this.arms.delete(arm.job_id);
      }
      this.removals.push({
        job_id: arm.job_id,
        at: formatInstant(ctx.now()),
        after_delivery_of: arm.fire_at,
        removed_fire_at: held ? held.fire_at : null,
      });
      if (this.removals.length > MAX_HISTORY) this.removals.splice(0, this.removals.length / 2);
      const what = held ? `removed arm at ${held.fire_at}` : 'row already empty';
      ctx.log(
        `remove   ${arm.job_id}  ${delayMs} ms after delivery of ${arm.fire_at} ended: ${what}  (fault: removeRowOnDelivery)`,
      );
      ctx.notify();
    });
    this.removalTimers.add(timer);
  }

  provision(body: unknown): Hop1Outcome {
    const { ctx } = this;
    const problem = validateProvision(body);
    if (problem) return { status: 400, reply: { error: 'invalid_request', message: problem } };
    const input = body as { job_id: string; fire_at: string; agent_callback_url: string; dedup_key: string };
    const spent = ctx.faults.rememberKeys ? this.consumed.get(input.dedup_key) : undefined;
    if (spent) {
      ctx.log(
        `consumed ${input.job_id} at ${input.fire_at}  (key already ${spent.outcome.replace('_', ' ')}: 200, nothing armed; fault: rememberKeys)`,
      );
      return { status: 200, reply: { schedule_id: spent.schedule_id } };
    }
    const existing = this.arms.get(input.job_id);
    if (existing && existing.dedup_key === input.dedup_key) {
      ctx.log(`same     ${input.job_id} at ${input.fire_at}  (dedup_key unchanged, no-op)`);
      return { status: 200, reply: { schedule_id: existing.schedule_id } };
    }
    if (existing) this.supersede(existing);
    const arm: Arm = {
      job_id: input.job_id,
      fire_at: input.fire_at,
      fireAtMs: Date.parse(input.fire_at),
      schedule_id: `sch_${randomBytes(9).toString('base64url')}`,
      agent_callback_url: input.agent_callback_url,
      dedup_key: input.dedup_key,
      armed_at: formatInstant(ctx.now()),
      superseded: new AbortController(),
    };
    this.arms.set(arm.job_id, arm);
    this.onArmed(arm);
    const verb = existing ? 'rearmed' : 'armed';
    const replaced = existing ? `  (was ${existing.fire_at})` : '';
    ctx.log(
      `${verb.padEnd(8)} ${arm.job_id}  at ${arm.fire_at}  (${relative(arm.fireAtMs - ctx.now())})${replaced}`,
    );
    return { status: 200, reply: { schedule_id: arm.schedule_id } };
  }

  cancel(body: unknown): Hop1Outcome {
    const jobId = (body as { job_id?: unknown } | undefined)?.job_id;
    if (typeof jobId !== 'string' || jobId.length === 0) {
      return { status: 400, reply: { error: 'invalid_request', message: 'job_id is required' } };
    }
    const arm = this.arms.get(jobId);
    if (arm) {
      this.supersede(arm);
      this.arms.delete(jobId);
      this.ctx.log(`cancel   ${jobId}  (was ${arm.fire_at})`);
    } else {
      this.ctx.log(`cancel   ${jobId}  (not armed; ok)`);
    }
    return { status: 200, reply: { ok: true } };
  }

  list(): Hop1Outcome {
    const { faults } = this.ctx;
    const armedList: unknown[] = [...this.arms.values()].map((a) => {
      const fireAt = faults.malformedListJobs.includes(a.job_id)
        ? 'soon'
        : faults.listQuirks
          ? formatUtcPlusZero(a.fireAtMs)
          : a.fire_at;
      if (!faults.listQuirks) return { job_id: a.job_id, fire_at: fireAt, schedule_id: a.schedule_id };
      // Fields a NAS may add at any time; a reader must ignore what it does not know.
      return {
        job_id: a.job_id,
        fire_at: fireAt,
        status: 'scheduled',
        agent_callback_url: a.agent_callback_url,
        created_at: a.armed_at,
        attempts: 0,
      };
    });
    const count = armedList.length;
    if (faults.junkListItems) armedList.push(...JUNK_LIST_ITEMS.map((item) => structuredClone(item)));
    const extras = [
      faults.listQuirks ? 'quirks' : '',
      faults.junkListItems ? `+${JUNK_LIST_ITEMS.length} junk items` : '',
      faults.malformedListJobs.length > 0 ? `malformed: ${faults.malformedListJobs.join(',')}` : '',
    ].filter((x) => x !== '');
    this.ctx.log(`list     ${count} armed${extras.length > 0 ? `  (fault: ${extras.join('; ')})` : ''}`);
    return { status: 200, reply: { armed: armedList } };
  }

  /** The rows as `armed()` and the state endpoint show them (without the emulator's bookkeeping). */
  publicArms(): ArmedOneShot[] {
    return [...this.arms.values()].map((a) => ({
      job_id: a.job_id,
      fire_at: a.fire_at,
      schedule_id: a.schedule_id,
      agent_callback_url: a.agent_callback_url,
      dedup_key: a.dedup_key,
      armed_at: a.armed_at,
    }));
  }

  /** Stops every timer this table owns (arm timers, pending removals). */
  close(): void {
    for (const arm of this.arms.values()) this.supersede(arm);
    for (const timer of this.removalTimers) timer.cancel();
    this.removalTimers.clear();
  }
}

function relative(ms: number): string {
  return ms >= 0 ? `in ${formatDuration(ms)}` : `${formatDuration(-ms)} ago, fires now`;
}
