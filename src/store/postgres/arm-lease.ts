import type { Sql } from 'postgres';
import type { LeaseBackend } from '../lease-arm-lock.js';

/*
 * The arm lease of replicas sharing one database (docs/architecture.md, "Replicas"): one row of
 * chronos_arm_lease. Expiry is judged by the database's clock, never a replica's: replicas' clocks need
 * not agree. Every statement is one round trip and holds no lock beyond itself.
 */

const LEASE = 'arm';
const NOW_MS = 'floor(extract(epoch from clock_timestamp()) * 1000)::bigint';

export class PostgresLeaseBackend implements LeaseBackend {
  constructor(private readonly sql: Sql) {}

  async tryAcquire(holder: string, ttlMs: number): Promise<number | null> {
    const rows = await this.sql.unsafe(
      `INSERT INTO chronos_arm_lease AS l (name, holder, expires_at, generation)
         VALUES ($1, $2, ${NOW_MS} + $3, 1)
       ON CONFLICT (name) DO UPDATE
         SET holder = excluded.holder, expires_at = excluded.expires_at, generation = l.generation + 1
         WHERE l.holder IS NULL OR l.holder = excluded.holder OR l.expires_at <= ${NOW_MS}
       RETURNING generation`,
      [LEASE, holder, ttlMs],
    );
    const generation = rows[0]?.['generation'];
    return generation === undefined ? null : Number(generation);
  }

  async renew(holder: string, ttlMs: number): Promise<boolean> {
    const rows = await this.sql.unsafe(
      `UPDATE chronos_arm_lease SET expires_at = ${NOW_MS} + $3 WHERE name = $1 AND holder = $2 RETURNING 1`,
      [LEASE, holder, ttlMs],
    );
    return rows.length > 0;
  }

  async release(holder: string): Promise<void> {
    await this.sql.unsafe('UPDATE chronos_arm_lease SET holder = NULL WHERE name = $1 AND holder = $2', [
      LEASE,
      holder,
    ]);
  }
}
