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

/**
 * The one way Chronos writes an instant for people and its own API: ISO-8601 UTC with milliseconds
 * (`2026-03-08T07:00:00.000Z`), in logs, error messages, CLI output and admin API fields alike, so one
 * occurrence reads the same everywhere. Only the wire to NAS has its own form (formatFireAt in
 * src/nas/nas.ts, see docs/contract.md).
 */
export function formatInstant(ms: number): string;
export function formatInstant(ms: number | null): string | null;
export function formatInstant(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}
