import { describe, expect, it } from 'vitest';
import { createLogger, resolveLogFormat } from '../../src/logging/logger.js';
import { formatPrettyLine } from '../../src/logging/pretty.js';

function capture() {
  const lines: string[] = [];
  return { lines, destination: { write: (line: string) => void lines.push(line) } };
}

const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

describe('LOG_FORMAT', () => {
  it('is pretty on a terminal and JSON otherwise, unless set', () => {
    expect(resolveLogFormat(undefined, true)).toBe('pretty');
    expect(resolveLogFormat(undefined, false)).toBe('json');
    expect(resolveLogFormat('json', true)).toBe('json');
    expect(resolveLogFormat('pretty', false)).toBe('pretty');
  });

  it('json: one object per line, time as an ISO instant with milliseconds, credentials redacted', async () => {
    const { lines, destination } = capture();
    const logger = await createLogger({ level: 'info', format: 'json', stdoutIsTTY: true, destination });
    logger.info({ job_id: 'report', headers: { authorization: 'Bearer secret-token' } }, 'job ran');
    logger.debug('not written at info');
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(line['time']).toMatch(ISO_MS);
    expect(Math.abs(Date.parse(String(line['time'])) - Date.now())).toBeLessThan(60_000);
    expect(line).toMatchObject({ level: 30, msg: 'job ran', job_id: 'report', service: 'chronos' });
    expect(lines[0]).not.toContain('secret-token');
  });

  it('pretty: one readable line per event, fields as key=value, credentials redacted', async () => {
    const { lines, destination } = capture();
    const logger = await createLogger({ level: 'info', format: 'pretty', stdoutIsTTY: false, destination });
    logger.info(
      {
        run_id: 'r-1',
        job_id: 'report',
        status: 'succeeded',
        fire_at: '2026-01-05T10:00:00.000Z',
        headers: { authorization: 'Bearer secret-token' },
      },
      'job ran',
    );
    logger.warn({ job_id: 'report', err: new TypeError('bad thing') }, 'arming failed');
    expect(lines).toHaveLength(2);
    expect(lines.every((l) => l.endsWith('\n') && l.indexOf('\n') === l.length - 1)).toBe(true);
    expect(lines[0]).toMatch(
      /^\d{2}:\d{2}:\d{2}\.\d{3}Z INFO {2}job ran job_id=report fire_at=2026-01-05T10:00:00\.000Z status=succeeded run_id=r-1 headers=\{"authorization":"\[redacted\]"\}\n$/,
    );
    expect(lines[1]).toMatch(/^\S+ WARN {2}arming failed job_id=report err="TypeError: bad thing"\n$/);
    expect(lines.join('')).not.toContain('secret-token');
    expect(lines.join('')).not.toContain('"level"');
  });
});

describe('formatPrettyLine', () => {
  it('quotes strings with spaces, writes objects as JSON, keeps the key fields first', () => {
    const line = JSON.stringify({
      level: 50,
      time: '2026-01-05T10:00:00.123Z',
      pid: 1,
      service: 'chronos',
      msg: 'run could not start',
      extra: { a: [1, 2] },
      error: 'spawn ENOENT: no such file',
      job_id: 'j',
      count: 3,
    });
    expect(formatPrettyLine(line)).toBe(
      '10:00:00.123Z ERROR run could not start job_id=j error="spawn ENOENT: no such file" extra={"a":[1,2]} count=3',
    );
  });

  it('passes a line that is not a log object through unchanged', () => {
    expect(formatPrettyLine('plain text\n')).toBe('plain text');
    expect(formatPrettyLine('[1,2]')).toBe('[1,2]');
  });

  it('bounds a very long value', () => {
    const line = formatPrettyLine(JSON.stringify({ level: 30, msg: 'm', output: 'x'.repeat(5000) }));
    expect(line.length).toBeLessThan(400);
    expect(line).toMatch(/output=x+…$/);
  });
});
