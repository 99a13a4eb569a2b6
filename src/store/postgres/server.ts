import { mkdir } from 'node:fs/promises';
import type { Clock } from '../../clock.js';
import type { Logger } from '../../logger.js';
import type { DamagedRecord } from '../store.js';
import { ConnectingStore } from './connecting-store.js';

export interface ServerPostgresSettings {
  url: string;
  poolSize: number;
  statementTimeoutMs: number;
}

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
  settings: ServerPostgresSettings,
  deps: ServerPostgresDeps,
): Promise<ConnectingStore> {
  const { logger } = deps;
  await mkdir(deps.dataDir, { recursive: true }).catch(() => {});
  return ConnectingStore.start({
    url: settings.url,
    poolSize: settings.poolSize,
    statementTimeoutMs: settings.statementTimeoutMs,
    onDamaged: deps.onDamaged,
    clock: deps.clock,
    onAttemptFailed: (err, attempt, retryInMs) =>
      logger.error(
        { code: err.code, attempt, retry_in_ms: retryInMs, error: err.message },
        'database not reachable: fires and admin calls are answered 503 until it is; retrying',
      ),
    onReady: (attempts) =>
      logger.info({ store: 'postgres', attempts, pool_size: settings.poolSize }, 'database connected'),
    onFatal: (err) => {
      logger.error({ code: err.code }, err.message);
      deps.onFatal();
    },
  });
}
