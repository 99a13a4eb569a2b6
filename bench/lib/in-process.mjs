// Chronos started in this process (library entry), for benchmarks that need its provider directly.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importDist } from './common.mjs';

/** A data dir holding `count` jobs made by `spec(i)`; FileStore is the product's own store. */
export async function seedStore(lib, count, spec, now = Date.now()) {
  const dir = await mkdtemp(join(tmpdir(), `chronos-bench-store-${count}-`));
  const store = await lib.FileStore.open({ dir });
  for (let i = 0; i < count; i++) {
    await store.createJob(
      lib.buildJob(spec(i), { now, defaultTimezone: 'UTC', allowCommands: false, source: 'api' }),
    );
  }
  await store.close();
  return dir;
}

export async function startInProcess(env, options = {}) {
  const lib = await importDist('index.js');
  const running = await lib.startChronos({
    env: { PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', ...env },
    handleSignals: false,
    exit: () => {},
    ...options,
  });
  return running;
}

export async function removeDir(dir) {
  await rm(dir, { recursive: true, force: true });
}
