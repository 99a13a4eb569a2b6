import type { FastifyRequest } from 'fastify';
import type { Clock } from '../clock.js';
import { RefusalLog } from '../fire/guard.js';
import type { Logger } from '../logger.js';

/*
 * What the admin API writes to the log (docs/operations.md, Logs): one `admin change` line per change it
 * made, naming the action, the job and a fingerprint of the token used (never the token), and refused
 * requests in aggregate, as the fire route does for its refusals.
 */

export const AUDIT_MSG = 'admin change';
export const ADMIN_REFUSED_MSG = 'admin request refused: missing or wrong token';
export const ADMIN_REFUSED_CODE = 'admin_unauthorized';
export const ADMIN_REFUSALS_SUMMARY_MSG = 'admin refusals in the last interval';

export type AuditAction = 'create' | 'update' | 'delete' | 'pause' | 'resume' | 'run-now' | 'damaged-remove';

/** The first 8 hex digits of a token's SHA-256: enough to tell tokens apart, useless for finding one. */
export function tokenFingerprint(sha256: Buffer): string {
  return sha256.subarray(0, 4).toString('hex');
}

export interface AdminAudit {
  /** Logs one change the API made (after it is saved). */
  change(request: FastifyRequest, action: AuditAction, jobId: string, extra?: Record<string, unknown>): void;
  /** Counts a request refused for its token; `given` is the SHA-256 of the token it carried, if any. */
  refused(request: FastifyRequest, given: Buffer | null): void;
  close(): void;
}

export function createAdminAudit(opts: {
  logger: Logger;
  clock: Clock;
  /** SHA-256 of the configured admin token: the one every accepted request used. */
  tokenSha256: Buffer;
}): AdminAudit {
  const token = tokenFingerprint(opts.tokenSha256);
  const refusals = new RefusalLog({
    clock: opts.clock,
    warn: (obj, msg) => opts.logger.warn(obj, msg),
    summaryMsg: ADMIN_REFUSALS_SUMMARY_MSG,
  });
  return {
    change(request, action, jobId, extra = {}) {
      opts.logger.info({ action, job_id: jobId, token_sha256: token, ip: request.ip, ...extra }, AUDIT_MSG);
    },
    refused(request, given) {
      // A fingerprint of the wrong token tells an operator which old or foreign token a client still sends.
      const route = `${request.method} ${request.url.slice(0, 200)}`;
      const detail =
        given === null ? `${route}: no bearer token` : `${route}: token_sha256 ${tokenFingerprint(given)}`;
      refusals.record(ADMIN_REFUSED_CODE, request.ip, detail, ADMIN_REFUSED_MSG);
    },
    close: () => refusals.close(),
  };
}
