import { randomUUID } from 'node:crypto';
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ChronosError } from '../errors.js';
import { errnoCode, FILE_MODE, removeIfExists, unavailable } from './atomic-file.js';
import { isOwnerAlive } from './owner.js';
import type { Owner } from './store.js';

interface LockContent extends Owner {
  acquired_at: string;
  /** Which FileLock took it: two stores in one process (tests, an embedding app) share boot id and pid. */
  lock_id?: string;
}

interface Holder {
  raw: string;
  owner: LockContent | undefined;
  mtimeMs: number;
}

/**
 * A writer's creation and its first write are two syscalls; a lock file still empty or unreadable
 * after this long belongs to a process that died in between.
 */
const UNREADABLE_LOCK_GRACE_MS = 1000;
const MAX_POLL_MS = 5;

function parseOwner(raw: string): LockContent | undefined {
  try {
    const value = JSON.parse(raw) as Partial<LockContent> | null;
    if (
      value &&
      typeof value.boot_id === 'string' &&
      typeof value.pid === 'number' &&
      typeof value.host === 'string'
    ) {
      return value as LockContent;
    }
  } catch {
    // Unreadable content is judged by the file's age instead.
  }
  return undefined;
}

/**
 * Cross-process mutual exclusion with a lock file created by `open(path, 'wx')` (atomic create-or-fail
 * on local file systems), holding the owner. A lock whose owner is dead is broken; waiting for a live
 * one is bounded. Not re-entrant: callers serialise their own use (FileStore queues in-process), and may
 * keep the lock across several writes (acquire again is then a check that the file still names us).
 *
 * Breaking is guarded by a second file (`<lock>.break`) so that two waiters who both saw the same dead
 * owner cannot have the slower one delete the lock the faster one has just taken: the lock is only
 * removed while holding the guard and only if its content is still the dead owner's.
 */
export class FileLock {
  private readonly guardPath: string;
  private readonly lockId = randomUUID();
  /** We created the lock file and have not released it. */
  private held = false;
  /** When this hold began (Date.now()), or null when not held. */
  heldSince: number | null = null;

  constructor(
    readonly path: string,
    private readonly owner: Owner,
    private readonly timeoutMs: number,
    private readonly isAlive: (owner: Owner) => boolean = isOwnerAlive,
  ) {
    this.guardPath = `${path}.break`;
  }

  /** Takes the lock, or keeps it when still held by us (the file still names this process). */
  async acquire(): Promise<void> {
    if (this.held && this.holderOfFile() === 'self') return;
    this.held = false;
    this.heldSince = null;
    const deadline = Date.now() + this.timeoutMs;
    let pause = 1;
    for (;;) {
      if (await this.tryCreate(this.path)) {
        this.held = true;
        this.heldSince = Date.now();
        return;
      }
      const holder = await this.readHolder(this.path);
      if (holder === undefined) continue; // released between our attempt and our read
      if (holder.owner && this.isSelf(holder.owner)) {
        // Our own file, left by a release that could not tell it was ours: it is ours again.
        this.held = true;
        this.heldSince = Date.now();
        return;
      }
      if (this.isStale(holder)) {
        if (await this.breakStale(holder.raw)) continue;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw this.lockedError(holder);
      await sleep(Math.min(pause, left));
      pause = Math.min(pause * 2, MAX_POLL_MS);
    }
  }

  async release(): Promise<void> {
    if (!this.held) return;
    this.held = false;
    this.heldSince = null;
    // Never a file someone else wrote at that path; a file we cannot read is ours (we created it).
    if (this.holderOfFile() === 'other') return;
    try {
      unlinkSync(this.path);
    } catch {
      // Nothing useful to do: the write it protected is already durable, and a lock we cannot
      // delete (or one already gone) is reported to the next writer as store_locked naming the file.
    }
  }

  /** Synchronous: creating and unlinking a small file is faster than a thread-pool round trip (atomic-file.ts). */
  private async tryCreate(path: string): Promise<boolean> {
    let fd: number;
    try {
      fd = openSync(path, 'wx', FILE_MODE);
    } catch (err) {
      if (errnoCode(err) === 'EEXIST') return false;
      throw unavailable('create lock file', path, err);
    }
    try {
      const content: LockContent = {
        ...this.owner,
        acquired_at: new Date().toISOString(),
        lock_id: this.lockId,
      };
      writeSync(fd, JSON.stringify(content));
    } catch (err) {
      closeSync(fd);
      await removeIfExists(path).catch(() => {});
      throw unavailable('write lock file', path, err);
    }
    closeSync(fd);
    return true;
  }

  /**
   * Who the lock file names, as far as this process can tell. A read that fails for another reason than
   * the file being gone (too many open files, say) counts as ours: we created it and nobody can take it
   * while it exists; treating it as lost would lock this process out of its own store.
   */
  private holderOfFile(): 'self' | 'other' | 'missing' {
    let raw: string;
    try {
      raw = readFileSync(this.path, 'utf8');
    } catch (err) {
      return errnoCode(err) === 'ENOENT' ? 'missing' : 'self';
    }
    const owner = parseOwner(raw);
    return owner && this.isSelf(owner) ? 'self' : 'other';
  }

  private isSelf(owner: LockContent): boolean {
    return owner.lock_id === this.lockId;
  }

  private async readHolder(path: string): Promise<Holder | undefined> {
    try {
      const [raw, info] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
      return { raw, owner: parseOwner(raw), mtimeMs: info.mtimeMs };
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw unavailable('read lock file', path, err);
    }
  }

  private isStale(holder: Holder): boolean {
    if (holder.owner) return !this.isAlive(holder.owner);
    return Date.now() - holder.mtimeMs > UNREADABLE_LOCK_GRACE_MS;
  }

  /** True when the stale lock is gone (by us or someone else); false when another breaker is at it. */
  private async breakStale(staleRaw: string): Promise<boolean> {
    if (!(await this.tryCreate(this.guardPath))) {
      const guard = await this.readHolder(this.guardPath);
      // A breaker that died inside its few syscalls leaves the guard behind.
      if (guard && this.isStale(guard)) await removeIfExists(this.guardPath);
      return false;
    }
    try {
      const current = await this.readHolder(this.path);
      if (current !== undefined && current.raw === staleRaw) await removeIfExists(this.path);
      return true;
    } finally {
      await removeIfExists(this.guardPath).catch(() => {});
    }
  }

  private lockedError(holder: Holder): ChronosError {
    const who = holder.owner
      ? `pid ${holder.owner.pid} on host ${holder.owner.host} (since ${holder.owner.acquired_at})`
      : 'a process that left it unreadable';
    return new ChronosError(
      'store_locked',
      `store lock ${this.path} is held by ${who}; gave up after ${this.timeoutMs} ms. ` +
        'If no Chronos process is using this data directory, delete the lock file.',
      { lock_file: this.path, pid: holder.owner?.pid, host: holder.owner?.host },
    );
  }
}
