import type { ReservedSql, Sql } from 'postgres';
import { ChronosError } from '../../errors.js';
import { withReserved } from './reserved.js';

/*
 * The PostgreSQL store's tables (all prefixed `chronos_`, so they can share a database with others):
 *
 *   chronos_schema   one row: the schema version the database is at
 *   chronos_jobs     id, doc jsonb (the whole Job: fields other features add need no migration)
 *   chronos_ledger   primary key (job_id, fire_at); status, trigger, run_id, owner, claimed_at and the lease
 *                    (expires_at) as columns, so a claim is a row lock and an insert, and a lease renewal
 *                    one UPDATE
 *   chronos_runs     (job_id, run_id), seq (append order: newest first = highest seq), doc jsonb
 *   chronos_arm_lease  one row: which replica may call NAS to arm now (src/store/postgres/arm-lease.ts)
 *   chronos_nas_view   per job, what the arm lease's holders last knew NAS to hold (an instant, absent or
 *                    unknown), written when a holder releases the lease, so the next holder takes it over
 *   chronos_damaged  rows set aside: a run history entry that cannot be read, or a damaged job deleted by
 *                    the operator; never deleted by Chronos
 *
 * Instants are epoch milliseconds (bigint), as everywhere in Chronos. Ledger and runs go with their job
 * (ON DELETE CASCADE).
 *
 * Migrations are forward-only, each in its own transaction with the version bump, applied at start under a
 * session advisory lock (two replicas starting together apply each once). Each is also idempotent
 * (IF NOT EXISTS), so a migration interrupted before its version row was updated can run again.
 */

export interface Migration {
  version: number;
  description: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'jobs, fire ledger, run history, damaged records, arm lease',
    sql: `
      CREATE TABLE IF NOT EXISTS chronos_jobs (
        id text PRIMARY KEY,
        doc jsonb NOT NULL
      );
      CREATE TABLE IF NOT EXISTS chronos_ledger (
        job_id text NOT NULL REFERENCES chronos_jobs (id) ON DELETE CASCADE,
        fire_at bigint NOT NULL,
        status text NOT NULL
          CHECK (status IN ('claimed', 'finished', 'skipped', 'missed', 'interrupted')),
        trigger text NOT NULL,
        run_id text NOT NULL,
        owner_boot_id text NOT NULL,
        owner_pid integer NOT NULL,
        owner_host text NOT NULL,
        claimed_at bigint NOT NULL,
        expires_at bigint NOT NULL,
        PRIMARY KEY (job_id, fire_at)
      );
      CREATE TABLE IF NOT EXISTS chronos_runs (
        job_id text NOT NULL REFERENCES chronos_jobs (id) ON DELETE CASCADE,
        run_id text NOT NULL,
        seq bigserial NOT NULL,
        doc jsonb NOT NULL,
        PRIMARY KEY (job_id, run_id)
      );
      CREATE INDEX IF NOT EXISTS chronos_runs_by_seq ON chronos_runs (job_id, seq DESC);
      CREATE TABLE IF NOT EXISTS chronos_damaged (
        id bigserial PRIMARY KEY,
        job_id text NOT NULL,
        kind text NOT NULL CHECK (kind IN ('job', 'history')),
        doc jsonb,
        error text NOT NULL,
        moved_at bigint NOT NULL
      );
      CREATE TABLE IF NOT EXISTS chronos_arm_lease (
        name text PRIMARY KEY,
        holder text,
        expires_at bigint NOT NULL,
        generation bigint NOT NULL
      );`,
  },
  {
    version: 2,
    description: 'index of claimed ledger rows (boot recovery, lease renewal)',
    sql: `
      CREATE INDEX IF NOT EXISTS chronos_ledger_claimed
        ON chronos_ledger (owner_boot_id) WHERE status = 'claimed';`,
  },
  {
    version: 3,
    description: "the arm lease's shared view of NAS arms (each instant armed once across replicas)",
    // No foreign key to chronos_jobs: NAS may hold an arm for a job the store no longer has (an orphan to
    // cancel). An existing lease row gets released_generation 0, so its next take starts from an empty view.
    sql: `
      ALTER TABLE chronos_arm_lease
        ADD COLUMN IF NOT EXISTS released_generation bigint NOT NULL DEFAULT 0,
        ADD COLUMN IF NOT EXISTS view_reset_generation bigint NOT NULL DEFAULT 0;
      CREATE TABLE IF NOT EXISTS chronos_nas_view (
        job_id text PRIMARY KEY,
        fire_at bigint,
        belief text NOT NULL CHECK (belief IN ('armed', 'absent', 'unknown')),
        generation bigint NOT NULL,
        CHECK ((belief = 'armed') = (fire_at IS NOT NULL))
      );
      CREATE INDEX IF NOT EXISTS chronos_nas_view_by_generation ON chronos_nas_view (generation);`,
  },
];

