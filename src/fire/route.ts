// src/fire/ owns the fire endpoint: the route and its reply table (this file), the guard against junk
// (guard.ts) and fire-token verification (token.ts). The claim it makes lives in src/occurrence/.
import type { FastifyInstance } from 'fastify';
import { type Clock, formatInstant } from '../clock.js';
import { ChronosError, isChronosError } from '../errors.js';
import { formatFireAt, parseFireAt } from '../fire-at.js';
import type { Job } from '../jobs/model.js';
import { JOB_ID_PATTERN } from '../jobs/model.js';
import type { Logger } from '../logger.js';
import { type AcceptedFire, claimFire } from '../occurrence/claim.js';
import type { Owner, Store } from '../store/store.js';
import { FixedWindowCounter, precheckFireToken, RATE_LIMITED_MSG, RefusalLog } from './guard.js';
import type { FireTokenVerifier } from './token.js';

export const FIRE_PATH = '/api/cron/fire';
/** Row 1 of the reply table in docs/contract.md. */
export const FIRE_BODY_LIMIT = 16 * 1024;

export interface FireRouteDeps {
  store: Store;
  clock: Clock;
  logger: Logger;
  verifier: FireTokenVerifier;
  owner: Owner;
  /** The claims a fire token must carry; the cheap pre-check (row 2) compares them before any signature work. */
  expectedToken: { audience: string | undefined; issuer: string | undefined };
  /** Row 3: verified fires accepted per client address and window; refused requests never count. */
  rateLimit: { max: number; timeWindowMs: number };
  /**
   * Row 2: refused requests an address may send per window before its next ones are pre-checked: those
   * that cannot be a token NAS minted for us are refused without a signature check. Default 10 per second.
   */
  refusalLimit?: { max: number; timeWindowMs: number };
  /** Where refusals are logged (aggregated); one is made from `logger` when absent and flushed on close. */
  refusalLog?: RefusalLog;
  /** Row 5: the service is shutting down; NAS should retry after this many seconds. */
  draining(): number | null;
  /**
   * Rows 6 to 9 and 12, before the reply: NAS delivered this fire and gets a 2xx, so it consumed that arm
   * and may still be finishing the delivery (the provider confirms the next arm only after that).
   */
  onDelivered?(jobId: string, fireAt: number | undefined): void;
  /** Rows 6, 7: the job is gone or inactive; remove its arm at NAS if NAS still holds one. */
  onInactive(jobId: string): void;
  /** Row 9: re-arm the job's current instant. */
  onStale(job: Job): void;
  /** Row 12, called right after the 202 is sent: arm the next occurrence, then run. */
  onAccepted(fire: AcceptedFire): void;
}

