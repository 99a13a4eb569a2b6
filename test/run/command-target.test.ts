import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CommandTarget } from '../../src/jobs/model.js';
import { executeCommand } from '../../src/run/targets/command.js';
import { makeCtx, withoutExtraCaCerts } from './fixtures.js';

let restoreEnv: () => void;
let dir: string;

beforeAll(async () => {
  restoreEnv = withoutExtraCaCerts();
  dir = await mkdtemp(join(tmpdir(), 'chronos-command-'));
});

afterAll(async () => {
  restoreEnv();
  await rm(dir, { recursive: true, force: true });
});

function node(script: string, extra: Partial<CommandTarget> = {}): CommandTarget {
  return { type: 'command', argv: [process.execPath, '-e', script], env: {}, ...extra };
}

/** Running, as opposed to gone or a zombie waiting for a parent (orphans go to pid 1, which may not reap). */
async function isRunning(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

describe('command target', () => {
  it('succeeds on exit 0 and captures stdout and stderr', async () => {
    const result = await executeCommand(
      node('process.stdout.write("out "); process.stderr.write("err")'),
      makeCtx(),
    );
    expect(result.ok).toBe(true);
    expect(result.error).toBeNull();
    expect(result.timedOut).toBe(false);
    expect(result.output).toContain('out ');
    expect(result.output).toContain('err');
  });

  it('fails on a non-zero exit and says the code', async () => {
    const result = await executeCommand(node('console.error("bad input"); process.exit(3)'), makeCtx());
    expect(result).toEqual({
      ok: false,
      output: 'bad input\n',
      error: 'exited with code 3',
      timedOut: false,
    });
  });

  it('passes cwd and merges env over the inherited environment', async () => {
    const result = await executeCommand(
      node(
        'console.log(process.cwd() + "|" + process.env.CHRONOS_TEST_VAR + "|" + typeof process.env.PATH)',
        {
          cwd: dir,
          env: { CHRONOS_TEST_VAR: 'hello' },
        },
      ),
      makeCtx(),
    );
    expect(result.output).toBe(`${dir}|hello|string\n`);
  });

  it("does not hand Chronos's own credentials to the command", async () => {
    process.env['CHRONOS_ADMIN_TOKEN'] = 'admin-secret-for-test';
    process.env['CHRONOS_ACCESS_TOKEN'] = 'access-secret-for-test';
    try {
      const result = await executeCommand(
        node(
          'console.log([process.env.CHRONOS_ADMIN_TOKEN, process.env.CHRONOS_ACCESS_TOKEN, process.env.PATH ? "path" : ""].join("|"))',
        ),
        makeCtx(),
      );
      expect(result.ok).toBe(true);
      expect(result.output).toContain('||path');
      expect(result.output).not.toContain('secret-for-test');
    } finally {
      delete process.env['CHRONOS_ADMIN_TOKEN'];
      delete process.env['CHRONOS_ACCESS_TOKEN'];
    }
  });

  it('bounds a large output, keeping the head and the tail', async () => {
    const result = await executeCommand(
      node(
        'process.stdout.write("BEGIN\\n"); for (let i = 0; i < 20000; i++) process.stdout.write("line " + i + "\\n"); process.stdout.write("END\\n")',
      ),
      makeCtx({ outputLimitBytes: 2048 }),
    );
    expect(result.ok).toBe(true);
    const output = result.output!;
    expect(output.startsWith('BEGIN\n')).toBe(true);
    expect(output.endsWith('line 19999\nEND\n')).toBe(true);
    expect(output).toMatch(/\n…\[truncated \d+ bytes\]…\n/);
    expect(Buffer.byteLength(output)).toBeLessThan(2048 + 64);
  });

  it('kills a command that runs past the timeout, with its children', async () => {
    const pidFile = join(dir, 'grandchild.pid');
    // The child starts a grandchild that would outlive it, records its pid, then both sleep.
    const script = `
      const { spawn } = require('node:child_process');
      const g = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
      require('node:fs').writeFileSync(${JSON.stringify(pidFile)}, String(g.pid));
      console.log('started');
      setInterval(() => {}, 1000);
    `;
    const started = Date.now();
    // The timeout runs from the spawn: it must outlast a Node start (and here a second one) on a loaded
    // machine, or the group is killed before the grandchild exists and nothing is tested.
    const result = await executeCommand(node(script), makeCtx({ timeoutMs: 2000 }));
    expect(result.timedOut).toBe(true);
    expect(result.ok).toBe(false);
    expect(result.error).toBe('timed out after 2s');
    // Killed, not left running (the script itself never ends).
    expect(Date.now() - started).toBeLessThan(2000 + 4000);
    const grandchild = Number(await readFile(pidFile, 'utf8'));
    // SIGTERM reached the whole group; give the kernel a moment to reap (bounded poll, not a guess).
    for (let i = 0; i < 50 && (await isRunning(grandchild)); i++) await new Promise((r) => setTimeout(r, 20));
    expect(await isRunning(grandchild)).toBe(false);
  });

  it('escalates to SIGKILL when SIGTERM is ignored', async () => {
    const script = `process.on('SIGTERM', () => {}); console.log('ready'); setInterval(() => {}, 1000);`;
    const started = Date.now();
    // As above: a SIGTERM sent before the script has installed its handler would simply end it (seen on
    // a loaded machine with a 300 ms timeout), and the escalation would go untested.
    const result = await executeCommand(node(script), makeCtx({ timeoutMs: 2000 }), { killGraceMs: 200 });
    expect(result.timedOut).toBe(true);
    expect(result.output).toBe('ready\n');
    // Without the SIGKILL the script never ends.
    expect(Date.now() - started).toBeLessThan(2000 + 4000);
  });

  it('reports a program that does not exist', async () => {
    const result = await executeCommand(
      { type: 'command', argv: ['chronos-no-such-program-xyz', '--flag'], env: {} },
      makeCtx(),
    );
    expect(result).toEqual({
      ok: false,
      output: null,
      error: 'cannot start "chronos-no-such-program-xyz": program not found (ENOENT)',
      timedOut: false,
    });
  });

  it('reports a working directory that does not exist', async () => {
    const result = await executeCommand(node('1', { cwd: join(dir, 'missing') }), makeCtx());
    expect(result.error).toBe(
      `cannot start "${process.execPath}": working directory "${join(dir, 'missing')}" does not exist`,
    );
  });

  it('uses no shell: metacharacters reach the program literally', async () => {
    const marker = join(dir, 'hacked');
    const result = await executeCommand(
      {
        type: 'command',
        argv: [
          process.execPath,
          '-e',
          'console.log(JSON.stringify(process.argv.slice(1)))',
          `; echo hacked > ${marker}`,
          '$(id)',
        ],
        env: {},
      },
      makeCtx(),
    );
    expect(result.ok).toBe(true);
    expect(JSON.parse(result.output!)).toEqual([`; echo hacked > ${marker}`, '$(id)']);
    await expect(readFile(marker)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('stops on an abort from outside and reports the reason', async () => {
    const controller = new AbortController();
    const running = executeCommand(
      node('console.log("working"); setInterval(() => {}, 1000)'),
      makeCtx({ signal: controller.signal }),
    );
    controller.abort('replaced by run r2');
    const result = await running;
    expect(result).toMatchObject({ ok: false, error: 'aborted: replaced by run r2', timedOut: false });
  });

  it('does not start when already aborted', async () => {
    const controller = new AbortController();
    controller.abort('shutdown');
    const result = await executeCommand(node('1'), makeCtx({ signal: controller.signal }));
    expect(result.error).toBe('aborted: shutdown');
  });
});
