import { describe, expect, it } from 'vitest';
import { WriteQueue } from '../../src/store/write-queue.js';

/** A queue whose sessions are recorded: which writes ran in which session. */
function recorded(limit?: number) {
  const sessions: string[][] = [];
  const queue = new WriteQueue<string[]>(async (round) => {
    const names: string[] = [];
    sessions.push(names);
    await round(names);
  }, limit);
  return { queue, sessions };
}

const write = (name: string, wait?: Promise<void>) => async (session: string[]) => {
  session.push(name);
  await wait;
  return name;
};

describe('WriteQueue (group commits)', () => {
  it('runs writes to different keys together in one session, concurrently, and resumes callers after it', async () => {
    const events: string[] = [];
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const queue = new WriteQueue<void>(async (round) => {
      events.push('lock');
      await round();
      events.push('unlock');
    });
    const a = queue.run('a', async () => {
      events.push('a starts');
      await held;
      events.push('a ends');
    });
    const b = queue
      .run('b', async () => {
        events.push('b starts');
        events.push('b ends');
        release();
      })
      .then(() => events.push('b resumed'));
    await Promise.all([a, b]);
    expect(events).toEqual(['lock', 'a starts', 'b starts', 'b ends', 'a ends', 'unlock', 'b resumed']);
  });

  it('keeps writes to the same key in order, one per session', async () => {
    const { queue, sessions } = recorded();
    const results = await Promise.all([
      queue.run('a', write('a1')),
      queue.run('a', write('a2')),
      queue.run('b', write('b1')),
      queue.run('a', write('a3'), true),
    ]);
    expect(results).toEqual(['a1', 'a2', 'b1', 'a3']);
    expect(sessions).toEqual([['a1', 'b1'], ['a2'], ['a3']]);
  });

  it('takes urgent writes first when a session is full', async () => {
    const { queue, sessions } = recorded(2);
    await Promise.all([
      queue.run('h1', write('history 1')),
      queue.run('h2', write('history 2')),
      queue.run('c1', write('claim 1'), true),
      queue.run('c2', write('claim 2'), true),
    ]);
    expect(sessions).toEqual([
      ['claim 1', 'claim 2'],
      ['history 1', 'history 2'],
    ]);
  });

  it('fails only the write that failed; a failed session fails its round', async () => {
    const { queue } = recorded();
    const failed = queue.run('a', async () => {
      throw new Error('disk full');
    });
    const fine = queue.run('b', async () => 'ok');
    await expect(failed).rejects.toThrow('disk full');
    expect(await fine).toBe('ok');

    const locked = new WriteQueue<void>(async () => {
      throw new Error('store_locked');
    });
    await expect(locked.run('a', async () => 'never')).rejects.toThrow('store_locked');
    await locked.whenIdle();
  });
});