/** The version this code writes and reads. */
export const SCHEMA_VERSION = MIGRATIONS.at(-1)?.version ?? 0;

/** Taken for the duration of the migrations: an arbitrary constant, the same for every Chronos. */
const MIGRATION_LOCK_KEY = 0x4368726f6e6f73n; // "Chronos"

export type SchemaStateKind = 'empty' | 'current' | 'needs_migration' | 'newer';

export interface SchemaState {
  state: SchemaStateKind;
  /** The database's version (0 when it has no Chronos tables). */
  database: number;
  /** The version this code expects. */
  code: number;
}

type Queryable = Sql | ReservedSql;

/** Reads the database's schema version without changing anything. */
export async function readSchemaState(sql: Queryable): Promise<SchemaState> {
  const [exists] = await sql`SELECT to_regclass('chronos_schema') IS NOT NULL AS present`;
  let database = 0;
  if (exists?.['present']) {
    const [row] = await sql`SELECT version FROM chronos_schema`;
    database = Number(row?.['version'] ?? 0);
  }
  const state: SchemaStateKind =
    database === 0
      ? 'empty'
      : database === SCHEMA_VERSION
        ? 'current'
        : database < SCHEMA_VERSION
          ? 'needs_migration'
          : 'newer';
  return { state, database, code: SCHEMA_VERSION };
}

export function schemaNewerError(state: SchemaState): ChronosError {
  return new ChronosError(
    'store_schema_newer',
    `the database's Chronos schema is version ${state.database}, newer than this Chronos understands ` +
      `(version ${state.code}): a newer Chronos has migrated it. Run that version (or newer); migrations ` +
      'only go forward, so this one will not start on it.',
    { database_version: state.database, code_version: state.code },
  );
}

/**
 * Brings the schema to `target` (default SCHEMA_VERSION) under an advisory lock. Returns the versions
 * applied. Throws `store_schema_newer` when the database is ahead of the code.
 */
export async function migrate(
  sql: Sql,
  migrations: readonly Migration[] = MIGRATIONS,
  target: number = SCHEMA_VERSION,
): Promise<number[]> {
  return withReserved(sql, async ({ conn }) => {
    // Session-level: held across the migrations' own transactions; a lost session releases it by itself.
    await conn`SELECT pg_advisory_lock(${MIGRATION_LOCK_KEY.toString()}::bigint)`;
    const before = await readSchemaState(conn);
    if (before.database > target) throw schemaNewerError({ ...before, code: target });
    const applied: number[] = [];
    for (const migration of migrations) {
      if (migration.version <= before.database || migration.version > target) continue;
      await conn.unsafe('BEGIN');
      await conn.unsafe(migration.sql);
      await conn.unsafe(
        'CREATE TABLE IF NOT EXISTS chronos_schema (version integer NOT NULL, migrated_at timestamptz NOT NULL DEFAULT now())',
      );
      await conn`DELETE FROM chronos_schema`;
      await conn`INSERT INTO chronos_schema (version) VALUES (${migration.version})`;
      await conn.unsafe('COMMIT');
      applied.push(migration.version);
    }
    await conn`SELECT pg_advisory_unlock(${MIGRATION_LOCK_KEY.toString()}::bigint)`;
    return applied;
  });
}
