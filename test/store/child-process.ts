import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { build } from 'esbuild';

/**
 * Bundles test/store/child/store-child.ts (and the store sources it imports) into one plain JS
 * file, so each spawned child starts in tens of milliseconds without a TS loader.
 */
export async function bundleStoreChild(): Promise<{ file: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'chronos-store-child-'));
  const file = join(dir, 'store-child.mjs');
  await build({
    entryPoints: [new URL('./child/store-child.ts', import.meta.url).pathname],
    outfile: file,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    logLevel: 'error',
  });
  return { file, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** The environment for child Node processes: without NODE_EXTRA_CA_CERTS (~55 ms per start). */
export function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env['NODE_EXTRA_CA_CERTS'];
  return env;
}

export interface LineChild {
  child: ChildProcessWithoutNullStreams;
  lines: string[];
  /** Resolves with the first line (seen so far or later) matching `test`. */
  waitFor(test: (line: string) => boolean): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

export function spawnLines(file: string, args: string[]): LineChild {
  const child = spawn(process.execPath, [file, ...args], { env: childEnv(), stdio: 'pipe' });
  const lines: string[] = [];
  const waiters: { test: (line: string) => boolean; resolve: (line: string) => void }[] = [];
  let err = '';
  child.stderr.on('data', (chunk: Buffer) => {
    err += chunk.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  createInterface({ input: child.stdout }).on('line', (line) => {
    lines.push(line);
    for (const w of [...waiters]) {
      if (w.test(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  return {
    child,
    lines,
    exited,
    stderr: () => err,
    waitFor(test) {
      const seen = lines.find(test);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        waiters.push({ test, resolve });
        exited.then(({ code, signal }) =>
          reject(new Error(`child exited (${code ?? signal}) before the expected line; stderr: ${err}`)),
        );
      });
    },
  };
}
