import type { FastifyInstance, FastifyReply } from 'fastify';
import type { UiAsset } from './assets.js';

/** Where the page lives. Its JSON comes from the admin API (/api/*), which the page calls with the token. */
export const UI_PATH = '/ui';

/**
 * The page needs no authentication to load: it holds no data. Everything it shows comes from the admin API,
 * which the page calls with the admin token the user gives it (docs/operations.md, "The status page").
 */
const PAGE_HEADERS: Readonly<Record<string, string>> = {
  // Scripts and styles only from this server, no inline script: data rendered into the page can never run.
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  // A new version must never be mixed with a cached old page or script.
  'cache-control': 'no-cache',
};

/**
 * GET /ui and its assets. Registered beside the admin API (src/http/admin.ts), so it exists only when the
 * admin API does. The files are read on the first request, not at start: a process woken for a fire never
 * pays for the page.
 */
export async function registerUiRoutes(app: FastifyInstance): Promise<void> {
  let assets: Promise<Map<string, UiAsset>> | undefined;
  const load = () => {
    if (assets === undefined) {
      assets = import('./assets.js').then(({ loadUiAssets }) => loadUiAssets());
      // A failed read (a broken install) is retried by the next request instead of being remembered.
      assets.catch(() => {
        assets = undefined;
      });
    }
    return assets;
  };
  const send = async (reply: FastifyReply, name: string) => {
    const asset = (await load()).get(name);
    if (asset === undefined) return reply.callNotFound();
    return reply.headers(PAGE_HEADERS).type(asset.contentType).send(asset.body);
  };
  app.get(UI_PATH, async (_request, reply) => send(reply, 'index.html'));
  app.get(`${UI_PATH}/`, async (_request, reply) => send(reply, 'index.html'));
  app.get(`${UI_PATH}/assets/:name`, async (request, reply) =>
    send(reply, (request.params as { name?: string }).name ?? ''),
  );
}
