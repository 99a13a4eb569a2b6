import { describe, expect, it } from 'vitest';
import { computeBackoff, parseRetryAfter, sleep, withRetry } from '../../src/nas/retry.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { ObservedClock } from './loopback-nas.js';

const retryable = (message: string) => Object.assign(new Error(message), { retryable: true });

describe('computeBackoff', () => {
  const bounds = { base: 250, max: 15_000 };

  it('draws uniformly below base·2^(attempt-1)', () => {
    expect(computeBackoff(1, bounds, () => 0.5)).toBe(125);
    expect(computeBackoff(3, bounds, () => 0.5)).toBe(500);
    expect(computeBackoff(3, bounds, () => 0)).toBe(0);
    expect(computeBackoff(3, bounds, () => 0.999999)).toBe(999);
  });

  it('never exceeds max, even for huge attempt numbers', () => {
    expect(computeBackoff(8, bounds, () => 0.5)).toBe(7500);
    expect(computeBackoff(2000, bounds, () => 0.999999)).toBeLessThan(15_000);
    expect(computeBackoff(2000, bounds, () => 0.5)).toBe(7500);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-03-08T07:00:00Z');

  it('reads delta-seconds', () => {
    expect(parseRetryAfter('7', now)).toBe(7000);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
    expect(parseRetryAfter(['3', '9'], now)).toBe(3000);
  });

  it('reads an HTTP-date relative to now, a past date meaning now', () => {
    expect(parseRetryAfter('Sun, 08 Mar 2026 07:00:12 GMT', now)).toBe(12_000);
    expect(parseRetryAfter('Sun, 08 Mar 2026 06:00:00 GMT', now)).toBe(0);
  });

  it.each([undefined, null, '', 'soon', '1.5', '-3', '5s'])('ignores %j', (value) => {
    expect(parseRetryAfter(value, now)).toBeUndefined();
  });
});

describe('withRetry', () => {
  it('retries retryable errors with jittered backoff on the clock until success', async () => {
    const clock = new ObservedClock(true);
    let calls = 0;
    const result = await withRetry(
      async (attempt) => {
        calls++;
        if (attempt < 3) throw retryable(`fail ${attempt}`);
        return 'ok';
      },
      { clock, random: () => 0.5, baseDelayMs: 100, maxDelayMs: 1000 },
    );
    expect(result).toBe('ok');
    expect(calls).toBe(3);
    expect(clock.sleeps).toEqual([50, 100]);
  });

  it('throws a non-retryable error at once', async () => {
    const clock = new ObservedClock(true);
    let calls = 0;
    await expect(
      withRetry(
        async () => {
          calls++;
          throw Object.assign(new Error('bad request'), { retryable: false });
        },
        { clock },
      ),
    ).rejects.toThrow('bad request');
    expect(calls).toBe(1);
    expect(clock.sleeps).toEqual([]);
  });

  it('throws the last error after maxAttempts', async () => {
    const clock = new ObservedClock(true);
    let calls = 0;
    await expect(
      withRetry(
        async (attempt) => {
          calls++;
          throw retryable(`fail ${attempt}`);
        },
        { clock, maxAttempts: 4 },
      ),
    ).rejects.toThrow('fail 4');
    expect(calls).toBe(4);
    expect(clock.sleeps).toHaveLength(3);
  });

  it('uses the error retryAfterMs instead of the backoff', async () => {
    const clock = new ObservedClock(true);
    const hints = [7000, 15_000];
    await withRetry(
      async (attempt) => {
        const hint = hints[attempt - 1];
        if (hint !== undefined) throw Object.assign(retryable('busy'), { retryAfterMs: hint });
        return 'ok';
      },
      { clock, maxDelayMs: 15_000 },
    );
    expect(clock.sleeps).toEqual([7000, 15_000]);
  });

  it('ends the call with the error when Retry-After exceeds maxDelayMs, rather than retrying early', async () => {
    // Before: a Retry-After of 120 s was cut to the 15 s cap and the call retried into another refusal.
    const clock = new ObservedClock(true);
    let calls = 0;
    const err = await withRetry(
      async () => {
        calls++;
        throw Object.assign(retryable('busy'), { retryAfterMs: 120_000 });
      },
      { clock, maxDelayMs: 15_000 },
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({ message: 'busy', retryAfterMs: 120_000 });
    expect(calls).toBe(1);
    expect(clock.sleeps).toEqual([]);
  });

  it('stops a backoff sleep when the signal aborts, rejecting with its reason', async () => {
    const clock = new ObservedClock(false);
    const controller = new AbortController();
    let calls = 0;
    const outcome = withRetry(
      async () => {
        calls++;
        throw retryable('down');
      },
      { clock, signal: controller.signal, baseDelayMs: 1000 },
    );
    await clock.nextSleep();
    const reason = new Error('shutting down');
    controller.abort(reason);
    await expect(outcome).rejects.toBe(reason);
    expect(calls).toBe(1);
    expect(clock.pending()).toBe(0);
  });

  it('does not call fn when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort(new Error('already'));
    let calls = 0;
    await expect(
      withRetry(
        async () => {
          calls++;
        },
        { signal: controller.signal },
      ),
    ).rejects.toThrow('already');
    expect(calls).toBe(0);
  });
});

describe('sleep', () => {
  it('resolves when the clock reaches the delay', async () => {
    const clock = new ManualClock();
    let done = false;
    const slept = sleep(500, clock).then(() => {
      done = true;
    });
    await clock.advance(499);
    expect(done).toBe(false);
    await clock.advance(1);
    await slept;
    expect(done).toBe(true);
  });
});
