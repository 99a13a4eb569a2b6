import type { JobView, RunView } from '../jobs/view.js';
import { UsageError } from './common.js';

/** The fields of a job spec an edit may change (docs/jobs.md); the rest of a job is its state. */
export const EDITABLE_FIELDS = [
  'name',
  'schedule',
  'timezone',
  'target',
  'enabled',
  'repeat',
  'retry',
  'concurrency',
  'misfire',
  'timeout_seconds',
  'notify',
] as const;
type EditableField = (typeof EDITABLE_FIELDS)[number];

/** Fields of a job that are not in its spec, and what changes them instead. */
const NOT_EDITABLE: Record<string, string> = {
  id: 'a job id cannot be changed (create a new job and delete this one)',
  state: 'use "chronos jobs pause" or "chronos jobs resume"',
  armed: 'Chronos arms a job itself',
  source: 'a job declared in the jobs file is edited there',
};

export interface SetAssignment {
  path: string[];
  value: unknown;
}

/**
 * `path=value`: the path is dotted names (or array indexes) into the job spec; the value is JSON when it
 * parses as JSON (`3`, `true`, `null`, `{"type":"http",…}`, `"123"`), a plain string otherwise.
 */
export function parseAssignment(text: string): SetAssignment {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new UsageError(`--set takes path=value (e.g. --set schedule="every 5m"), got "${text}"`);
  const rawPath = text.slice(0, eq);
  const raw = text.slice(eq + 1);
  const path = rawPath.split('.');
  if (path.some((p) => !/^[A-Za-z0-9_-]+$/.test(p)))
    throw new UsageError(
      `--set ${rawPath}: a path is field names joined by dots (e.g. target.url, retry.max_attempts)`,
    );
  const top = path[0]!;
  if (!(EDITABLE_FIELDS as readonly string[]).includes(top)) {
    const why = NOT_EDITABLE[top];
    throw new UsageError(
      why
        ? `--set ${rawPath}: "${top}" cannot be set: ${why}`
        : `--set ${rawPath}: a job spec has no field "${top}" (fields: ${EDITABLE_FIELDS.join(', ')})`,
    );
  }
  let value: unknown = raw;
  try {
    value = JSON.parse(raw);
  } catch {
    // Not JSON: the text itself (every 5m, https://…).
  }
  return { path, value };
}

/** The editable spec of a job as the API shows it (the view carries state beside the spec). */
export function specOfView(job: JobView): Record<EditableField, unknown> {
  return {
    name: job.name,
    schedule: job.schedule,
    timezone: job.timezone,
    target: job.target,
    enabled: job.enabled,
    repeat: { times: job.repeat.times },
    retry: job.retry,
    concurrency: job.concurrency,
    misfire: job.misfire,
    timeout_seconds: job.timeout_seconds,
    notify: job.notify,
  };
}

/**
 * Applies the assignments to a copy of `spec` and returns the PATCH body: each top-level field touched,
 * whole (the API replaces a field such as `target` as a unit). A path through a value that is not an
 * object (schedule.x, where schedule is a string) is a usage error naming both.
 */
export function patchFor(
  spec: Record<EditableField, unknown>,
  assignments: SetAssignment[],
): Record<string, unknown> {
  const edited = structuredClone(spec) as Record<string, unknown>;
  const touched = new Set<string>();
  for (const { path, value } of assignments) {
    let node: Record<string, unknown> | unknown[] = edited;
    for (let i = 0; i < path.length - 1; i++) {
      const key = path[i]!;
      const next: unknown = Array.isArray(node) ? node[arrayIndex(node, key, path, i)] : node[key];
      if (next === undefined || next === null) {
        const created = {};
        setIn(node, key, created, path, i);
        node = created;
      } else if (typeof next === 'object') {
        node = next as Record<string, unknown> | unknown[];
      } else {
        throw new UsageError(
          `--set ${path.join('.')}: ${path.slice(0, i + 1).join('.')} is ${JSON.stringify(next)}, not an object with fields`,
        );
      }
    }
    setIn(node, path[path.length - 1]!, value, path, path.length - 1);
    touched.add(path[0]!);
  }
  return Object.fromEntries([...touched].map((field) => [field, edited[field]]));
}

function arrayIndex(array: unknown[], key: string, path: string[], i: number): number {
  if (!/^\d+$/.test(key) || Number(key) > array.length)
    throw new UsageError(
      `--set ${path.join('.')}: ${path.slice(0, i).join('.')} is a list of ${array.length}; use an index from 0 to ${array.length}`,
    );
  return Number(key);
}

function setIn(
  node: Record<string, unknown> | unknown[],
  key: string,
  value: unknown,
  path: string[],
  i: number,
): void {
  if (Array.isArray(node)) node[arrayIndex(node, key, path, i)] = value;
  else node[key] = value;
}

/** `chronos jobs logs`: each run's header line, then what it printed (newest last). */
export function runLogs(runs: RunView[]): string {
  if (runs.length === 0) return 'no runs yet';
  const blocks = runs.map((run) => {
    const duration = run.duration_ms === null ? '' : `  ${run.duration_ms} ms`;
    const header = `=== ${run.fire_at}  ${run.trigger}  ${run.status}${duration}  run ${run.run_id}`;
    const body: string[] = [];
    if (run.output !== null && run.output !== '') body.push(run.output.replace(/\n$/, ''));
    else body.push(run.status === 'running' ? '(running: no output yet)' : '(no output)');
    if (run.error) body.push(`error: ${run.error}`);
    return [header, ...body].join('\n');
  });
  return blocks.join('\n\n');
}
