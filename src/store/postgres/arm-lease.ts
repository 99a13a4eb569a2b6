import type { Sql } from 'postgres';
import type { ArmBelief } from '../arm-lock.js';
import type { LeaseBackend, LeaseTake } from '../lease-arm-lock.js';

/*
 * The arm lease of replicas sharing one database (docs/architecture.md, "Replicas"): one row of
 * chronos_arm_lease, and the view of NAS arms its holders record in chronos_nas_view. Expiry is judged by
 * the database's clock, never a replica's: replicas' clocks need not agree. Every method is one statement
 * (one round trip) and holds no lock beyond itself.
 */

const LEASE = 'arm';
const NOW_MS = 'floor(extract(epoch from clock_timestamp()) * 1000)::bigint';

export class PostgresLeaseBackend implements LeaseBackend {
  constructor(private readonly sql: Sql) {}

  async tryAcquire(holder: string, ttlMs: number): Promise<LeaseTake | null> {
    const rows = await this.sql.unsafe(
      `INSERT INTO chronos_arm_lease AS l (name, holder, expires_at, generation)
         VALUES ($1, $2, ${NOW_MS} + $3, 1)
       ON CONFLICT (name) DO UPDATE
         SET holder = excluded.holder, expires_at = excluded.expires_at, generation = l.generation + 1
         WHERE l.holder IS NULL OR l.holder = excluded.holder OR l.expires_at <= ${NOW_MS}
       RETURNING generation, released_generation, view_reset_generation`,
      [LEASE, holder, ttlMs],
    );
    const row = rows[0];
    if (row === undefined) return null;
    const generation = Number(row['generation']);
    return {
      generation,
      previousReleased: Number(row['released_generation']) === generation - 1,
      viewResetAt: Number(row['view_reset_generation']),
    };
  }

  async renew(holder: string, ttlMs: number): Promise<boolean> {
    const rows = await this.sql.unsafe(
      `UPDATE chronos_arm_lease SET expires_at = ${NOW_MS} + $3 WHERE name = $1 AND holder = $2 RETURNING 1`,
      [LEASE, holder, ttlMs],
    );
    return rows.length > 0;
  }

  async release(holder: string, changes: ReadonlyMap<string, ArmBelief>): Promise<void> {
    const rows = [...changes].map(([job_id, belief]) =>
      typeof belief === 'number'
        ? { job_id, belief: 'armed', fire_at: belief }
        : { job_id, belief, fire_at: null },
    );
    // One statement: the beliefs are written only if the lease is still this holder's, tagged with its
    // generation, and the lease is freed with them (a data-modifying CTE sees the UPDATE's RETURNING).
    await this.sql.unsafe(
      `WITH lease AS (
         UPDATE chronos_arm_lease SET holder = NULL, released_generation = generation
           WHERE name = $1 AND holder = $2 RETURNING generation
       ), recorded AS (
         INSERT INTO chronos_nas_view AS v (job_id, fire_at, belief, generation)
           SELECT r.job_id, r.fire_at, r.belief, lease.generation
             FROM lease, jsonb_to_recordset($3::text::jsonb) AS r (job_id text, fire_at bigint, belief text)
         ON CONFLICT (job_id) DO UPDATE
           SET fire_at = excluded.fire_at, belief = excluded.belief, generation = excluded.generation
         RETURNING 1
       )
       SELECT (SELECT count(*) FROM lease) AS released, (SELECT count(*) FROM recorded) AS recorded`,
      [LEASE, holder, JSON.stringify(rows)],
    );
  }

  async readView(after: number | null): Promise<Map<string, ArmBelief>> {
    const rows = await this.sql.unsafe(
      'SELECT job_id, fire_at, belief FROM chronos_nas_view WHERE generation > $1',
      [after ?? 0],
    );
    const view = new Map<string, ArmBelief>();
    for (const row of rows) {
      const belief = row['belief'] as string;
      view.set(
        row['job_id'] as string,
        belief === 'armed' ? Number(row['fire_at']) : belief === 'absent' ? 'absent' : 'unknown',
      );
    }
    return view;
  }

  async resetView(holder: string, generation: number): Promise<void> {
    await this.sql.unsafe(
      `WITH lease AS (
         UPDATE chronos_arm_lease SET view_reset_generation = $3
           WHERE name = $1 AND holder = $2 RETURNING 1
       )
       DELETE FROM chronos_nas_view WHERE EXISTS (SELECT 1 FROM lease)`,
      [LEASE, holder, generation],
    );
  }
}
