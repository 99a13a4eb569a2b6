import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { isChronosError } from '../../../src/errors.js';
import { PostgresStore } from '../../../src/store/postgres/postgres-store.js';
import { MIGRATIONS, migrate, readSchemaState, SCHEMA_VERSION } from '../../../src/store/postgres/schema.js';
import { freshDatabase } from '../../helpers/pg-test.js';
import { adminQuery } from '../../helpers/postgres.js';
import { makeJob } from '../fixtures.js';

async function withSql<T>(url: string, fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

const indexes = async (url: string) =>
  (
    (await adminQuery(url, "SELECT indexname FROM pg_indexes WHERE tablename = 'chronos_ledger'")) as {
      indexname: string;
    }[]
  )
    .map((r) => r.indexname)
    .sort();

describe('PostgreSQL schema migrations', () => {
  it('has version 3 as its newest', () => {
    expect(SCHEMA_VERSION).toBe(3);
    expect(MIGRATIONS.map((m) => m.version)).toEqual([1, 2, 3]);
  });

  it('migrates an empty database to the current version, and a second run changes nothing', async () => {
    const url = await freshDatabase('migrate_empty');
    await withSql(url, async (sql) => {
      expect(await readSchemaState(sql)).toEqual({ state: 'empty', database: 0, code: 3 });
      expect(await migrate(sql)).toEqual([1, 2, 3]);
      expect(await readSchemaState(sql)).toEqual({ state: 'current', database: 3, code: 3 });
      expect(await migrate(sql)).toEqual([]);
    });
    expect(await indexes(url)).toEqual(['chronos_ledger_claimed', 'chronos_ledger_pkey']);
  });

  it('migrates from version 1, keeping the data', async () => {
    const url = await freshDatabase('migrate_v1');
    await withSql(url, async (sql) => {
      expect(await migrate(sql, MIGRATIONS, 1)).toEqual([1]);
      expect(await readSchemaState(sql)).toEqual({ state: 'needs_migration', database: 1, code: 3 });
    });
    expect(await indexes(url)).toEqual(['chronos_ledger_pkey']);
    // A job written at version 1 (its document exactly as the store writes it).
    await adminQuery(
      url,
      `INSERT INTO chronos_jobs (id, doc) VALUES ('kept', '${JSON.stringify(makeJob('kept'))}'::jsonb)`,
    );
    const store = await PostgresStore.open({ url });
    try {
      expect(await store.getJob('kept')).toEqual(makeJob('kept'));
    } finally {
      await store.close();
    }
    expect(await indexes(url)).toEqual(['chronos_ledger_claimed', 'chronos_ledger_pkey']);
    await withSql(url, async (sql) => expect((await readSchemaState(sql)).state).toBe('current'));
  });

  it('migrates from the previous version (2): the arm lease keeps its generation, its next take starts from an empty view', async () => {
    const url = await freshDatabase('migrate_v2');
    await withSql(url, async (sql) => {
      expect(await migrate(sql, MIGRATIONS, 2)).toEqual([1, 2]);
    });
    // A lease row as version 2 left it: taken 4 times, last by a replica of the previous version.
    await adminQuery(
      url,
      "INSERT INTO chronos_arm_lease (name, holder, expires_at, generation) VALUES ('arm', NULL, 0, 4)",
    );
    await adminQuery(
      url,
      `INSERT INTO chronos_jobs (id, doc) VALUES ('kept', '${JSON.stringify(makeJob('kept'))}'::jsonb)`,
    );
    const store = await PostgresStore.open({ url });
    try {
      expect(await store.getJob('kept')).toEqual(makeJob('kept'));
      const lease = store.leaseBackend();
      // Replicas of version 2 recorded no view: the first take at version 3 must not trust the empty one.
      expect(await lease.tryAcquire('a', 1_000)).toEqual({
        generation: 5,
        previousReleased: false,
        viewResetAt: 0,
      });
      await lease.resetView('a', 5);
      await lease.release('a', new Map([['kept', 1_900_000_000_000]]));
      expect(await lease.readView(4)).toEqual(new Map([['kept', 1_900_000_000_000]]));
      expect(await lease.tryAcquire('b', 1_000)).toEqual({
        generation: 6,
        previousReleased: true,
        viewResetAt: 5,
      });
    } finally {
      await store.close();
    }
    await withSql(url, async (sql) => {
      expect(await readSchemaState(sql)).toEqual({ state: 'current', database: 3, code: 3 });
      expect(await migrate(sql)).toEqual([]);
    });
  });

  it('applies each migration once when several processes start together', async () => {
    const url = await freshDatabase('migrate_race');
    const results = await Promise.all(Array.from({ length: 4 }, () => withSql(url, (sql) => migrate(sql))));
    expect(results.flat().sort()).toEqual([1, 2, 3]);
  });

  it('refuses a database newer than the code, with store_schema_newer', async () => {
    const url = await freshDatabase('migrate_newer');
    await withSql(url, (sql) => migrate(sql));
    await adminQuery(url, 'UPDATE chronos_schema SET version = 4');
    const err = await PostgresStore.open({ url }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isChronosError(err, 'store_schema_newer')).toBe(true);
    expect(String((err as Error).message)).toMatch(
      /version 4, newer than this Chronos understands \(version 3\)/,
    );
    expect(await PostgresStore.schemaState({ url })).toEqual({ state: 'newer', database: 4, code: 3 });
  });
});
