import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ChronosError, errorMessage } from '../src/errors.js';
import { STATUS_BY_CODE } from '../src/http/errors.js';

/** The rows of the "## Error codes" table in docs/operations.md: code and status. */
function documentedCodes(): Map<string, number> {
  const doc = readFileSync(new URL('../docs/operations.md', import.meta.url), 'utf8');
  const section = doc.split('\n## Error codes\n')[1]?.split('\n## ')[0] ?? '';
  const rows = new Map<string, number>();
  for (const match of section.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \|/gm)) {
    expect(rows.has(match[1]!), `${match[1]} is listed twice`).toBe(false);
    rows.set(match[1]!, Number(match[2]));
  }
  return rows;
}

describe('error codes', () => {
  it('docs/operations.md lists exactly the ErrorCode union, each with the status the handler sends', () => {
    const documented = documentedCodes();
    expect(documented.size).toBeGreaterThan(0);
    // STATUS_BY_CODE is a Record<ErrorCode, number>: the compiler holds its keys to the union.
    expect(Object.fromEntries(documented)).toEqual(STATUS_BY_CODE);
  });
});

describe('errorMessage', () => {
  it("gives an Error's message and anything else as a string", () => {
    expect(errorMessage(new ChronosError('internal', 'boom'))).toBe('boom');
    expect(errorMessage(new TypeError('bad type'))).toBe('bad type');
    expect(errorMessage('plain string')).toBe('plain string');
    expect(errorMessage(42)).toBe('42');
    expect(errorMessage(undefined)).toBe('undefined');
  });
});
