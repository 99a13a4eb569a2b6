import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { runDevLoop } from '../../src/emulator/dev-loop.js';
import { bundleSnapshot, removeBundleSnapshot } from '../helpers/e2e.js';

let dir: string | undefined;
afterAll(removeBundleSnapshot);
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('e2e: chronos dev (the local loop)', () => {
  it('shows armed → idle exit → fire → start → 202 → run → armed → exit, and stops on request', async () => {
    dir = await mkdtemp(join(tmpdir(), 'chronos-dev-'));
    const jobsFile = join(dir, 'jobs.json');
    await writeFile(
      jobsFile,
      JSON.stringify({
        jobs: [
          {
            id: 'tick',
            schedule: 'every 3s',
            target: { type: 'command', argv: [process.execPath, '-e', '0'] },
          },
        ],
      }),
    );
    const lines: string[] = [];
    const stop = new AbortController();
    const seen = (pattern: RegExp) => lines.some((l) => pattern.test(l));
    const done = runDevLoop(
      [
        '--jobs',
        jobsFile,
        '--nas-port',
        '0',
        '--port',
        '0',
        '--app-port',
        '0',
        '--idle-exit',
        '1',
        '--data-dir',
        join(dir, 'data'),
      ],
      { out: (line) => lines.push(line), signal: stop.signal, serveJs: await bundleSnapshot() },
    );
    let ended = false;
    void done.finally(() => {
      ended = true;
    });
    const deadline = Date.now() + 20_000;
    while (
      !seen(/\[chronos\] run succeeded tick/) ||
      lines.filter((l) => /exited 0 \(idle\)/.test(l)).length < 2
    ) {
      if (ended || Date.now() > deadline)
        throw new Error(`dev loop did not complete a cycle:\n${lines.join('\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    stop.abort();
    await done;

    const order = [
      /\[nas\] +armed tick at/,
      /\[chronos\] idle 1 s with every job armed: exiting/,
      /\[chronos\] exited 0 \(idle\)/,
      /\[wake\] +request arrived and Chronos is stopped/,
      /\[chronos\] started \(pid \d+\)/,
      /\[chronos\] fire accepted tick/,
      /\[nas\] +deliver tick .* → 202/,
      /\[chronos\] armed at NAS tick/,
      /\[chronos\] run succeeded tick/,
    ];
    let from = 0;
    for (const pattern of order) {
      const index = lines.findIndex((l, i) => i >= from && pattern.test(l));
      expect(index, `${pattern} after line ${from}:\n${lines.join('\n')}`).toBeGreaterThanOrEqual(0);
      from = index;
    }
    expect(lines.at(-1)).toMatch(/\[dev\] +stopped$/);
    // Readable lines, not JSON and not colour codes.
    expect(lines.some((l) => l.includes('{"level"'))).toBe(false);
    expect(lines.some((l) => l.includes('\u001b['))).toBe(false);
  });

  it('--strict runs the emulator in strict mode', async () => {
    dir = await mkdtemp(join(tmpdir(), 'chronos-dev-'));
    const jobsFile = join(dir, 'jobs.json');
    await writeFile(jobsFile, JSON.stringify({ jobs: [] }));
    const lines: string[] = [];
    const stop = new AbortController();
    let ready!: (info: { nasUrl: string }) => void;
    const started = new Promise<{ nasUrl: string }>((resolve) => {
      ready = resolve;
    });
    const args = ['--jobs', jobsFile, '--nas-port', '0', '--port', '0', '--app-port', '0', '--strict'];
    const done = runDevLoop([...args, '--data-dir', join(dir, 'data')], {
      out: (line) => lines.push(line),
      signal: stop.signal,
      serveJs: await bundleSnapshot(),
      onReady: ready,
    });
    const { nasUrl } = await started;
    const state = (await (await fetch(`${nasUrl}/_emulator/state`)).json()) as Record<string, unknown>;
    stop.abort();
    await done;
    expect(state).toMatchObject({ strict: true, faults: { rememberKeys: true, deliveryAttempts: 4 } });
    expect(lines.some((l) => /\[dev\] +NAS emulator .*\(strict, state:/.test(l))).toBe(true);
  });
});
