import { type Config, missingNasSettings } from '../config/config.js';
import { checkTokenSourceSync } from './token-source.js';

/**
 * Why the chronos provider cannot work with this configuration, or null when it can. Decided without network:
 * every NAS setting present and a readable, non-empty access token (the key itself is checked by loadConfig).
 * Shared by the server's start-up and `chronos check`, so both give the same answer.
 */
export function chronosUnavailableReason(config: Config): string | null {
  const missing = missingNasSettings(config);
  if (missing.length > 0) return `missing ${missing.join(', ')}`;
  return checkTokenSourceSync({ token: config.accessToken, file: config.accessTokenFile });
}

/** The start-up error for an explicit CHRONOS_PROVIDER=chronos that cannot work. */
export function explicitChronosProblem(reason: string): string {
  return `CHRONOS_PROVIDER=chronos cannot work: ${reason}; fix it, or set CHRONOS_PROVIDER=auto to fall back to the builtin timer`;
}
