import type { FastifyError, FastifyInstance } from 'fastify';
import { type ChronosError, type ErrorCode, isChronosError } from '../errors.js';

/** The one place error codes become HTTP statuses. */
export const STATUS_BY_CODE: Record<ErrorCode, number> = {
  invalid_config: 500,
  invalid_schedule: 400,
  validation_failed: 400,
  invalid_json: 400,
  unsupported_media_type: 415,
  commands_disabled: 400,
  bad_request: 400,
  not_found: 404,
  rate_limited: 429,
  job_not_found: 404,
  job_exists: 409,
  job_file_managed: 409,
  job_damaged: 409,
  run_in_progress: 409,
  store_corrupt: 503,
  store_unavailable: 503,
  store_locked: 503,
  invalid_fire_token: 401,
  too_early: 425,
  draining: 503,
  claim_failed: 503,
  nas_unreachable: 502,
  nas_rejected: 502,
  nas_invalid_client: 502,
  nas_unauthorized: 502,
  unauthorized: 401,
  admin_disabled: 404,
  internal: 500,
};

/** Row 2 of the fire reply table in docs/contract.md: one body for every cause, so refusals teach nothing. */
export const INVALID_TOKEN_BODY = { error: 'invalid fire token' } as const;

/** The reply body for a ChronosError; the bodies docs/contract.md fixes for the fire route are made here too. */
export function errorBody(err: ChronosError, status: number): Record<string, unknown> {
  if (err.code === 'invalid_fire_token') return INVALID_TOKEN_BODY;
  if (err.code === 'too_early') return { error: err.code, retry_after: err.retryAfterSeconds };
  // 5xx bodies carry the code only: internals (paths, stack) stay in the log.
  if (status >= 500 && !err.expected)
    return { error: err.code, message: 'the service cannot handle this request right now; try again later' };
  return { error: err.code, message: err.message, ...(status >= 500 ? {} : (err.details ?? {})) };
}

export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (isChronosError(err)) {
      const status = STATUS_BY_CODE[err.code];
      if (status >= 500 && !err.expected) request.log.error({ err, code: err.code }, 'request failed');
      const retryAfter = err.retryAfterSeconds ?? (status === 503 ? 5 : undefined);
      if (retryAfter !== undefined) reply.header('retry-after', String(retryAfter));
      return reply.code(status).send(errorBody(err, status));
    }
    const status = typeof err.statusCode === 'number' && err.statusCode >= 400 ? err.statusCode : 500;
    if (status >= 500) {
      request.log.error({ err }, 'unhandled error');
      return reply.code(500).send({ error: 'internal', message: 'internal error' });
    }
    // Fastify's own client errors (body too large, bad content type, malformed JSON). The rate limiter
    // throws a plain object without a code; "bad_request" would misstate why a 429 was sent.
    const code = err.code ?? ((status === 429 ? 'rate_limited' : 'bad_request') satisfies ErrorCode);
    return reply.code(status).send({ error: code, message: err.message });
  });
  app.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .send({ error: 'not_found' satisfies ErrorCode, message: `no route ${request.method} ${request.url}` }),
  );
}
