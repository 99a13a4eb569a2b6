import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI } from '../helpers/run-cli.js';

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function until(what: string, predicate: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('e2e: chronos dev | head', () => {
  it('stops cleanly, with the Chronos it started, when its output is closed', async () => {
    dir = await mkdtemp(join(tmpdir(), 'chronos-dev-epipe-'));
    const jobsFile = join(dir, 'jobs.json');
    await writeFile(
      jobsFile,
      JSON.stringify({
        jobs: [
          {
            id: 'tick',
            schedule: 'every 2s',
            target: { type: 'command', argv: [process.execPath, '-e', '0'] },
          },
        ],
      }),
    );
    const dataDir = join(dir, 'data');
    const env = { ...process.env };
    delete env['NODE_EXTRA_CA_CERTS'];
    // A long idle limit: the Chronos child stays up until the loop stops it.
    const args = ['dev', '--jobs', jobsFile, '--nas-port', '0', '--port', '0', '--app-port', '0'];
    const child = spawn(process.execPath, [CLI, ...args, '--idle-exit', '600', '--data-dir', dataDir], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('exit', (code, signal) => {
      exit = { code, signal };
    });
    try {
      await until(
        'Chronos started by the loop',
        () => /started \(pid \d+\)/.test(stdout) || exit !== undefined,
        30_000,
      );
      const pid = Number(/started \(pid (\d+)\)/.exec(stdout)?.[1]);
      expect(alive(pid)).toBe(true);
      // What `head` does once it has its lines: the reading end goes away; the next write gets EPIPE.
      child.stdout.destroy();
      await until('the loop to exit', () => exit !== undefined, 30_000);
      expect(exit).toEqual({ code: 0, signal: null });
      expect(stderr).not.toMatch(/EPIPE|Error/);
      await until('its Chronos to be stopped', () => !alive(pid), 10_000);
      // The marker that lets the next fresh start empty this directory.
      expect(await readdir(dataDir)).toContain('.chronos-dev');
    } finally {
      if (exit === undefined) child.kill('SIGKILL');
    }
  }, 80_000);
});
