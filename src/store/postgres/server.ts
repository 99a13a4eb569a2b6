import { mkdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Clock } from '../../clock.js';
import type { Config } from '../../config/config.js';
import type { DamagedRecord } from '../store.js';
import { ConnectingStore } from './connecting-store.js';

export interface ServerPostgresDeps {
  clock: Clock;
  logger: Logger;
  onDamaged: (record: DamagedRecord) => void;
  /** Still used for the key-set cache, which may be lost: created if missing, never required. */
  dataDir: string;
  /** The database turned out newer than this code after start (it was unreachable at start). */
  onFatal: () => void;
}

/** The PostgreSQL store as `chronos serve` opens it (src/main.ts), with its logging. */
export async function openServerPostgresStore(
  config: Config,
  deps: ServerPostgresDeps,
): Promise<ConnectingStore> {
  const { logger } = deps;
  await mkdir(deps.dataDir, { recursive: true }).catch(() => {});
  return ConnectingStore.start({
    url: config.databaseUrl!,
    poolSize: config.databasePoolSize,
    statementTimeoutMs: config.databaseStatementTimeoutMs,
    onDamaged: deps.onDamaged,
    clock: deps.clock,
    onAttemptFailed: (err, attempt, retryInMs) =>
      logger.error(
        { code: err.code, attempt, retry_in_ms: retryInMs, error: err.message },
        'database not reachable: fires and admin calls are answered 503 until it is; retrying',
      ),
    onReady: (attempts) =>
      logger.info({ store: 'postgres', attempts, pool_size: config.databasePoolSize }, 'database connected'),
    onFatal: (err) => {
      logger.fatal({ code: err.code }, err.message);
      deps.onFatal();
    },
  });
}
