import { describe, expect, it } from 'vitest';
import { ChronosError, isChronosError } from '../../src/errors.js';
import { dedupKey, formatFireAt, NasError, parseFireAt } from '../../src/nas/nas.js';

describe('formatFireAt', () => {
  it('writes a whole second without milliseconds and with an explicit Z offset', () => {
    expect(formatFireAt(Date.parse('2026-03-08T07:00:00Z'))).toBe('2026-03-08T07:00:00Z');
  });

  it('normalises an instant given with another offset to UTC', () => {
    expect(formatFireAt(Date.parse('2026-03-08T02:00:00-05:00'))).toBe('2026-03-08T07:00:00Z');
  });

  it('keeps milliseconds when the instant has them', () => {
    expect(formatFireAt(Date.parse('2026-03-08T07:00:00.250Z'))).toBe('2026-03-08T07:00:00.250Z');
  });

  it('builds the dedup key from the exact fire_at string', () => {
    expect(dedupKey('nightly', Date.parse('2026-03-08T07:00:00Z'))).toBe('nightly:2026-03-08T07:00:00Z');
  });
});

describe('parseFireAt', () => {
  const utc7 = Date.parse('2026-03-08T07:00:00Z');

  it.each([
    ['2026-03-08T07:00:00Z', utc7],
    ['2026-03-08T02:00:00-05:00', utc7],
    ['2026-03-08T12:30:00+05:30', utc7],
    ['2026-03-08T12:30:00+0530', utc7],
    ['2026-03-08T07:00Z', utc7],
    ['2026-03-08T07:00:00.123456Z', utc7 + 123],
    ['2026-03-08T07:00:00.5+00:00', utc7 + 500],
  ])('reads %s as an instant', (raw, expected) => {
    expect(parseFireAt(raw)).toBe(expected);
  });

  it.each([
    '2026-03-08T07:00:00', // naive: would be read in the server's zone
    '2026-03-08',
    'tomorrow',
    'Sun, 08 Mar 2026 07:00:00 GMT',
    '2026-02-31T07:00:00Z',
    '2026-03-08T24:00:00Z',
    '2026-13-08T07:00:00Z',
    '2026-03-08T07:00:00+25:00',
    '',
  ])('rejects %j', (raw) => {
    expect(parseFireAt(raw)).toBeUndefined();
  });
});

describe('NasError', () => {
  it('is a ChronosError carrying status and retryable, also in details', () => {
    const err = new NasError('nas_rejected', 'NAS list: replied 503', {
      status: 503,
      retryable: true,
      retryAfterMs: 2000,
    });
    expect(err).toBeInstanceOf(ChronosError);
    expect(isChronosError(err, 'nas_rejected')).toBe(true);
    expect(err.status).toBe(503);
    expect(err.retryable).toBe(true);
    expect(err.retryAfterMs).toBe(2000);
    expect(err.details).toMatchObject({ status: 503, retryable: true });
  });
});
