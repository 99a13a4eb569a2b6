import { afterAll, inject } from 'vitest';
import { adminQuery, type PostgresServer, startPostgres, uniqueDatabaseName } from './postgres.js';

/*
 * Databases for one test file: on the run's shared server (test/postgres-setup.ts) when there is one,
 * on a server of this file's own otherwise (a file run outside the e2e project). Each database is new
 * and empty, created from template0.
 */

let own: Promise<PostgresServer> | undefined;

async function adminUrl(): Promise<string> {
  const shared = inject('postgres');
  if (shared) return shared.adminUrl;
  own ??= startPostgres({ label: 'file' });
  return (await own).adminUrl;
}

/** A new empty database; returns its URL. */
export async function freshDatabase(prefix = 'chronos'): Promise<string> {
  const admin = await adminUrl();
  const name = uniqueDatabaseName(prefix);
  await adminQuery(admin, `CREATE DATABASE "${name}" TEMPLATE template0`);
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return url.toString();
}

// Databases are not dropped one by one (each DROP costs about a second with fsync on): the server and its
// directory go at the end of the run, or of this file when it has its own.
afterAll(async () => {
  if (own) await (await own).destroy();
});
