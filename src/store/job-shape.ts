/** Shared by the stores that read jobs back from storage (file, PostgreSQL): what makes a stored job readable. */

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const INSTANTS = ['created_at', 'updated_at'] as const;
const OPTIONAL_INSTANTS = ['next_run_at', 'retry_at', 'last_run_at'] as const;

/**
 * The fields every loop over jobs and every API view relies on, checked cheaply: a hand-edited file with an
 * instant that is not a number would otherwise throw a RangeError (toISOString) in the middle of a list.
 */
export function jobShapeProblem(job: Record<string, unknown>): string | null {
  for (const field of ['schedule', 'timezone', 'state'] as const) {
    if (typeof job[field] !== 'string') return `${field} must be a string`;
  }
  if (typeof job['enabled'] !== 'boolean') return 'enabled must be true or false';
  const target = job['target'];
  if (!isRecord(target) || typeof target['type'] !== 'string') return 'target must be an object with a type';
  for (const field of ['repeat', 'misfire'] as const) {
    if (!isRecord(job[field])) return `${field} must be an object`;
  }
  const isInstant = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && Math.abs(v) <= 8.64e15;
  for (const field of INSTANTS) if (!isInstant(job[field])) return `${field} must be an instant (epoch ms)`;
  for (const field of OPTIONAL_INSTANTS) {
    if (job[field] !== null && !isInstant(job[field]))
      return `${field} must be an instant (epoch ms) or null`;
  }
  return null;
}
