import postgres, { type ReservedSql, type Sql } from 'postgres';
import { isChronosError } from '../../errors.js';

/*
 * A connection reserved for one transaction, handled so that a connection that died under it is never
 * written to or handed back.
 *
 * Why: the driver (postgres 3.4.9) throws an uncatchable TypeError from a setImmediate callback when a query
 * is written to a connection whose socket has closed, and `release()` of a reserved connection that has
 * closed puts the dead connection back among the open ones, where the next query hits the same throw
 * (upstream: porsager/postgres issues #1154, #1208, fix not released). Either takes the whole process down
 * on a database restart or a cut connection. So after an error that means "this session is gone" (anything
 * but a server ERROR: a socket error, CONNECTION_CLOSED/ENDED/DESTROYED, or a FATAL/PANIC from the server)
 * no ROLLBACK is sent (the server has ended the transaction with the session) and the connection is not
 * released: the pool has already moved it to its closed ones and reconnects it on demand.
 */

/**
 * Whether `err` means the session is gone, as opposed to a statement error inside a live session or an
 * error of the caller's own code (a ChronosError, a throw from a transaction's function).
 */
export function sessionLost(err: unknown): boolean {
  if (err instanceof postgres.PostgresError) {
    const severity = (err as { severity?: unknown }).severity;
    return severity === 'FATAL' || severity === 'PANIC';
  }
  if (isChronosError(err)) return false;
  const code = (err as { code?: unknown } | undefined)?.code;
  // The driver's connection errors (CONNECTION_CLOSED, ...) and socket errors (ECONNRESET, EPIPE, ...).
  return typeof code === 'string' && /^(CONNECTION_|CONNECT_TIMEOUT$|E[A-Z]+$)/.test(code);
}

export interface Reserved {
  conn: ReservedSql;
  /** Marks the session lost if `err` says so; returns `err`. */
  saw(err: unknown): unknown;
}

/**
 * Runs `fn` on a reserved connection. `fn` sends BEGIN itself (so it can pipeline it); when `fn` throws, a
 * ROLLBACK is sent if the session is still alive (a ROLLBACK outside a transaction is harmless).
 */
export async function withReserved<T>(sql: Sql, fn: (r: Reserved) => Promise<T>): Promise<T> {
  const conn = await sql.reserve();
  let lost = false;
  const reserved: Reserved = {
    conn,
    saw(err) {
      if (sessionLost(err)) lost = true;
      return err;
    },
  };
  try {
    return await fn(reserved);
  } catch (err) {
    reserved.saw(err);
    if (!lost) await conn`ROLLBACK`.catch((e: unknown) => reserved.saw(e));
    throw err;
  } finally {
    if (!lost) conn.release();
  }
}
