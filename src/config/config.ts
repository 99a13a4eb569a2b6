// src/config/ owns configuration: the typed Config, reading it from the environment (load.ts) and parsing
// the variables' values (inline-key.ts). Core: it imports only jobs/ and the root files.
/** The typed, frozen configuration every part receives. Built only by loadConfig (src/config/load.ts). */
export interface Config {
  port: number;
  host: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** LOG_FORMAT; undefined: pretty when stdout is a terminal, JSON otherwise (decided where the logger is made). */
  logFormat: 'json' | 'pretty' | undefined;
  /** `auto`: chronos when every NAS setting is present, builtin otherwise. */
  provider: 'chronos' | 'builtin' | 'auto';
  portalUrl: string | undefined;
  callbackUrl: string | undefined;
  expectedAudience: string | undefined;
  jwksUrl: string | undefined;
  firePublicKey: string | undefined;
  accessToken: string | undefined;
  accessTokenFile: string | undefined;
  dataDir: string;
  jobsFile: string | undefined;
  timezone: string;
  /** From CHRONOS_ADMIN_TOKEN, or read from CHRONOS_ADMIN_TOKEN_FILE at start. */
  adminToken: string | undefined;
  idleExitSeconds: number;
  shutdownGraceSeconds: number;
  allowCommands: boolean;
  /** Verified fires per second accepted from one client address (docs/contract.md, row 3); benchmarks raise it. */
  fireRateLimit: number;
  /** Which proxies' X-Forwarded-For names the client (false: the TCP peer is the client). */
  trustProxy: boolean | number | string[];
  /** Longest fire-token lifetime accepted (`exp - iat`); NAS mints 90-120 s tokens. */
  fireTokenMaxLifetimeSeconds: number;
  /**
   * PostgreSQL connection URL (CHRONOS_DATABASE_URL, or read from CHRONOS_DATABASE_URL_FILE at start): when
   * set, jobs, ledger and run history live there instead of the data directory (docs/architecture.md).
   */
  databaseUrl: string | undefined;
  /** Connections the PostgreSQL store keeps at most. */
  databasePoolSize: number;
  /** Upper bound of every PostgreSQL statement, lock waits included. */
  databaseStatementTimeoutMs: number;
  /** Where alerts of jobs without their own `notify.destinations` go (docs/operations.md, Alerts). */
  notifyUrl: string | undefined;
  notifyFormat: 'standard' | 'slack';
  /** Signs alerts (Standard Webhooks `whsec_…`), from CHRONOS_NOTIFY_SECRET or its _FILE. */
  notifySecret: string | undefined;
  /** Signs calls to http targets the same way, from CHRONOS_TARGET_SIGNING_SECRET or its _FILE. */
  targetSigningSecret: string | undefined;
  /** A job that cannot be armed at NAS for this long raises `arming_failed`; 0: never. */
  armingAlertSeconds: number;
}

/** NAS mints fire tokens for 90-120 s; a token meant to live longer than this is refused. */
export const DEFAULT_FIRE_TOKEN_MAX_LIFETIME_SECONDS = 300;

/** Every variable loadConfig reads, with its default and meaning; .env.example and docs are checked against it. */
export const CONFIG_VARIABLES = [
  'PORT',
  'HOST',
  'LOG_LEVEL',
  'LOG_FORMAT',
  'CHRONOS_PROVIDER',
  'CHRONOS_PORTAL_URL',
  'CHRONOS_CALLBACK_URL',
  'CHRONOS_EXPECTED_AUDIENCE',
  'CHRONOS_JWKS_URL',
  'CHRONOS_FIRE_PUBLIC_KEY',
  'CHRONOS_ACCESS_TOKEN',
  'CHRONOS_ACCESS_TOKEN_FILE',
  'CHRONOS_DATA_DIR',
  'CHRONOS_JOBS_FILE',
  'CHRONOS_TIMEZONE',
  'CHRONOS_ADMIN_TOKEN',
  'CHRONOS_ADMIN_TOKEN_FILE',
  'CHRONOS_IDLE_EXIT_SECONDS',
  'CHRONOS_SHUTDOWN_GRACE_SECONDS',
  'CHRONOS_ALLOW_COMMANDS',
  'CHRONOS_FIRE_RATE_LIMIT',
  'CHRONOS_TRUST_PROXY',
  'CHRONOS_FIRE_TOKEN_MAX_LIFETIME_SECONDS',
  'CHRONOS_DATABASE_URL',
  'CHRONOS_DATABASE_URL_FILE',
  'CHRONOS_DATABASE_POOL_SIZE',
  'CHRONOS_DATABASE_STATEMENT_TIMEOUT_MS',
  'CHRONOS_NOTIFY_URL',
  'CHRONOS_NOTIFY_FORMAT',
  'CHRONOS_NOTIFY_SECRET',
  'CHRONOS_NOTIFY_SECRET_FILE',
  'CHRONOS_TARGET_SIGNING_SECRET',
  'CHRONOS_TARGET_SIGNING_SECRET_FILE',
  'CHRONOS_ARMING_ALERT_SECONDS',
] as const;
export type ConfigVariable = (typeof CONFIG_VARIABLES)[number];

/** The NAS settings the chronos provider cannot work without (docs/contract.md, hop 1). */
export function missingNasSettings(config: Config): string[] {
  const missing: string[] = [];
  if (!config.portalUrl) missing.push('CHRONOS_PORTAL_URL');
  if (!config.callbackUrl) missing.push('CHRONOS_CALLBACK_URL');
  if (!config.expectedAudience) missing.push('CHRONOS_EXPECTED_AUDIENCE');
  if (!config.jwksUrl && !config.firePublicKey) missing.push('CHRONOS_JWKS_URL or CHRONOS_FIRE_PUBLIC_KEY');
  if (!config.accessToken && !config.accessTokenFile)
    missing.push('CHRONOS_ACCESS_TOKEN or CHRONOS_ACCESS_TOKEN_FILE');
  return missing;
}
