import { randomUUID } from 'node:crypto';
import { closeSync, openSync, readFileSync, unlinkSync, utimesSync, writeSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { formatInstant } from '../clock.js';
import { ChronosError } from '../errors.js';
import { errnoCode, FILE_MODE, removeIfExists, unavailable } from './atomic-file.js';
import { isOwnerAlive } from './owner.js';
import type { Owner } from './store.js';

interface LockContent extends Owner {
  acquired_at: string;
  /** Which FileLock took it: two stores in one process (tests, an embedding app) share boot id and pid. */
  lock_id?: string;
  /** How long the lock stays valid after its last renewal (the file's mtime); older files lack it. */
  lease_ms?: number;
}

interface Holder {
  raw: string;
  owner: LockContent | undefined;
  mtimeMs: number;
}

/**
 * How long a lock stays valid after its holder last renewed it. Holders renew every quarter lease while
 * they hold it, whatever they are waiting for (a stalled fsync runs on the thread pool, the timer still
 * fires). A lock not renewed for this long is broken whoever it names: a pid that now belongs to an
 * unrelated process, or a host the volume is no longer attached to.
 */
export const DEFAULT_LOCK_LEASE_MS = 10_000;

/** What a broken lock named, for the log: an operator should see that a lock was taken over, and why. */
export interface BrokenLock {
  lock_file: string;
  reason: 'holder_dead' | 'lease_expired' | 'unreadable';
  holder_pid?: number;
  holder_host?: string;
  acquired_at?: string;
}

/**
 * A writer's creation and its first write are two syscalls; a lock file still empty or unreadable
 * after this long belongs to a process that died in between.
 */
const UNREADABLE_LOCK_GRACE_MS = 1000;
const MAX_POLL_MS = 5;
/** Polling while waiting out a holder's lease past the normal timeout: nobody is taking turns then. */
const LEASE_POLL_MS = 50;

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
 * on local file systems), holding the owner, and leased: the holder touches the file (its mtime) every
 * quarter lease while it holds it. A lock is broken when its owner is provably dead (this host, pid gone)
 * or when it was not renewed within its lease, whatever it names. Waiting for a holder that renews is
 * bounded by the timeout; a holder that does not renew is waited out up to its lease, so a start never
 * needs someone to delete the file. Not re-entrant: callers serialise their own use (FileStore queues
 * in-process), and may keep the lock across several writes (acquire again is then a check that the file
 * still names us).
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
  private renewer: NodeJS.Timeout | undefined;
  /** The holder this process is waiting on, as first seen (content and mtime), and since when. */
  private observed: { raw: string; mtimeMs: number; since: number } | undefined;

  constructor(
    readonly path: string,
    private readonly owner: Owner,
    private readonly timeoutMs: number,
    private readonly isAlive: (owner: Owner) => boolean = isOwnerAlive,
    private readonly leaseMs: number = DEFAULT_LOCK_LEASE_MS,
    private readonly onBreak: (broken: BrokenLock) => void = () => {},
  ) {
    this.guardPath = `${path}.break`;
  }

  /** Takes the lock, or keeps it when still held by us (the file still names this process). */
  async acquire(): Promise<void> {
    if (this.held && this.holderOfFile() === 'self') return;
    this.markReleased();
    const started = Date.now();
    const deadline = started + this.timeoutMs;
    this.observed = undefined;
    let renewedWhileWaiting = false;
    let pause = 1;
    for (;;) {
      if (await this.tryCreate(this.path)) return this.markHeld();
      const holder = await this.readHolder(this.path);
      if (holder === undefined) continue; // released between our attempt and our read
      if (holder.owner && this.isSelf(holder.owner)) {
        // Our own file, left by a release that could not tell it was ours: it is ours again.
        return this.markHeld();
      }
      const seen = this.observed;
      if (!seen || seen.raw !== holder.raw || seen.mtimeMs !== holder.mtimeMs) {
        // A new holder, or the same one renewing: either way someone alive is using the store.
        if (seen) renewedWhileWaiting = true;
        this.observed = { raw: holder.raw, mtimeMs: holder.mtimeMs, since: Date.now() };
      }
      if (this.isStale(holder)) {
        if (await this.breakStale(holder)) continue;
      }
      const now = Date.now();
      // Past the timeout, a holder that renewed is alive: give up. One that did not is waited out until
      // its lease has run (measured from when we first saw it), when isStale breaks it.
      const waitOut = renewedWhileWaiting
        ? deadline
        : this.observed!.since + this.leaseOf(holder) + LEASE_POLL_MS;
      const left = Math.max(deadline, waitOut) - now;
      if (left <= 0) throw this.lockedError(holder, now - started);
      await sleep(Math.min(now >= deadline ? LEASE_POLL_MS : pause, left));
      pause = Math.min(pause * 2, MAX_POLL_MS);
    }
  }

  private markHeld(): void {
    this.held = true;
    this.heldSince = Date.now();
    this.observed = undefined;
    clearInterval(this.renewer);
    this.renewer = setInterval(() => this.renew(), Math.max(1, Math.floor(this.leaseMs / 4)));
    // The lease must never keep a process alive that has nothing else to do.
    this.renewer.unref();
  }

  private markReleased(): void {
    this.held = false;
    this.heldSince = null;
    clearInterval(this.renewer);
    this.renewer = undefined;
  }

  /** Touch the lock file while it still names us; a file that no longer does is not ours to renew. */
  private renew(): void {
    if (!this.held) return;
    const holder = this.holderOfFile();
    if (holder !== 'self') {
      // Broken by another process after we failed to renew in time (or deleted by hand): the next
      // acquire starts over rather than writing under a lock somebody else may hold.
      if (holder === 'other' || holder === 'missing') this.markReleased();
      return;
    }
    try {
      const now = new Date();
      utimesSync(this.path, now, now);
    } catch {
      // A failed touch leaves the previous renewal in force; the next tick tries again.
    }
  }

  async release(): Promise<void> {
    if (!this.held) return;
    this.markReleased();
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
        acquired_at: formatInstant(Date.now()),
        lock_id: this.lockId,
        lease_ms: this.leaseMs,
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

  private leaseOf(holder: Holder): number {
    const lease = holder.owner?.lease_ms;
    return typeof lease === 'number' && Number.isFinite(lease) && lease > 0 ? lease : this.leaseMs;
  }

  private isStale(holder: Holder): boolean {
    const now = Date.now();
    if (!holder.owner) return now - holder.mtimeMs > UNREADABLE_LOCK_GRACE_MS;
    if (!this.isAlive(holder.owner)) return true;
    const lease = this.leaseOf(holder);
    // Not renewed within its lease: by the file's mtime, or (should the writer's clock run ahead of
    // ours and date the mtime in our future) by how long we have watched it unchanged.
    if (now - holder.mtimeMs > lease) return true;
    const seen = this.observed;
    return (
      seen !== undefined &&
      seen.raw === holder.raw &&
      seen.mtimeMs === holder.mtimeMs &&
      now - seen.since > lease
    );
  }

  /** True when the stale lock is gone (by us or someone else); false when another breaker is at it. */
  private async breakStale(stale: Holder): Promise<boolean> {
    if (!(await this.tryCreate(this.guardPath))) {
      const guard = await this.readHolder(this.guardPath);
      // A breaker that died inside its few syscalls leaves the guard behind.
      if (guard && this.isStale(guard)) await removeIfExists(this.guardPath);
      return false;
    }
    try {
      // Still the very lock judged stale: same content and not renewed since (a renewal changes the mtime).
      const current = await this.readHolder(this.path);
      if (current !== undefined && current.raw === stale.raw && current.mtimeMs === stale.mtimeMs) {
        await removeIfExists(this.path);
        this.onBreak({
          lock_file: this.path,
          reason: !stale.owner ? 'unreadable' : this.isAlive(stale.owner) ? 'lease_expired' : 'holder_dead',
          holder_pid: stale.owner?.pid,
          holder_host: stale.owner?.host,
          acquired_at: stale.owner?.acquired_at,
        });
      }
      return true;
    } finally {
      await removeIfExists(this.guardPath).catch(() => {});
    }
  }

  private lockedError(holder: Holder, waitedMs: number): ChronosError {
    const who = holder.owner
      ? `pid ${holder.owner.pid} on host ${holder.owner.host} (since ${holder.owner.acquired_at})`
      : 'a process that left it unreadable';
    return new ChronosError(
      'store_locked',
      `store lock ${this.path} is held by ${who}; gave up after ${waitedMs} ms. A lock its holder ` +
        'keeps renewing means another live Chronos process writes to this data directory: give each its own.',
      { lock_file: this.path, pid: holder.owner?.pid, host: holder.owner?.host },
    );
  }
}
