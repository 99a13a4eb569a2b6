import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Owner } from './store.js';

let self: Owner | undefined;

export function currentOwner(): Owner {
  self ??= { boot_id: randomUUID(), pid: process.pid, host: hostname() };
  return self;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether a claim's owner can still be running it. Same boot id: it is us. Same host and a live pid
 * that is not ours: another Chronos process on this machine. Our own pid with another boot id is a
 * previous incarnation (containers reuse pid 1). Another host: unknown, so alive until its TTL.
 */
export function isOwnerAlive(owner: Owner, me: Owner = currentOwner()): boolean {
  if (owner.boot_id === me.boot_id) return true;
  if (owner.host !== me.host) return true;
  if (owner.pid === me.pid) return false;
  return pidAlive(owner.pid);
}
