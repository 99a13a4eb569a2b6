// src/http/ owns the Fastify server: /healthz, the error mapper, request limits and the admin API with its
// OpenAPI document. Admin routes call the job rules (src/jobs/lifecycle.ts) and the engine; they decide none.
import { createServer, type RequestListener } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyServerOptions, LogController } from 'fastify';
import type { Logger } from 'pino';
import { ChronosError } from '../errors.js';
import { FIRE_PATH, type FireRouteDeps, registerFireRoute } from '../fire/route.js';
import type { Activity } from '../scheduler/activity.js';
import type { RequestCause } from '../scheduler/idle-exit.js';
import { installErrorHandler } from './errors.js';

export const HEALTH_PATH = '/healthz';
export const ADMIN_OFF_MESSAGE =
  'the admin API is off on this server: start it with CHRONOS_ADMIN_TOKEN set (16+ characters), then send "Authorization: Bearer <token>"';

/** Without an admin token the /api/* routes do not exist; this says why instead of a bare "no route". */
export async function adminOffRoutes(app: FastifyInstance): Promise<void> {
  app.all('/api/*', async () => {
    throw new ChronosError('admin_disabled', ADMIN_OFF_MESSAGE);
  });
  // The status page reads the admin API, so it is off with it.
  for (const path of ['/ui', '/ui/*']) {
    app.get(path, async () => {
      throw new ChronosError(
        'admin_disabled',
        `the status page is served with the admin API: ${ADMIN_OFF_MESSAGE}`,
      );
    });
  }
}

/**
 * CHRONOS_TRUST_PROXY, parsed: false (the TCP peer is the client), true (every proxy: the leftmost
 * X-Forwarded-For entry), a hop count (the peer and the next n-1 entries from the right are proxies), or
 * the addresses/CIDRs of trusted proxies.
 */
export type TrustProxySetting = boolean | number | string[];

/**
 * Fastify's own `trustProxy` ignores a bare hop count (it trusts no one, since the peer is not checked); a
 * count given on purpose, behind a proxy that is the only way in, is honoured here as a trust function.
 */
export function fastifyTrustProxy(setting: TrustProxySetting): FastifyServerOptions['trustProxy'] {
  if (typeof setting === 'number') return (_address: string, hop: number) => hop < setting;
  return setting;
}

export interface ServerDeps {
  logger: Logger;
  activity: Activity;
  fire: FireRouteDeps;
  /** Registers further routes (the admin API) in the same server; absent routes answer 404. */
  plugins?: Array<(app: FastifyInstance) => Promise<void>>;
  /** Fastify's `trustProxy` (CHRONOS_TRUST_PROXY): whose X-Forwarded-For decides `request.ip`. Default: nobody's. */
  trustProxy?: TrustProxySetting;
  /** Open connections accepted at once; more are closed on arrival. Default: no cap. */
  maxConnections?: number;
  timeouts?: Partial<ServerTimeouts>;
  /** Told what each request (health checks excepted) says about who wants the process awake. */
  onRequest?: (cause: RequestCause) => void;
}

/** NAS's fire, a person (the admin API, which the CLI and the status page use too), or anything else. */
export function requestCause(url: string): RequestCause {
  const path = url.split('?', 1)[0] ?? '';
  if (path === FIRE_PATH) return 'fire';
  if (path.startsWith('/api/') || path === '/ui' || path.startsWith('/ui/')) return 'admin';
  return 'other';
}

/**
 * Every request Chronos serves is small (a fire body is at most 16 KiB, admin bodies little more): a client
 * that has not sent its headers, or its whole request, within seconds is stalled or hostile, and holds a
 * descriptor while it waits. Node checks the header and request deadlines only every
 * `connectionsCheckingInterval`, so that interval is short too.
 */
export interface ServerTimeouts {
  headersMs: number;
  requestMs: number;
  keepAliveMs: number;
  checkIntervalMs: number;
}

export const SERVER_TIMEOUTS: Readonly<ServerTimeouts> = {
  headersMs: 5_000,
  requestMs: 5_000,
  keepAliveMs: 10_000,
  checkIntervalMs: 1_000,
};

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
  const timeouts = { ...SERVER_TIMEOUTS, ...deps.timeouts };
  const app = Fastify({
    loggerInstance: deps.logger,
    // The fire route logs one line per fire with job_id/fire_at/run_id; per-request lines would double it.
    logController: new LogController({ disableRequestLogging: true }),
    schemaController: lightCompilers,
    // Fastify passes only some timeouts to Node; connectionsCheckingInterval needs the server built here.
    serverFactory: (handler: RequestListener) => {
      const server = createServer(
        {
          headersTimeout: timeouts.headersMs,
          requestTimeout: timeouts.requestMs,
          keepAliveTimeout: timeouts.keepAliveMs,
          connectionsCheckingInterval: timeouts.checkIntervalMs,
        },
        handler,
      );
      if (deps.maxConnections !== undefined) server.maxConnections = deps.maxConnections;
      return server;
    },
    trustProxy: fastifyTrustProxy(deps.trustProxy ?? false),
    return503OnClosing: true,
  }) as unknown as FastifyInstance;
  installErrorHandler(app);

  // Counted once the request has fully arrived, not when its first line did: a client that stalls its
  // body, authenticated or not, must not keep a scale-to-zero process awake.
  app.addHook('preValidation', async (request) => {
    // A platform's health checks must not keep a scale-to-zero process awake either.
    if (request.url === HEALTH_PATH) return;
    deps.onRequest?.(requestCause(request.url));
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
