import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { Job } from '../jobs/model.js';
import { JOB_ID_PATTERN } from '../jobs/model.js';
import { formatFireAt, parseFireAt } from '../nas/nas.js';
import type { Owner, Store } from '../store/store.js';
import { type AcceptedFire, claimFire } from './claim-fire.js';
import type { FireTokenVerifier } from './token.js';

export const FIRE_PATH = '/api/cron/fire';
/** SPEC §2 row 1. */
export const FIRE_BODY_LIMIT = 16 * 1024;
export const INVALID_TOKEN_BODY = { error: 'invalid fire token' } as const;

export interface FireRouteDeps {
  store: Store;
  clock: Clock;
  logger: Logger;
  verifier: FireTokenVerifier;
  owner: Owner;
  rateLimit: { max: number; timeWindowMs: number };
  /** Row 5: the service is shutting down; NAS should retry after this many seconds. */
  draining(): number | null;
  /** Rows 6, 7: the job is gone or inactive; cancel its arm at NAS in the background. */
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
    // Keep the body raw: JSON is parsed in the handler, after the token check (rows 3 before 4).
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: FIRE_BODY_LIMIT }, (_req, body, done) =>
      done(null, body),
    );
    await scope.register(rateLimit, {
      global: false,
      hook: 'preHandler',
      addHeadersOnExceeding: {
        'x-ratelimit-limit': false,
        'x-ratelimit-remaining': false,
        'x-ratelimit-reset': false,
      },
    });

    scope.post(
      FIRE_PATH,
      {
        bodyLimit: FIRE_BODY_LIMIT,
        config: { rateLimit: { max: deps.rateLimit.max, timeWindow: deps.rateLimit.timeWindowMs } },
      },
      async (request, reply) => {
        const log = deps.logger;
        const verdict = await deps.verifier.verify(request.headers.authorization);
        if (!verdict.ok) {
          log.warn(
            { code: verdict.code, detail: verdict.detail, ip: request.ip },
            'fire refused: invalid token',
          );
          return reply.code(401).send(INVALID_TOKEN_BODY);
        }
        const fire = parseFireBody(request.body as Buffer | undefined);
        if (typeof fire === 'string') return reply.code(400).send({ error: 'bad_request', message: fire });
        // A token minted for one job must not fire another; the body is only parsed once the token is
        // trusted, so this is the first place the two can be compared.
        const sub = verdict.claims.sub;
        if (sub !== undefined && sub !== fire.job_id) {
          log.warn(
            { code: 'subject_mismatch', sub, job_id: fire.job_id, ip: request.ip },
            'fire refused: invalid token',
          );
          return reply.code(401).send(INVALID_TOKEN_BODY);
        }

        const retryAfter = deps.draining();
        if (retryAfter !== null)
          return busy(reply, retryAfter, 'draining', 'shutting down; deliver again later');

        const fireAtIso = fire.fire_at === undefined ? undefined : formatFireAt(fire.fire_at);
        const now = deps.clock.now();
        let outcome: Awaited<ReturnType<typeof claimFire>>;
        try {
          outcome = await claimFire(deps.store, {
            job_id: fire.job_id,
            fire_at: fire.fire_at,
            trigger: 'nas',
            now,
            owner: deps.owner,
            log: (obj, msg) => log.error(obj, msg),
          });
        } catch (err) {
          log.error({ err, job_id: fire.job_id, fire_at: fireAtIso }, 'fire not claimed: store write failed');
          return busy(reply, 5, 'claim_failed', 'the occurrence could not be recorded; deliver again later');
        }

        const ctx = { job_id: fire.job_id, fire_at: fireAtIso };
        switch (outcome.kind) {
          case 'gone':
            log.info({ ...ctx, status: 'gone' }, 'fire for an unknown job; cancelling its arm');
            deps.onInactive(fire.job_id);
            return reply.code(200).send({ status: 'gone' });
          case 'inactive':
            log.info({ ...ctx, status: 'inactive', state: outcome.job.state }, 'fire for an inactive job');
            deps.onInactive(fire.job_id);
            return reply.code(200).send({ status: 'inactive' });
          case 'duplicate':
            log.info({ ...ctx, status: 'duplicate', run_id: outcome.entry.run_id }, 'duplicate fire');
            return reply.code(200).send({ status: 'duplicate' });
          case 'stale':
            log.info(
              { ...ctx, status: 'stale', next_run_at: iso(outcome.job.next_run_at) },
              'stale fire; re-arming',
            );
            deps.onStale(outcome.job);
            return reply.code(200).send({ status: 'stale' });
          case 'early':
            log.info(
              { ...ctx, status: 'early', retry_after: outcome.retryAfterSeconds },
              'fire arrived early',
            );
            reply.header('retry-after', String(outcome.retryAfterSeconds));
            return reply.code(425).send({ error: 'too_early', retry_after: outcome.retryAfterSeconds });
          case 'accepted': {
            const { accepted } = outcome;
            const atIso = formatFireAt(accepted.fire_at);
            log.info(
              {
                job_id: accepted.job.id,
                fire_at: atIso,
                run_id: accepted.run_id,
                recovered: accepted.recovered,
              },
              'fire accepted',
            );
            reply
              .code(202)
              .send({ status: 'accepted', job_id: accepted.job.id, fire_at: atIso, run_id: accepted.run_id });
            // Arm-then-run happens after the reply is on the wire; NAS must not wait for the run.
            setImmediate(() => deps.onAccepted(accepted));
            return reply;
          }
        }
      },
    );
  });
}

function busy(reply: FastifyReply, seconds: number, error: string, message: string): FastifyReply {
  reply.header('retry-after', String(seconds));
  return reply.code(503).send({ error, message });
}

function iso(ms: number | null): string | null {
  return ms === null ? null : formatFireAt(ms);
}
