import { type ChildProcess, spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { systemClock } from '../../clock.js';
import type { CommandTarget } from '../../jobs/model.js';
import { HeadTailCapture } from '../output.js';
import {
  abortedResult,
  errorText,
  resourceErrorCode,
  type TargetContext,
  type TargetResult,
  timedOutResult,
} from './types.js';

/** Time a command gets between SIGTERM and SIGKILL. */
export const KILL_GRACE_MS = 5000;
/**
 * After the command itself exits, how long to wait for its output pipes to close. A background
 * grandchild that inherited them would otherwise hold the run open for as long as it lives.
 */
export const PIPE_DRAIN_MS = 1000;

const canKillGroup = process.platform !== 'win32';

/** Signal the command's whole process group, so that its own children stop too. */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    if (canKillGroup) process.kill(-child.pid, signal);
    else child.kill(signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

async function describeSpawnError(
  err: NodeJS.ErrnoException,
  program: string,
  cwd?: string,
): Promise<string> {
  if (err.code === 'ENOENT' && cwd !== undefined) {
    // Node reports a missing working directory as the program not being found.
    const cwdExists = await stat(cwd).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (!cwdExists) return `cannot start "${program}": working directory "${cwd}" does not exist`;
  }
  if (err.code === 'ENOENT') return `cannot start "${program}": program not found (ENOENT)`;
  if (err.code === 'EACCES') return `cannot start "${program}": permission denied (EACCES)`;
  return `cannot start "${program}": ${errorText(err)}`;
}

/**
 * Runs argv without a shell. Output from stdout and stderr is interleaved in arrival order into one
 * excerpt that keeps the head and the tail of the bound (see HeadTailCapture).
 */
export function executeCommand(
  target: CommandTarget,
  ctx: TargetContext,
  options: { killGraceMs?: number } = {},
): Promise<TargetResult> {
  if (ctx.signal.aborted) return Promise.resolve(abortedResult(ctx.signal));
  const [program, ...args] = target.argv as [string, ...string[]];
  const clock = ctx.clock ?? systemClock;
  const capture = new HeadTailCapture(ctx.outputLimitBytes);

  return new Promise<TargetResult>((resolve) => {
    let child: ChildProcess;
    try {
      child = spawn(program, args, {
        shell: false,
        cwd: target.cwd,
        env: { ...inheritedEnv(), ...target.env },
        stdio: ['ignore', 'pipe', 'pipe'],
        // Its own process group, so a timeout can stop everything it started.
        detached: canKillGroup,
        windowsHide: true,
      });
    } catch (err) {
      // Invalid arguments (e.g. a NUL byte in argv) throw synchronously instead of emitting 'error'; so can
      // running out of descriptors for the pipes.
      const internal = resourceErrorCode(err);
      resolve({
        ok: false,
        output: null,
        error: `cannot start "${program}": ${errorText(err)}`,
        timedOut: false,
        ...(internal ? { internal } : {}),
      });
      return;
    }

    let stopping: 'timeout' | 'abort' | undefined;
    let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let settled = false;
    let killTimer: ReturnType<typeof setTimeout> | undefined;
    let drainTimer: ReturnType<typeof setTimeout> | undefined;

    const stop = (why: 'timeout' | 'abort') => {
      if (stopping || exited) return;
      stopping = why;
      signalGroup(child, 'SIGTERM');
      // Real time, not the run clock: this bounds how long a process that ignores SIGTERM survives.
      killTimer = setTimeout(() => signalGroup(child, 'SIGKILL'), options.killGraceMs ?? KILL_GRACE_MS);
      killTimer.unref();
    };
    const timeoutTimer = clock.setTimeout(() => stop('timeout'), ctx.timeoutMs);
    const onAbort = () => stop('abort');
    ctx.signal.addEventListener('abort', onAbort, { once: true });

    const finish = (result: TargetResult) => {
      if (settled) return;
      settled = true;
      clock.clearTimeout(timeoutTimer);
      ctx.signal.removeEventListener('abort', onAbort);
      if (drainTimer) clearTimeout(drainTimer);
      // The SIGKILL timer is left armed after a stop: stragglers in the group that ignore SIGTERM still die.
      if (!stopping && killTimer) clearTimeout(killTimer);
      resolve(result);
    };

    const outcome = (): TargetResult => {
      const output = capture.text();
      if (stopping === 'timeout') return timedOutResult(ctx.timeoutMs, output);
      if (stopping === 'abort') return abortedResult(ctx.signal, output);
      const { code, signal } = exited ?? { code: null, signal: null };
      if (code === 0) return { ok: true, output, error: null, timedOut: false };
      const error = signal ? `killed by signal ${signal}` : `exited with code ${code}`;
      return { ok: false, output, error, timedOut: false };
    };

    child.stdout?.on('data', (chunk: Buffer) => capture.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => capture.push(chunk));

    // `on`, not `once`: a second 'error' without a listener would crash the process.
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (child.pid !== undefined) return; // errors after a successful spawn (kill failures) are not the run's outcome
      const internal = resourceErrorCode(err);
      void describeSpawnError(err, program, target.cwd).then((error) =>
        finish({ ok: false, output: null, error, timedOut: false, ...(internal ? { internal } : {}) }),
      );
    });
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      drainTimer = setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        finish(outcome());
      }, PIPE_DRAIN_MS);
    });
    child.once('close', () => {
      if (exited) finish(outcome());
    });
  });
}

/** Chronos's own credentials are not the job's business: a command must not be able to read them. */
const PRIVATE_VARIABLES = ['CHRONOS_ACCESS_TOKEN', 'CHRONOS_ADMIN_TOKEN'];

function inheritedEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of PRIVATE_VARIABLES) delete env[name];
  return env;
}