/** Row 4: parse the body only after the token is trusted. Returns the parsed fire or a reason. */
export function parseFireBody(
  raw: Buffer | undefined,
): { job_id: string; fire_at: number | undefined } | string {
  let body: unknown;
  try {
    body = JSON.parse(raw && raw.length > 0 ? raw.toString('utf8') : '');
  } catch {
    return 'body must be JSON: {"job_id": "...", "fire_at": "<ISO-8601>"}';
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'body must be a JSON object';
  const { job_id: jobId, fire_at: fireAt } = body as Record<string, unknown>;
  if (typeof jobId !== 'string' || !JOB_ID_PATTERN.test(jobId)) {
    return 'job_id is required and must match [a-z0-9][a-z0-9_-]{0,63}';
  }
  if (fireAt === undefined || fireAt === null) return { job_id: jobId, fire_at: undefined };
  const ms = typeof fireAt === 'string' ? parseFireAt(fireAt) : undefined;
  if (ms === undefined)
    return 'fire_at must be an ISO-8601 instant with an offset, e.g. 2026-03-08T07:00:00Z';
  return { job_id: jobId, fire_at: ms };
}

export async function registerFireRoute(app: FastifyInstance, deps: FireRouteDeps): Promise<void> {
  await app.register(async (scope) => {
    // Keep the body raw: JSON is parsed in the handler, after the token check (rows 2 and 3 before 4).
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: FIRE_BODY_LIMIT }, (_req, body, done) =>
      done(null, body),
    );
    const verified = new FixedWindowCounter(deps.clock, deps.rateLimit.timeWindowMs);
    const refusalLimit = deps.refusalLimit ?? DEFAULT_REFUSAL_LIMIT;
    const refused = new FixedWindowCounter(deps.clock, refusalLimit.timeWindowMs);
    const refusalLog =
      deps.refusalLog ??
      new RefusalLog({ clock: deps.clock, warn: (obj, msg) => deps.logger.warn(obj, msg) });
    scope.addHook('onClose', async () => refusalLog.close());
    const loggedDuplicates = new RecentKeys(DUPLICATES_LOGGED_MAX);

    scope.post(FIRE_PATH, { bodyLimit: FIRE_BODY_LIMIT }, async (request, reply) => {
      const log = deps.logger;
      const ip = request.ip;
      const authorization = request.headers.authorization;
      // Row 2. An address that keeps sending refused tokens has its next implausible ones refused from
      // their text alone; a plausible token is still verified, so NAS's own fires from a shared address
      // (a proxy, a NAT) always reach the signature check.
      if (refused.count(ip) >= refusalLimit.max) {
        const cause = precheckFireToken(authorization, { ...deps.expectedToken, now: deps.clock.now() });
        if (cause !== null) {
          refused.hit(ip);
          refusalLog.record(
            cause,
            ip,
            'refused without a signature check: too many refusals from this address',
          );
          throw invalidToken();
        }
      }
      const verdict = await deps.verifier.verify(authorization);
      if (!verdict.ok) {
        refused.hit(ip);
        refusalLog.record(verdict.code, ip, verdict.detail);
        throw invalidToken();
      }
      // Row 3: only verified fires spend this budget; junk from the same address cannot exhaust it.
      if (verified.hit(ip) > deps.rateLimit.max) {
        const seconds = Math.ceil(verified.remainingMs() / 1000);
        refusalLog.record('rate_limited', ip, undefined, RATE_LIMITED_MSG);
        throw new ChronosError(
          'rate_limited',
          `more than ${deps.rateLimit.max} fires from this address in ${formatWindow(deps.rateLimit.timeWindowMs)}; deliver again in ${seconds} s`,
          undefined,
          { retryAfterSeconds: seconds },
        );
      }
      const fire = parseFireBody(request.body as Buffer | undefined);
      if (typeof fire === 'string') throw new ChronosError('bad_request', fire);
      // A token minted for one job must not fire another; the body is only parsed once the token is
      // trusted, so this is the first place the two can be compared.
      const sub = verdict.claims.sub;
      if (sub !== undefined && sub !== fire.job_id) {
        refused.hit(ip);
        refusalLog.record('subject_mismatch', ip, `token for "${sub}", body for "${fire.job_id}"`);
        throw invalidToken();
      }

      const retryAfter = deps.draining();
      if (retryAfter !== null) throw busy(retryAfter, 'draining', 'shutting down; deliver again later');

      const fireAtIso = fire.fire_at === undefined ? undefined : formatInstant(fire.fire_at);
      const now = deps.clock.now();
      let outcome: Awaited<ReturnType<typeof claimFire>>;
      try {
        outcome = await claimFire(deps.store, {
          job_id: fire.job_id,
          fire_at: fire.fire_at,
          trigger: 'nas',
          now,
          owner: deps.owner,
          logger: log,
        });
      } catch (err) {
        // A store that cannot be written, or this job's file damaged: NAS retries either way (row 11).
        const code = isChronosError(err) ? err.code : undefined;
        log.error({ err, code, job_id: fire.job_id, fire_at: fireAtIso }, 'fire not claimed: store error');
        throw busy(5, 'claim_failed', 'the occurrence could not be recorded; deliver again later');
      }

      const ctx = { job_id: fire.job_id, fire_at: fireAtIso };
      if (outcome.kind !== 'early') deps.onDelivered?.(fire.job_id, fire.fire_at);
      switch (outcome.kind) {
        case 'gone':
          log.info({ ...ctx, status: 'gone' }, 'fire for an unknown job');
          deps.onInactive(fire.job_id);
          return reply.code(200).send({ status: 'gone' });
        case 'inactive':
          log.info({ ...ctx, status: 'inactive', state: outcome.job.state }, 'fire for an inactive job');
          deps.onInactive(fire.job_id);
          return reply.code(200).send({ status: 'inactive' });
        case 'duplicate': {
          // The first duplicate of an occurrence at info; a relay re-sending it in a loop adds debug lines.
          const first = loggedDuplicates.add(`${fire.job_id}\0${outcome.entry.fire_at}`);
          log[first ? 'info' : 'debug'](
            { ...ctx, status: 'duplicate', run_id: outcome.entry.run_id },
            'duplicate fire',
          );
          return reply.code(200).send({ status: 'duplicate' });
        }
        case 'stale':
          log.info(
            { ...ctx, status: 'stale', next_run_at: formatInstant(outcome.job.next_run_at) },
            'stale fire; re-arming',
          );
          deps.onStale(outcome.job);
          return reply.code(200).send({ status: 'stale' });
        case 'early':
          log.info({ ...ctx, status: 'early', retry_after: outcome.retryAfterSeconds }, 'fire arrived early');
          throw new ChronosError('too_early', 'fire_at is more than 60 s ahead', undefined, {
            retryAfterSeconds: outcome.retryAfterSeconds,
          });
        case 'accepted': {
          const { accepted } = outcome;
          // At debug: the fire's one info line is written once its work is done (docs/operations.md, Logs).
          log.debug(
            {
              job_id: accepted.job.id,
              fire_at: formatInstant(accepted.fire_at),
              run_id: accepted.run_id,
              recovered: accepted.recovered,
            },
            'fire accepted',
          );
          reply.code(202).send({
            status: 'accepted',
            job_id: accepted.job.id,
            // The wire form (docs/contract.md, Instants on the wire): NAS reads it back as sent.
            fire_at: formatFireAt(accepted.fire_at),
            run_id: accepted.run_id,
          });
          // Arm-then-run happens after the reply is on the wire; NAS must not wait for the run.
          setImmediate(() => deps.onAccepted(accepted));
          return reply;
        }
      }
    });
  });
}

