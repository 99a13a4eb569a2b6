import { describe, expect, it } from 'vitest';
import { ChronosError } from '../../src/errors.js';
import { buildJob } from '../../src/jobs/build.js';
import { JOB_LIMITS, jobLimitProblems, nestsDeeperThan } from '../../src/jobs/limits.js';
import type { Job, JobSpecInput } from '../../src/jobs/model.js';
import { nested } from '../helpers/nested.js';

const ctx = {
  now: Date.parse('2026-01-01T00:00:00Z'),
  defaultTimezone: 'UTC',
  allowCommands: true,
  source: 'api' as const,
};
const http = { type: 'http' as const, url: 'http://127.0.0.1:9/hook' };

function problems(spec: Partial<JobSpecInput>): Array<{ path: string; message: string }> {
  try {
    buildJob({ id: 'j', schedule: 'every 1m', target: http, ...spec } as JobSpecInput, ctx);
  } catch (err) {
    if (err instanceof ChronosError && err.code === 'validation_failed') {
      return err.details?.problems as Array<{ path: string; message: string }>;
    }
    throw err;
  }
  return [];
}

describe('nestsDeeperThan', () => {
  it('counts object and array levels, without recursion even 100,000 levels deep', () => {
    expect(nestsDeeperThan(nested(3), 3)).toBe(false);
    expect(nestsDeeperThan(nested(4), 3)).toBe(true);
    expect(nestsDeeperThan('text', 0)).toBe(false);
    expect(nestsDeeperThan({}, 0)).toBe(true);
    expect(nestsDeeperThan(nested(100_000), JOB_LIMITS.jsonDepth)).toBe(true);
  });
});

describe('job spec bounds', () => {
  it('refuses a body nested 2,000 levels deep, naming the field and the limit', () => {
    const found = problems({ target: { ...http, body: nested(2_000) } });
    expect(found).toEqual([
      { path: 'target.body', message: expect.stringContaining(`${JOB_LIMITS.jsonDepth}`) },
    ]);
  });

  it('accepts a body exactly at the depth limit and refuses one level more', () => {
    expect(problems({ target: { ...http, body: nested(JOB_LIMITS.jsonDepth) } })).toEqual([]);
    expect(problems({ target: { ...http, body: nested(JOB_LIMITS.jsonDepth + 1) } })).toHaveLength(1);
  });

  it('bounds the encoded size of a body and of a handler payload', () => {
    const big = 'x'.repeat(JOB_LIMITS.jsonBytes + 1);
    expect(problems({ target: { ...http, body: big } })).toEqual([
      { path: 'target.body', message: expect.stringContaining(`${JOB_LIMITS.jsonBytes} bytes`) },
    ]);
    expect(problems({ target: { type: 'handler', name: 'h', payload: { big } } })).toEqual([
      { path: 'target.payload', message: expect.stringContaining('limit') },
    ]);
    expect(problems({ target: { type: 'handler', name: 'h', payload: nested(5_000) } })[0]?.path).toBe(
      'target.payload',
    );
  });

  it('bounds headers, argv, env, url, schedule and names', () => {
    const many = Object.fromEntries(
      Array.from({ length: JOB_LIMITS.mapEntries + 1 }, (_, i) => [`h${i}`, 'v']),
    );
    expect(problems({ target: { ...http, headers: many } }).map((p) => p.path)).toEqual(['target.headers']);
    expect(
      problems({ target: { ...http, headers: { x: 'v'.repeat(JOB_LIMITS.textChars + 1) } } }).map(
        (p) => p.path,
      ),
    ).toEqual(['target.headers.x']);
    const argv = Array.from({ length: JOB_LIMITS.argvItems + 1 }, () => 'a');
    expect(problems({ target: { type: 'command', argv } }).map((p) => p.path)).toEqual(['target.argv']);
    expect(
      problems({ target: { type: 'command', argv: ['a', 'b'.repeat(JOB_LIMITS.textChars + 1)] } })[0]?.path,
    ).toBe('target.argv.1');
    expect(problems({ target: { type: 'command', argv: ['a'], env: many } })[0]?.path).toBe('target.env');
    expect(
      problems({ target: { ...http, url: `http://h/${'p'.repeat(JOB_LIMITS.textChars)}` } })[0]?.path,
    ).toBe('target.url');
    expect(problems({ schedule: 'x'.repeat(JOB_LIMITS.nameChars + 1) })[0]?.path).toBe('schedule');
  });

  it('keeps room for real jobs: a 40-level body with 60 headers and a 200-item argv', () => {
    const headers = Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`x-h${i}`, 'v'.repeat(1000)]));
    expect(problems({ target: { ...http, headers, body: nested(40) } })).toEqual([]);
    expect(problems({ target: { type: 'command', argv: Array.from({ length: 200 }, () => 'arg') } })).toEqual(
      [],
    );
  });
});

describe('jobLimitProblems (stored jobs)', () => {
  it('finds a poisoned body in a stored job and tolerates missing fields', () => {
    const job = buildJob({ id: 'j', schedule: 'every 1m', target: http }, ctx);
    expect(jobLimitProblems(job)).toEqual([]);
    const poisoned = { ...job, target: { ...job.target, body: nested(2_000) } } as Job;
    expect(jobLimitProblems(poisoned)).toEqual([
      { path: 'target.body', message: expect.stringContaining('deeper') },
    ]);
    expect(jobLimitProblems({ ...job, target: undefined } as unknown as Job)).toEqual([]);
  });
});
