import { randomBytes } from 'node:crypto';
import { closeSync, fsync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { type FileHandle, open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ChronosError, errorMessage } from '../errors.js';

/** Files are private to the service user: job targets may carry credentials in headers or env. */
export const FILE_MODE = 0o600;
export const DIR_MODE = 0o700;

/**
 * Temp files are dot-files ending in `.tmp`, in the directory of their target (rename is atomic only
 * within one file system). The random part keeps concurrent writers, even from several processes,
 * from ever sharing one.
 */
export function isTempName(name: string): boolean {
  return name.startsWith('.') && name.endsWith('.tmp');
}

function tempName(target: string): string {
  return `.${target}.${randomBytes(6).toString('hex')}.tmp`;
}

export function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

export function unavailable(action: string, path: string, err: unknown): ChronosError {
  if (err instanceof ChronosError) return err;
  const reason = errorMessage(err);
  return new ChronosError(
    'store_unavailable',
    `cannot ${action} ${path}: ${reason}`,
    { path },
    { cause: err },
  );
}

const fsyncAsync = promisify(fsync);

/**
 * Why some calls here are synchronous: the store's files are small (a job and its ledger, a run history)
 * and stay in the page cache, so creating, writing, renaming and reading them takes microseconds, while
 * each async call costs a round trip through libuv's thread pool. A fire makes a dozen such calls; only
 * the fsyncs, which wait for the disk, stay asynchronous.
 *
 * Replaces `dir/name` with `data` so that a reader, or a restart after a crash at any instant, sees
 * either the old file or the new one, never a mix: write a temp file, fsync it, rename it over the
 * target, then fsync the directory so the rename itself is durable. `dirHandle`, when given, is an
 * open handle on `dir` reused for that last fsync.
 */
export async function writeFileAtomic(dir: string, name: string, data: string, dirHandle?: FileHandle) {
  await replaceFile(dir, name, data);
  await syncDir(dir, dirHandle);
}

/**
 * The first half of writeFileAtomic: the new content is complete and fsynced under the target's name,
 * but the rename is durable only once the directory is fsynced. The file store syncs each directory once
 * for a whole group commit instead of once per file, and passes a SyncBatcher so that the round's file
 * fsyncs are issued together.
 */
export async function replaceFile(
  dir: string,
  name: string,
  data: string,
  batch?: SyncBatcher,
): Promise<void> {
  const target = join(dir, name);
  const temp = join(dir, tempName(name));
  try {
    const fd = openSync(temp, 'wx', FILE_MODE);
    try {
      const bytes = Buffer.from(data, 'utf8');
      let written = 0;
      while (written < bytes.length) written += writeSync(fd, bytes, written);
      await (batch ? batch.sync(fd) : fsyncAsync(fd));
    } finally {
      closeSync(fd);
    }
    renameSync(temp, target);
  } catch (err) {
    await rm(temp, { force: true }).catch(() => {});
    throw unavailable('write', target, err);
  }
}

/**
 * Issues the fsyncs requested within one turn of the event loop together. On ext4 a file create waits
 * while another file's fsync commits the journal; when each write of a group commit created its temp
 * file and fsynced it in turn, twenty writes cost twenty journal commits one after the other. Batched,
 * every temp file is written first and the fsyncs share one or a few commits.
 */
export class SyncBatcher {
  private waiting: Array<{ fd: number; done: () => void; fail: (err: unknown) => void }> = [];

  sync(fd: number): Promise<void> {
    return new Promise((done, fail) => {
      if (this.waiting.length === 0) setImmediate(() => this.flush());
      this.waiting.push({ fd, done, fail });
    });
  }

  private flush(): void {
    const batch = this.waiting;
    this.waiting = [];
    for (const { fd, done, fail } of batch) fsyncAsync(fd).then(done, fail);
  }
}

export async function syncDir(dir: string, dirHandle?: FileHandle): Promise<void> {
  try {
    if (dirHandle) {
      await dirHandle.sync();
      return;
    }
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    throw unavailable('fsync directory', dir, err);
  }
}

/** The file's text, or undefined when it does not exist. */
export async function readTextIfExists(path: string): Promise<string | undefined> {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw unavailable('read', path, err);
  }
}

/** Deletes a file; false when it was already gone. */
export async function removeIfExists(path: string): Promise<boolean> {
  try {
    await rm(path);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw unavailable('delete', path, err);
  }
}

/** Removes temp files left by a writer that died between creating and renaming them. */
export async function removeTempFiles(dir: string): Promise<number> {
  let removed = 0;
  for (const name of await readdir(dir)) {
    if (!isTempName(name)) continue;
    if (await removeIfExists(join(dir, name))) removed += 1;
  }
  return removed;
}
