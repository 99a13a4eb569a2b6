import { closeSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/*
 * Ports for servers a test starts later, usually in another process: Chronos behind the wake proxy,
 * PostgreSQL, a container. The port is free when chosen and must still be free when that process binds
 * it, which on a loaded machine can be seconds later. A port from listen(0) comes from the kernel's
 * ephemeral range, the range every other listen(0) and every outgoing connection on the machine draws
 * from, and in between one of them took it (a run saw the woken Chronos's /healthz answered 404 by
 * another test's server on its port). So ports are chosen at random below that range, where only
 * explicit binds land, checked free by binding them, and never handed out twice on the machine while
 * a run lasts: test workers are separate processes, and one worker's sleeping Chronos (scaled to zero
 * behind the wake proxy) once found its port taken by another worker's server when woken (EADDRINUSE).
 */

const LOWEST = 10_000;
const handedOut = new Set<number>();
/** One file per port handed out, created exclusively, so that no other process on the machine hands it out. */
const CLAIMS = join(tmpdir(), 'chronos-test-ports');
/** A claim this old is an earlier run's (a whole check takes minutes): taken over. */
const CLAIM_TTL_MS = 60 * 60_000;

function claim(port: number): boolean {
  const file = join(CLAIMS, String(port));
  try {
    mkdirSync(CLAIMS, { recursive: true });
    closeSync(openSync(file, 'wx'));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return false;
  }
  try {
    if (Date.now() - statSync(file).mtimeMs < CLAIM_TTL_MS) return false;
    unlinkSync(file);
    closeSync(openSync(file, 'wx'));
    return true;
  } catch {
    return false;
  }
}

/** The first port of the kernel's ephemeral range (Linux: /proc/sys/net/ipv4/ip_local_port_range). */
function ephemeralStart(): number {
  try {
    const start = Number(
      readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0],
    );
    return Number.isInteger(start) && start > 0 ? start : 32_768;
  } catch {
    return 32_768;
  }
}

function listenOnce(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(null));
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : null;
      server.close(() => resolve(bound));
    });
  });
}

/** A loopback port that was free just now and that no test process has handed out in the last hour. */
export async function freePort(): Promise<number> {
  const end = ephemeralStart();
  for (let attempt = 0; end - LOWEST >= 1_000 && attempt < 100; attempt++) {
    const port = LOWEST + Math.floor(Math.random() * (end - LOWEST));
    if (handedOut.has(port) || !claim(port)) continue;
    if ((await listenOnce(port)) === port) {
      handedOut.add(port);
      return port;
    }
  }
  // No room below the ephemeral range (or all of it taken): the kernel's choice, with its small risk.
  for (;;) {
    const port = await listenOnce(0);
    if (port === null) throw new Error('no free loopback port');
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}
