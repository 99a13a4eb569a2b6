import { readFileSync } from 'node:fs';

/**
 * The soft RLIMIT_NOFILE of this process, from /proc/self/limits (Linux); undefined where that file does
 * not exist or says "unlimited". Node offers no API for it.
 */
export function descriptorLimit(limitsFile = '/proc/self/limits'): number | undefined {
  let text: string;
  try {
    text = readFileSync(limitsFile, 'utf8');
  } catch {
    return undefined;
  }
  const line = text.split('\n').find((l) => l.startsWith('Max open files'));
  const soft = line ? /^Max open files\s+(\S+)/.exec(line)?.[1] : undefined;
  if (soft === undefined || !/^\d+$/.test(soft)) return undefined;
  return Number(soft);
}

/** Descriptors kept back from connections, at the least: store files, NAS sockets, run targets' pipes. */
export const MIN_DESCRIPTOR_HEADROOM = 64;

/**
 * How many connections the server accepts at once under a descriptor limit: a quarter of the limit (at least
 * MIN_DESCRIPTOR_HEADROOM) stays free for everything else the process opens, so a flood of connections
 * cannot make a run's spawn or a store write fail with EMFILE. Undefined (no cap) when the limit is unknown.
 */
export function connectionCap(limit: number | undefined): number | undefined {
  if (limit === undefined) return undefined;
  const headroom = Math.max(MIN_DESCRIPTOR_HEADROOM, Math.floor(limit / 4));
  return Math.max(8, limit - headroom);
}
