import * as z from 'zod/mini';
import en from 'zod/v4/locales/en.js';
import { ChronosError } from './errors.js';

// zod/mini ships without messages; load only the English locale (the full `zod` entry costs
// ~40 ms of cold start, see docs/performance.md).
z.config(en());

export interface FieldProblem {
  /** Dotted path of the offending field, e.g. `target.url`; empty for the whole value. */
  path: string;
  message: string;
}

export function toFieldProblems(error: z.core.$ZodError): FieldProblem[] {
  return error.issues.map((issue) => ({
    path: issue.path.map(String).join('.'),
    message: issue.message,
  }));
}

/** Parse or throw `validation_failed` with every field problem listed. */
export function parseOrThrow<S extends z.core.$ZodType>(
  schema: S,
  value: unknown,
  what: string,
): z.output<S> {
  const result = z.safeParse(schema, value);
  if (result.success) return result.data;
  const problems = toFieldProblems(result.error);
  const summary = problems.map((p) => (p.path ? `${p.path}: ${p.message}` : p.message)).join('; ');
  throw new ChronosError('validation_failed', `invalid ${what}: ${summary}`, { problems });
}
