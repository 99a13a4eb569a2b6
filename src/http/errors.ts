import type { FastifyError, FastifyInstance } from 'fastify';
import { type ErrorCode, isChronosError } from '../errors.js';

/** The one place error codes become HTTP statuses. */
export const STATUS_BY_CODE: Record<ErrorCode, number> = {
  invalid_config: 500,
  invalid_schedule: 400,
  validation_failed: 400,
  invalid_json: 400,
  unsupported_media_type: 415,
  commands_disabled: 400,
  job_not_found: 404,
  job_exists: 409,
  job_file_managed: 409,
  job_damaged: 409,
  run_in_progress: 409,
  store_corrupt: 503,
  store_unavailable: 503,
  store_locked: 503,
  invalid_fire_token: 401,
  fire_too_early: 425,
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

export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (isChronosError(err)) {
      const status = STATUS_BY_CODE[err.code];
      if (status >= 500) request.log.error({ err, code: err.code }, 'request failed');
      // 5xx bodies carry the code only: internals (paths, stack) stay in the log.
      const body =
        status >= 500
          ? { error: err.code, message: 'the service cannot handle this request right now; try again later' }
          : { error: err.code, message: err.message, ...(err.details ?? {}) };
      if (status === 503) reply.header('retry-after', '5');
      return reply.code(status).send(body);
    }
    const status = typeof err.statusCode === 'number' && err.statusCode >= 400 ? err.statusCode : 500;
    if (status >= 500) {
      request.log.error({ err }, 'unhandled error');
      return reply.code(500).send({ error: 'internal', message: 'internal error' });
    }
    // Fastify's own client errors (body too large, bad content type, malformed JSON). The rate limiter
    // throws a plain object without a code; "bad_request" would misstate why a 429 was sent.
    const code = err.code ?? (status === 429 ? 'rate_limited' : 'bad_request');
    return reply.code(status).send({ error: code, message: err.message });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ error: 'not_found', message: `no route ${request.method} ${request.url}` }),
  );
}
