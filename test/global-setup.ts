import { execFileSync } from 'node:child_process';

// Tests that spawn Chronos (CLI, drain, crash, end-to-end) run the production bundle, so build it once.
export default function setup(): void {
  execFileSync(process.execPath, ['scripts/build.mjs'], { stdio: 'inherit' });
}
