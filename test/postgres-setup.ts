import type { TestProject } from 'vitest/node';
import { type PostgresServer, startPostgres } from './helpers/postgres.js';

/*
 * One PostgreSQL server per vitest run, for the PostgreSQL store tests (`*.e2e.test.ts`): each test file
 * creates its own databases on it (test/helpers/pg-test.ts). Tests that stop the server on purpose start
 * a private one instead, so they never cut the others off.
 */

declare module 'vitest' {
  export interface ProvidedContext {
    postgres: { adminUrl: string; port: number } | null;
  }
}

let server: PostgresServer | undefined;

export async function setup(project: TestProject): Promise<void> {
  server = await startPostgres({ label: 'shared' });
  project.provide('postgres', { adminUrl: server.adminUrl, port: server.port });
}

export async function teardown(): Promise<void> {
  await server?.destroy();
}
