// Bounds on what a job may hold. Far above what a real job needs, far below what breaks the process:
// a value nested a few thousand levels deep overflows the stack of structuredClone and JSON.stringify,
// and one such job used to stop listing, reconcile and start-up for every job. Plain code, no zod: the
// store checks every job it reads against these on the fire path too (docs/operations.md).

export const JOB_LIMITS = {
  /** Nesting levels of objects and arrays in an http `body` or a handler `payload`. */
  jsonDepth: 64,
  /** An http `body` or handler `payload`, JSON-encoded, in bytes. */
  jsonBytes: 32 * 1024,
  /** A URL, a header value, an argv item, an env value, a cwd. */
  textChars: 8 * 1024,
  /** A header or env name, a handler name, a schedule, a time zone. */
  nameChars: 256,
  /** Entries of `headers` or `env`. */
  mapEntries: 64,
  /** Items of `argv`. */
  argvItems: 256,
  /** Alert destinations of one job (`notify.destinations`). */
  notifyDestinations: 8,
} as const;

export interface LimitProblem {
  /** Dotted path below the job, e.g. `target.body`. */
  path: string;
  message: string;
}

/**
 * Whether `value` nests objects/arrays deeper than `max` levels. Iterative, so it cannot itself overflow
 * the stack on the very values it exists to refuse; it stops at the first branch that is too deep.
 */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!;
    if (typeof current !== 'object' || current === null) continue;
    if (depth + 1 > max) return true;
    for (const child of Object.values(current)) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
  return false;
}

/** The problem with a free-form JSON value (`body`, `payload`), or null. Depth first: only then is encoding safe. */
export function jsonValueProblem(value: unknown): string | null {
  if (value === undefined) return null;
  if (nestsDeeperThan(value, JOB_LIMITS.jsonDepth)) {
    return `is nested deeper than ${JOB_LIMITS.jsonDepth} levels (the limit is ${JOB_LIMITS.jsonDepth})`;
  }
  const bytes = Buffer.byteLength(typeof value === 'string' ? value : (JSON.stringify(value) ?? ''), 'utf8');
  if (bytes > JOB_LIMITS.jsonBytes) {
    return `is ${bytes} bytes once encoded; the limit is ${JOB_LIMITS.jsonBytes} bytes`;
  }
  return null;
}

export function textProblem(value: unknown, max: number): string | null {
  return typeof value === 'string' && value.length > max
    ? `is ${value.length} characters long; the limit is ${max}`
    : null;
}

export function entriesProblem(map: unknown, what: string): string | null {
  if (typeof map !== 'object' || map === null) return null;
  const count = Object.keys(map).length;
  return count > JOB_LIMITS.mapEntries ? `has ${count} ${what}; the limit is ${JOB_LIMITS.mapEntries}` : null;
}

/**
 * Every bound a stored job breaks. Used by the stores, on write (a job over the limits is never stored)
 * and on read (one stored before the limits existed is reported as damaged instead of being served).
 * Reads untrusted data: any field may be missing or of the wrong type.
 */
export function jobLimitProblems(job: {
  schedule?: unknown;
  timezone?: unknown;
  target?: unknown;
}): LimitProblem[] {
  const problems: LimitProblem[] = [];
  const add = (path: string, problem: string | null) => {
    if (problem !== null) problems.push({ path, message: problem });
  };
  add('schedule', textProblem(job.schedule, JOB_LIMITS.nameChars));
  add('timezone', textProblem(job.timezone, JOB_LIMITS.nameChars));
  const target = job.target as unknown as Record<string, unknown> | undefined;
  if (typeof target !== 'object' || target === null) return problems;
  add('target.url', textProblem(target['url'], JOB_LIMITS.textChars));
  add('target.body', jsonValueProblem(target['body']));
  add('target.payload', jsonValueProblem(target['payload']));
  add('target.name', textProblem(target['name'], JOB_LIMITS.nameChars));
  add('target.cwd', textProblem(target['cwd'], JOB_LIMITS.textChars));
  for (const field of ['headers', 'env'] as const) {
    const map = target[field];
    if (typeof map !== 'object' || map === null) continue;
    add(`target.${field}`, entriesProblem(map, field === 'headers' ? 'headers' : 'variables'));
    for (const [key, value] of Object.entries(map)) {
      const nameProblem = textProblem(key, JOB_LIMITS.nameChars);
      if (nameProblem !== null) add(`target.${field}`, `has a name that ${nameProblem}`);
      add(`target.${field}.${key.slice(0, 40)}`, textProblem(value, JOB_LIMITS.textChars));
    }
  }
  const notify = (job as { notify?: unknown }).notify as Record<string, unknown> | undefined;
  const destinations = typeof notify === 'object' && notify !== null ? notify['destinations'] : undefined;
  if (Array.isArray(destinations)) {
    if (destinations.length > JOB_LIMITS.notifyDestinations) {
      add(
        'notify.destinations',
        `has ${destinations.length} destinations; the limit is ${JOB_LIMITS.notifyDestinations}`,
      );
    }
    for (const [index, destination] of destinations.entries()) {
      const url = typeof destination === 'object' && destination !== null ? destination.url : undefined;
      add(`notify.destinations.${index}.url`, textProblem(url, JOB_LIMITS.textChars));
    }
  }
  const argv = target['argv'];
  if (Array.isArray(argv)) {
    if (argv.length > JOB_LIMITS.argvItems) {
      add('target.argv', `has ${argv.length} items; the limit is ${JOB_LIMITS.argvItems}`);
    }
    for (const [index, item] of argv.entries()) {
      add(`target.argv.${index}`, textProblem(item, JOB_LIMITS.textChars));
    }
  }
  return problems;
}
