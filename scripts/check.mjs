#!/usr/bin/env node
// `npm run check`: typecheck, lint and the whole test suite, with the typecheck and the lint running beside
// the tests instead of before them. tsc (about 20 s of one core) overlaps the first part of the test run;
// most end-to-end files then wait on timers and child processes, so the two cores are not both busy for
// long (docs/performance.md, "Test suite"). The tests stream their output as they run; typecheck and lint
// are buffered and printed whole when they end, so the lines never interleave. Exits 1 when any part failed.
// Usage: node scripts/check.mjs [vitest arguments…]
import { spawn } from 'node:child_process';

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function run(script, args, { buffered }) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(npm, ['run', '--silent', script, ...(args.length > 0 ? ['--', ...args] : [])], {
      stdio: buffered ? ['ignore', 'pipe', 'pipe'] : 'inherit',
    });
    const chunks = [];
    if (buffered) {
      child.stdout.on('data', (chunk) => chunks.push(chunk));
      child.stderr.on('data', (chunk) => chunks.push(chunk));
    }
    child.on('error', (err) => resolve({ script, ok: false, output: `${err.message}\n`, started }));
    child.on('close', (code, signal) => {
      const output = Buffer.concat(chunks).toString();
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      if (buffered) {
        process.stdout.write(
          `\n── npm run ${script} (${seconds} s): ${code === 0 ? 'ok' : 'FAILED'}\n${output}`,
        );
      }
      resolve({ script, ok: code === 0 && signal === null, seconds });
    });
  });
}

const statics = (async () => [
  await run('typecheck', [], { buffered: true }),
  await run('lint', [], { buffered: true }),
])();
const tests = run('test', process.argv.slice(2), { buffered: false });

const results = [...(await statics), await tests];
const failed = results.filter((r) => !r.ok).map((r) => r.script);
process.stdout.write(
  failed.length === 0
    ? '\ncheck: typecheck, lint and test passed\n'
    : `\ncheck: FAILED: ${failed.join(', ')}\n`,
);
process.exitCode = failed.length === 0 ? 0 : 1;
