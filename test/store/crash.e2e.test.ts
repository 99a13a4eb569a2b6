import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileStore } from '../../src/store/file-store.js';
import { crashSuite } from './crash-suite.js';

crashSuite('FileStore', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'chronos-crash-'));
  return {
    location: dir,
    open: () => FileStore.open({ dir, lockTimeoutMs: 2000 }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});
