/**
 * Every piece of scheduling code takes a Clock instead of reading Date.now() or calling setTimeout,
 * so tests drive time explicitly (test/helpers/manual-clock.ts) instead of sleeping.
 */
export interface TimerHandle {
  /** Keep the process alive while this timer is pending (Node's ref/unref). */
  unref(): void;
}

export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};