/** Occurrences whose first duplicate this process remembers having logged (docs/operations.md, Logs). */
const DUPLICATES_LOGGED_MAX = 1_024;

/** The most recent keys, up to a bound: `add` says whether the key is new. */
class RecentKeys {
  private readonly keys = new Set<string>();
  constructor(private readonly limit: number) {}

  add(key: string): boolean {
    if (this.keys.has(key)) return false;
    if (this.keys.size >= this.limit) this.keys.delete(this.keys.values().next().value!);
    this.keys.add(key);
    return true;
  }
}

/** Row 2's default: ten refusals per address and second are verified in full before pre-checking starts. */
export const DEFAULT_REFUSAL_LIMIT = { max: 10, timeWindowMs: 1_000 } as const;

function formatWindow(ms: number): string {
  return ms === 1_000 ? '1 s' : `${ms / 1000} s`;
}

/**
 * Refusals go through the one error handler (src/http/errors.ts), which writes the bodies
 * docs/contract.md fixes; the route has logged or recorded each refusal before throwing it.
 */
function invalidToken(): ChronosError {
  return new ChronosError('invalid_fire_token', 'invalid fire token');
}

function busy(seconds: number, code: 'draining' | 'claim_failed', message: string): ChronosError {
  return new ChronosError(code, message, undefined, { retryAfterSeconds: seconds, expected: true });
}
