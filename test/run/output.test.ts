import { describe, expect, it } from 'vitest';
import { boundText, HeadCapture, HeadTailCapture } from '../../src/run/output.js';

describe('output bounds', () => {
  it('HeadCapture keeps the first bytes and reports whether to keep reading', () => {
    const capture = new HeadCapture(10);
    expect(capture.push(Buffer.from('hello '))).toBe(true);
    expect(capture.push(Buffer.from('world and more'))).toBe(false);
    expect(capture.text()).toBe('hello worl…[truncated]');
    expect(new HeadCapture(10).text()).toBeNull();
  });

  it('HeadCapture exactly at the bound is not truncated', () => {
    const capture = new HeadCapture(5);
    expect(capture.push(Buffer.from('12345'))).toBe(true);
    expect(capture.text()).toBe('12345');
  });

  it('never splits a UTF-8 character at a cut', () => {
    const capture = new HeadCapture(5);
    capture.push(Buffer.from('aaaa€€'));
    expect(capture.text()).toBe('aaaa…[truncated]');
    expect(boundText('ééé', 3)).toBe('é…[truncated]');
    const ht = new HeadTailCapture(8);
    ht.push(Buffer.from('€€€€€€€€€€'));
    expect(ht.text()).not.toContain('\uFFFD');
  });

  it('HeadTailCapture keeps a quarter of head and the tail, counting what was dropped', () => {
    const capture = new HeadTailCapture(40);
    for (let i = 0; i < 100; i++) capture.push(Buffer.from(`${String(i).padStart(3, '0')}\n`));
    expect(capture.totalBytes).toBe(400);
    const text = capture.text()!;
    expect(text.startsWith('000\n001\n')).toBe(true);
    expect(text.endsWith('098\n099\n')).toBe(true);
    expect(text).toContain('…[truncated 360 bytes]…');
  });

  it('HeadTailCapture under the bound returns everything', () => {
    const capture = new HeadTailCapture(100);
    capture.push(Buffer.from('a'));
    capture.push(Buffer.from('b'.repeat(50)));
    expect(capture.text()).toBe(`a${'b'.repeat(50)}`);
    expect(new HeadTailCapture(100).text()).toBeNull();
  });

  it('HeadTailCapture stays bounded with one huge chunk', () => {
    const capture = new HeadTailCapture(100);
    capture.push(Buffer.alloc(10_000_000, 'z'));
    capture.push(Buffer.from('END'));
    const text = capture.text()!;
    expect(text.endsWith('zEND')).toBe(true);
    expect(Buffer.byteLength(text)).toBeLessThan(200);
  });
});
