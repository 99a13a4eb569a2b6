import { afterAll, inject } from 'vitest';
import { adminQuery, type PostgresServer, startPostgres, uniqueDatabaseName } from './postgres.js';

/*
 * Databases for one test file: on the run's shared server (test/postgres-setup.ts) when there is one,
 * on a server of this file's own otherwise (a file run outside the e2e project). Each database is new
 * and empty, created from template0, and dropped when the file ends.
 */

let own: Promise<PostgresServer> | undefined;
const created: { adminUrl: string; name: string }[] = [];

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
  created.push({ adminUrl: admin, name });
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return url.toString();
}

afterAll(async () => {
  for (const { adminUrl: admin, name } of created.splice(0)) {
    await adminQuery(admin, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch(() => {});
  }
  if (own) await (await own).destroy();
});
