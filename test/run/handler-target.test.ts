import { describe, expect, it } from 'vitest';
import { isChronosError } from '../../src/errors.js';
import { createHandlerRegistry, executeHandler } from '../../src/run/targets/handler.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { makeCtx, makeJob, T0 } from './fixtures.js';

describe('handler registry', () => {
  it('registers, looks up and lists handlers; refuses duplicates and empty names', () => {
    const registry = createHandlerRegistry();
    const fn = () => 'x';
    registry.register('b', fn);
    registry.register('a', fn);
    expect(registry.get('a')).toBe(fn);
    expect(registry.get('zzz')).toBeUndefined();
    expect(registry.names()).toEqual(['a', 'b']);
    for (const name of ['a', '']) {
      try {
        registry.register(name, fn);
        expect.unreachable();
      } catch (err) {
        expect(isChronosError(err, 'invalid_config')).toBe(true);
      }
    }
  });
});

describe('handler target', () => {
  it('passes the run context and payload; JSON-encodes the result', async () => {
    const registry = createHandlerRegistry();
    const job = makeJob({ id: 'digest' });
    registry.register('digest', (input) => ({
      job: input.job.id,
      fire_at: input.fire_at,
      run_id: input.run_id,
      attempt: input.attempt,
      payload: input.payload,
      signal: input.signal instanceof AbortSignal,
    }));
    const result = await executeHandler(
      { type: 'handler', name: 'digest', payload: { to: 'ops' } },
      makeCtx({ job, run_id: 'r9', attempt: 2 }),
      registry,
    );
    expect(result.ok).toBe(true);
    expect(JSON.parse(result.output!)).toEqual({
      job: 'digest',
      fire_at: T0,
      run_id: 'r9',
      attempt: 2,
      payload: { to: 'ops' },
      signal: true,
    });
  });

  it('keeps string results as written, no output for undefined, bounds long results', async () => {
    const registry = createHandlerRegistry();
    registry.register('text', () => 'sent 3 mails');
    registry.register('nothing', async () => {});
    registry.register('huge', () => 'y'.repeat(10_000));
    const ctx = makeCtx({ outputLimitBytes: 100 });
    expect((await executeHandler({ type: 'handler', name: 'text' }, ctx, registry)).output).toBe(
      'sent 3 mails',
    );
    expect((await executeHandler({ type: 'handler', name: 'nothing' }, ctx, registry)).output).toBeNull();
    expect((await executeHandler({ type: 'handler', name: 'huge' }, ctx, registry)).output).toBe(
      `${'y'.repeat(100)}…[truncated]`,
    );
  });

  it('survives a result that cannot be serialised', async () => {
    const registry = createHandlerRegistry();
    registry.register('bigint', () => ({ n: 1n }));
    const result = await executeHandler({ type: 'handler', name: 'bigint' }, makeCtx(), registry);
    expect(result.ok).toBe(true);
    expect(result.output).toMatch(/^\[result not serialisable: /);
  });

  it('turns a throw (sync or async) into a failure with the message', async () => {
    const registry = createHandlerRegistry();
    registry.register('sync', () => {
      throw new Error('boom');
    });
    registry.register('async', async () => {
      throw new TypeError('bad payload');
    });
    registry.register('string', () => {
      throw 'plain string';
    });
    const ctx = makeCtx();
    expect(await executeHandler({ type: 'handler', name: 'sync' }, ctx, registry)).toEqual({
      ok: false,
      output: null,
      error: 'boom',
      timedOut: false,
    });
    expect((await executeHandler({ type: 'handler', name: 'async' }, ctx, registry)).error).toBe(
      'bad payload',
    );
    expect((await executeHandler({ type: 'handler', name: 'string' }, ctx, registry)).error).toBe(
      'plain string',
    );
  });

  it('fails for an unknown name', async () => {
    const result = await executeHandler(
      { type: 'handler', name: 'ghost' },
      makeCtx(),
      createHandlerRegistry(),
    );
    expect(result).toEqual({
      ok: false,
      output: null,
      error: 'no handler registered under "ghost"',
      timedOut: false,
    });
  });

  it('times out: aborts the handler signal and ends the run even if the handler ignores it', async () => {
    const clock = new ManualClock(T0);
    const registry = createHandlerRegistry();
    let seen: AbortSignal | undefined;
    registry.register('stuck', ({ signal }) => {
      seen = signal;
      return new Promise(() => {});
    });
    const pending = executeHandler(
      { type: 'handler', name: 'stuck' },
      makeCtx({ clock, timeoutMs: 5000 }),
      registry,
    );
    await clock.advance(4999);
    expect(seen!.aborted).toBe(false);
    await clock.advance(1);
    expect(await pending).toEqual({ ok: false, output: null, error: 'timed out after 5s', timedOut: true });
    expect(seen!.aborted).toBe(true);
    expect(clock.pending()).toBe(0);
  });

  it('ends on an abort from outside with the reason', async () => {
    const registry = createHandlerRegistry();
    registry.register('stuck', () => new Promise(() => {}));
    const controller = new AbortController();
    const pending = executeHandler(
      { type: 'handler', name: 'stuck' },
      makeCtx({ signal: controller.signal, clock: new ManualClock(T0) }),
      registry,
    );
    controller.abort('shutdown');
    expect((await pending).error).toBe('aborted: shutdown');
  });
});
