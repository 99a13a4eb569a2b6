import Fastify, { type FastifyInstance, type FastifyServerOptions, LogController } from 'fastify';
import type { Logger } from 'pino';
import { ChronosError } from '../errors.js';
import { type FireRouteDeps, registerFireRoute } from '../fire/route.js';
import type { Activity } from '../scheduler/activity.js';
import { installErrorHandler } from './errors.js';

export const HEALTH_PATH = '/healthz';
export const ADMIN_OFF_MESSAGE =
  'the admin API is off on this server: start it with CHRONOS_ADMIN_TOKEN set (16+ characters), then send "Authorization: Bearer <token>"';

/** Without an admin token the /api/* routes do not exist; this says why instead of a bare "no route". */
export async function adminOffRoutes(app: FastifyInstance): Promise<void> {
  app.all('/api/*', async () => {
    throw new ChronosError('admin_disabled', ADMIN_OFF_MESSAGE);
  });
}

export interface ServerDeps {
  logger: Logger;
  activity: Activity;
  fire: FireRouteDeps;
  /** Registers further routes (the admin API) in the same server; absent routes answer 404. */
  plugins?: Array<(app: FastifyInstance) => Promise<void>>;
}

/**
 * Fastify builds ajv and fast-json-stringify inside its constructor even when no route uses them
 * (~30 ms of cold start). Routes here validate with zod (validatorCompiler set per route where used)
 * and reply with plain JSON, so both compilers are replaced by trivial ones.
 */
const lightCompilers = {
  compilersFactory: {
    buildValidator: () => () => () => true,
    buildSerializer: () => () => (data: unknown) => JSON.stringify(data),
  },
} as unknown as FastifyServerOptions['schemaController'];

/** The HTTP surface. Never reads process.env and never listens: main.ts does that, tests use inject(). */
export async function buildServer(deps: ServerDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger,
    // The fire route logs one line per fire with job_id/fire_at/run_id; per-request lines would double it.
    logController: new LogController({ disableRequestLogging: true }),
    schemaController: lightCompilers,
    // NAS and health checkers reuse connections; keep them open a little longer than typical proxies.
    keepAliveTimeout: 65_000,
    return503OnClosing: true,
  }) as unknown as FastifyInstance;
  installErrorHandler(app);

  app.addHook('onRequest', async (request) => {
    // A platform's health checks must not keep a scale-to-zero process awake.
    if (request.url === HEALTH_PATH) return;
    (request as unknown as { endActivity: () => void }).endActivity = deps.activity.begin('request');
  });
  app.addHook('onResponse', async (request) => {
    (request as unknown as { endActivity?: () => void }).endActivity?.();
  });
  app.addHook('onRequestAbort', async (request) => {
    (request as unknown as { endActivity?: () => void }).endActivity?.();
  });

  // Liveness only: no I/O, no auth, so a sleeping-then-woken process answers at once.
  app.get(HEALTH_PATH, async () => ({ status: 'ok' }));

  await registerFireRoute(app, deps.fire);
  for (const plugin of deps.plugins ?? []) await plugin(app);
  return app;
}
