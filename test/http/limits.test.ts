/*
 * The descriptor-derived connection cap (src/http/limits.ts) and the fixed-window counter behind the fire
 * route's per-address limits (src/fire/guard.ts).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Clock, systemClock, type TimerHandle } from '../../src/clock.js';
import { FixedWindowCounter, REFUSALS_SUMMARY_MSG, REFUSED_MSG, RefusalLog } from '../../src/fire/guard.js';
import { connectionCap, descriptorLimit, MIN_DESCRIPTOR_HEADROOM } from '../../src/http/limits.js';
import { ManualClock } from '../helpers/manual-clock.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chronos-limits-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const limitsText = (soft: string, hard: string) =>
  [
    'Limit                     Soft Limit           Hard Limit           Units     ',
    'Max cpu time              unlimited            unlimited            seconds   ',
    `Max open files            ${soft.padEnd(20)} ${hard.padEnd(20)} files     `,
    'Max locked memory         8388608              8388608              bytes     ',
  ].join('\n');

describe('descriptorLimit', () => {
  it("reads this process's soft limit on Linux", () => {
    if (process.platform !== 'linux') return;
    const limit = descriptorLimit();
    expect(limit).toBeGreaterThan(0);
  });

  it('reads the soft limit, not the hard one', async () => {
    const file = join(dir, 'limits-256');
    await writeFile(file, limitsText('256', '4096'));
    expect(descriptorLimit(file)).toBe(256);
  });

  it('gives undefined for "unlimited" or a missing file', async () => {
    const file = join(dir, 'limits-unlimited');
    await writeFile(file, limitsText('unlimited', 'unlimited'));
    expect(descriptorLimit(file)).toBeUndefined();
    expect(descriptorLimit(join(dir, 'absent'))).toBeUndefined();
  });
});

describe('connectionCap', () => {
  it('keeps a quarter of the limit, and at least MIN_DESCRIPTOR_HEADROOM, for everything else', () => {
    expect(connectionCap(256)).toBe(256 - MIN_DESCRIPTOR_HEADROOM);
    expect(connectionCap(1024)).toBe(768);
    expect(connectionCap(20_000)).toBe(15_000);
    expect(connectionCap(undefined)).toBeUndefined();
  });
});

describe('FixedWindowCounter', () => {
  it('counts per key within a window and starts afresh in the next', async () => {
    const clock = new ManualClock(0);
    const counter = new FixedWindowCounter(clock, 1_000);
    expect([counter.hit('a'), counter.hit('a'), counter.hit('b')]).toEqual([1, 2, 1]);
    expect(counter.remainingMs()).toBe(1_000);
    await clock.advance(400);
    expect(counter.remainingMs()).toBe(600);
    expect(counter.count('a')).toBe(2);
    await clock.advance(600);
    expect(counter.count('a')).toBe(0);
    expect(counter.hit('a')).toBe(1);
  });

  it('past maxKeys, new keys share one overflow count instead of growing the map', () => {
    const counter = new FixedWindowCounter(new ManualClock(0), 1_000, 2);
    counter.hit('a');
    counter.hit('b');
    expect(counter.hit('c')).toBe(1);
    expect(counter.hit('d')).toBe(2);
    expect(counter.count('e')).toBe(2);
    // Keys already tracked keep their own count.
    expect(counter.hit('a')).toBe(2);
  });
});

describe('RefusalLog', () => {
  it('arms a real timer that does not keep the process awake, and writes the summary when closed', () => {
    const handles: TimerHandle[] = [];
    const clock: Clock = {
      ...systemClock,
      setTimeout: (fn, ms) => {
        const handle = systemClock.setTimeout(fn, ms);
        handles.push(handle);
        return handle;
      },
    };
    const lines: Array<[string, Record<string, unknown>]> = [];
    const log = new RefusalLog({ clock, warn: (obj, msg) => void lines.push([msg, obj]) });
    log.record('token_missing', '192.0.2.1');
    log.record('token_missing', '192.0.2.1');
    expect(handles).toHaveLength(1);
    expect((handles[0] as NodeJS.Timeout).hasRef()).toBe(false);
    log.close();
    expect(lines.map(([msg]) => msg)).toEqual([REFUSED_MSG, REFUSALS_SUMMARY_MSG]);
    expect(lines[1]?.[1]).toMatchObject({ refused: 2 });
  });

  it('past maxKeys addresses in an interval, counts the rest together under "*"', async () => {
    const clock = new ManualClock(0);
    const lines: Array<[string, Record<string, unknown>]> = [];
    const log = new RefusalLog({ clock, maxKeys: 2, warn: (obj, msg) => void lines.push([msg, obj]) });
    for (let i = 0; i < 50; i++) log.record('token_missing', `192.0.2.${i}`);
    // Two addresses and the shared "*" bucket each log their first refusal: 3 lines for 50 addresses.
    expect(lines.filter(([msg]) => msg === REFUSED_MSG).map(([, o]) => o['ip'])).toEqual([
      '192.0.2.0',
      '192.0.2.1',
      '*',
    ]);
    await clock.advance(10_000);
    const summary = lines.find(([msg]) => msg === REFUSALS_SUMMARY_MSG)?.[1];
    expect(summary?.['refused']).toBe(50);
    expect(summary?.['by_cause']).toContainEqual({ code: 'token_missing', ip: '*', count: 48 });
  });
});
