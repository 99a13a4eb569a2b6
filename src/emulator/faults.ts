import type { FaultSwitches } from './types.js';

/** What the junkListItems fault appends to every `list` reply. */
export const JUNK_LIST_ITEMS: readonly unknown[] = Object.freeze([
  42,
  {},
  { job_id: 'junk-a' },
  { job_id: 'junk-b', fire_at: 'not a time' },
]);

/** The switches `strict: true` (`--strict`) turns on. */
export const STRICT_FAULTS: Readonly<Partial<FaultSwitches>> = Object.freeze({
  rememberKeys: true,
  removeRowOnDelivery: true,
  emptyProvisionReply: true,
  listQuirks: true,
  junkListItems: true,
  deliveryAttempts: 4,
});

const BOOLEANS = [
  'duplicateDelivery',
  'rejectAgent',
  'rememberKeys',
  'removeRowOnDelivery',
  'emptyProvisionReply',
  'listQuirks',
  'junkListItems',
] as const;
const COUNTS = ['dropDeliveries', 'provisionFailures', 'removeRowDelayMs'] as const;

/**
 * Every switch off. Setting `earlyMs` calls onEarlyMsChange, because pending arms must be re-timed
 * at once (a switch set from a test takes effect on arms already armed).
 */
export function createFaults(deliveryAttempts: number, onEarlyMsChange: () => void): FaultSwitches {
  let earlyMs = 0;
  return {
    duplicateDelivery: false,
    dropDeliveries: 0,
    get earlyMs() {
      return earlyMs;
    },
    set earlyMs(value: number) {
      earlyMs = value;
      onEarlyMsChange();
    },
    provisionFailures: 0,
    rejectAgent: false,
    rememberKeys: false,
    removeRowOnDelivery: false,
    removeRowDelayMs: 250,
    deliveryAttempts,
    emptyProvisionReply: false,
    listQuirks: false,
    junkListItems: false,
    malformedListJobs: [],
  };
}

/** A plain copy (the getter read, the array copied) for replies and logs. */
export function snapshotFaults(faults: FaultSwitches): FaultSwitches {
  return { ...faults, malformedListJobs: [...faults.malformedListJobs] };
}

/**
 * Merges a JSON patch into the switches. The whole patch is validated before anything changes, so a
 * bad patch changes no switch. Returns what is wrong with it, or undefined.
 */
export function mergeFaults(faults: FaultSwitches, patch: unknown): string | undefined {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch))
    return 'body must be a JSON object';
  const input = patch as Record<string, unknown>;
  for (const name of Object.keys(input)) {
    if (!(name in faults)) return `unknown fault switch: ${name}`;
  }
  for (const name of BOOLEANS) {
    if (name in input && typeof input[name] !== 'boolean') return `${name} must be a boolean`;
  }
  for (const name of COUNTS) {
    const v = input[name];
    if (name in input && !(Number.isInteger(v) && (v as number) >= 0)) {
      return `${name} must be a non-negative integer`;
    }
  }
  if ('deliveryAttempts' in input) {
    const v = input.deliveryAttempts;
    if (!(Number.isInteger(v) && (v as number) >= 1))
      return 'deliveryAttempts must be an integer of at least 1';
  }
  if ('malformedListJobs' in input) {
    const v = input.malformedListJobs;
    if (!Array.isArray(v) || v.some((id) => typeof id !== 'string')) {
      return 'malformedListJobs must be an array of job ids';
    }
  }
  if ('earlyMs' in input && !Number.isFinite(input.earlyMs)) return 'earlyMs must be a number';
  for (const name of BOOLEANS) if (name in input) faults[name] = input[name] as boolean;
  for (const name of COUNTS) if (name in input) faults[name] = input[name] as number;
  if ('deliveryAttempts' in input) faults.deliveryAttempts = input.deliveryAttempts as number;
  if ('malformedListJobs' in input) faults.malformedListJobs = [...(input.malformedListJobs as string[])];
  if ('earlyMs' in input) faults.earlyMs = input.earlyMs as number;
  return undefined;
}
