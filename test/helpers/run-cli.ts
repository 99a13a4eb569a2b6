import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

// CHRONOS_CLI_BIN lets a developer point at another build while others rebuild dist/ in a shared tree.
export const CLI = process.env['CHRONOS_CLI_BIN'] ?? resolve('dist/cli.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The real built binary in a child, with none of the caller's CHRONOS_* variables (and without
 * NODE_EXTRA_CA_CERTS, which slows every Node start).
 */
export function runCli(
  args: string[],
  options: { env?: Record<string, string>; stdin?: string; cwd?: string; bin?: string } = {},
): Promise<CliResult> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && k !== 'NODE_EXTRA_CA_CERTS' && !k.startsWith('CHRONOS_') && k !== 'PORT')
      env[k] = v;
  }
  Object.assign(env, options.env);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [options.bin ?? CLI, ...args], {
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(options.cwd ? { cwd: options.cwd } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
    child.stdin.end(options.stdin ?? '');
  });
}
