import * as z from 'zod/mini';
import en from 'zod/v4/locales/en.js';
import { ChronosError, errorMessage } from './errors.js';

// zod/mini ships without messages; load only the English locale (the full `zod` entry costs
// ~40 ms of cold start, see docs/performance.md).
z.config(en());

export interface FieldProblem {
  /** Dotted path of the offending field, e.g. `target.url`; empty for the whole value. */
  path: string;
  message: string;
}

interface SchemaDef {
  type: string;
  shape?: Record<string, z.core.$ZodType>;
  innerType?: z.core.$ZodType;
  in?: z.core.$ZodType;
  options?: z.core.$ZodType[];
  discriminator?: string;
  element?: z.core.$ZodType;
  valueType?: z.core.$ZodType;
}

const defOf = (schema: z.core.$ZodType): SchemaDef =>
  (schema as unknown as { _zod: { def: SchemaDef } })._zod.def;

/**
 * The keys an object schema accepts at `path` of `input`, or undefined when the path leads elsewhere. A
 * discriminated union (a job's target) is resolved by the input's discriminator, so a typo in an http target
 * is compared with the http target's keys.
 */
function keysAt(schema: z.core.$ZodType, path: readonly PropertyKey[], input: unknown): string[] | undefined {
  let current: z.core.$ZodType | undefined = schema;
  let value = input;
  let depth = 0;
  while (current) {
    const def = defOf(current);
    if (def.type === 'optional' || def.type === 'default' || def.type === 'nullable') current = def.innerType;
    else if (def.type === 'pipe') current = def.in;
    else if (def.type === 'union' && def.discriminator !== undefined) {
      const tag = (value as Record<string, unknown> | null)?.[def.discriminator];
      current = def.options?.find((option) => {
        const literal = defOf(option).shape?.[def.discriminator!];
        return literal !== undefined && (defOf(literal) as { values?: unknown[] }).values?.includes(tag);
      });
    } else if (depth === path.length) return def.type === 'object' ? Object.keys(def.shape ?? {}) : undefined;
    else {
      const key = path[depth++]!;
      value = (value as Record<PropertyKey, unknown> | null)?.[key];
      if (def.type === 'object') current = def.shape?.[String(key)];
      else if (def.type === 'array') current = def.element;
      else if (def.type === 'record') current = def.valueType;
      else return undefined;
    }
  }
  return undefined;
}

/** Optimal string alignment distance, bounded: enough to catch a dropped, doubled or swapped letter. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/** The known key a misspelt one most likely meant, if any is close enough to be worth suggesting. */
export function closestKey(unknown: string, known: readonly string[]): string | undefined {
  const lower = unknown.toLowerCase();
  let best: { key: string; distance: number } | undefined;
  for (const key of known) {
    const distance = editDistance(lower, key.toLowerCase());
    const limit = key.length <= 4 ? 1 : 2;
    if (distance <= limit && (best === undefined || distance < best.distance)) best = { key, distance };
  }
  return best?.key;
}

/** `unknown key "shedule": did you mean "schedule"?`, or the keys that are accepted there. */
export function unknownKeyMessage(key: string, known: readonly string[] | undefined): string {
  const suggestion = known && closestKey(key, known);
  if (suggestion) return `unknown key "${key}": did you mean "${suggestion}"?`;
  return known ? `unknown key "${key}" (accepted here: ${known.join(', ')})` : `unknown key "${key}"`;
}

/**
 * Field problems in words a person acts on. With the schema and the input, an unknown key gets a "did you
 * mean", and the "is required" that a misspelt required key causes is not reported a second time.
 */
export function toFieldProblems(
  error: z.core.$ZodError,
  schema?: z.core.$ZodType,
  input?: unknown,
): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const explained = new Set<string>();
  for (const issue of error.issues) {
    if (issue.code !== 'unrecognized_keys') continue;
    const known = schema ? keysAt(schema, issue.path, input) : undefined;
    const at = issue.path.map(String).join('.');
    for (const key of issue.keys) {
      const suggestion = known && closestKey(key, known);
      if (suggestion) explained.add(at === '' ? suggestion : `${at}.${suggestion}`);
      problems.push({ path: at, message: unknownKeyMessage(key, known) });
    }
  }
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') continue;
    const path = issue.path.map(String).join('.');
    const missing = issue.code === 'invalid_type' && / received undefined$/.test(issue.message);
    if (missing && explained.has(path)) continue;
    problems.push({ path, message: missing ? `is required (${issue.expected})` : issue.message });
  }
  return problems;
}

const endsEarly = (prefix: string): boolean => {
  try {
    JSON.parse(prefix);
    return true;
  } catch (err) {
    return /end of JSON input|Unterminated/i.test(errorMessage(err));
  }
};

/**
 * Node 20 names the offending token but not always its offset. A prefix of the text that only "ends too
 * early" holds no mistake yet, and that stays true up to the mistake: the first prefix failing otherwise
 * ends on it (found by bisection, a few parses of at most the body limit).
 */
function firstBadOffset(text: string): number {
  if (endsEarly(text)) return text.length;
  let good = 0;
  let bad = text.length;
  while (bad - good > 1) {
    const middle = Math.floor((good + bad) / 2);
    if (endsEarly(text.slice(0, middle))) good = middle;
    else bad = middle;
  }
  return bad - 1;
}

/** Where JSON.parse stopped, as `line 3, column 12: <reason>` (Node 20 gives only an offset). */
export function describeJsonError(text: string, err: unknown): string {
  const message = errorMessage(err);
  const offset = /at position (\d+)/.exec(message);
  const position = offset ? Number(offset[1]) : firstBadOffset(text);
  const before = text.slice(0, position);
  const line = before.split('\n').length;
  const column = position - before.lastIndexOf('\n');
  const reason = message
    .replace(/\s*(?:in JSON )?at position \d+.*$/s, '')
    .replace(/^(Unexpected token .*?), ".*" is not valid JSON$/s, '$1');
  return `line ${line}, column ${column}: ${reason}`;
}

/** Parse or throw `validation_failed` with every field problem listed. */
export function parseOrThrow<S extends z.core.$ZodType>(
  schema: S,
  value: unknown,
  what: string,
): z.output<S> {
  const result = z.safeParse(schema, value);
  if (result.success) return result.data;
  const problems = toFieldProblems(result.error, schema, value);
  const summary = problems.map((p) => (p.path ? `${p.path}: ${p.message}` : p.message)).join('; ');
  throw new ChronosError('validation_failed', `invalid ${what}: ${summary}`, { problems });
}
