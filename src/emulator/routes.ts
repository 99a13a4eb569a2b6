import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { formatInstant } from '../clock.js';
import type { ArmTable, Hop1Outcome } from './arms.js';
import { type EmulatorContext, MAX_HISTORY } from './context.js';
import { mergeFaults, snapshotFaults } from './faults.js';
import type { SigningKeys } from './signing.js';
import type { DeliveryAttempt, ProvisionCall, ProvisionKind } from './types.js';
import { NOT_JSON, readBody, sendEmpty, sendJson, tryParseJson } from './wire.js';

export interface RouterDeps {
  ctx: EmulatorContext;
  table: ArmTable;
  keys: SigningKeys;
  agentToken: string;
  /** The body of GET /_emulator/state. */
  state(): Record<string, unknown>;
  fireNow(jobId: string): Promise<DeliveryAttempt>;
}

export interface Router {
  route(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** Every hop-1 call received, oldest first. */
  calls(): ProvisionCall[];
}

/** The HTTP face of the emulator: hop 1 (authenticated), the JWKS, and the /_emulator control routes. */
export function createRouter(deps: RouterDeps): Router {
  const { ctx, table, keys } = deps;
  const callLog: ProvisionCall[] = [];
  const expectedTokenHash = sha256(`Bearer ${deps.agentToken}`);

  /** Auth first, then the fault switches that answer for NAS, then the call itself. */
  async function handleHop1(kind: ProvisionKind, req: IncomingMessage, res: ServerResponse): Promise<void> {
    let body: unknown;
    let outcome: Hop1Outcome | { status: number; reply: '' };
    const raw = kind === 'list' ? '' : await readBody(req);
    if (raw === undefined) {
      outcome = { status: 413, reply: { error: 'payload_too_large', message: 'body over 1 MiB' } };
    } else {
      if (raw.length > 0) body = tryParseJson(raw);
      const auth = req.headers.authorization ?? '';
      if (!timingSafeEqual(sha256(auth), expectedTokenHash)) {
        outcome = { status: 401, reply: { error: 'unauthorized' } };
      } else if (ctx.faults.rejectAgent) {
        outcome = { status: 403, reply: { error: 'invalid_client', message: 'agent identity rejected' } };
      } else if (kind === 'provision' && ctx.faults.provisionFailures > 0) {
        ctx.faults.provisionFailures -= 1;
        outcome = {
          status: 503,
          reply: { error: 'unavailable', message: 'injected fault: provisionFailures' },
          headers: { 'retry-after': '1' },
        };
      } else if (kind !== 'list' && (body === undefined || body === NOT_JSON)) {
        outcome = { status: 400, reply: { error: 'invalid_request', message: 'body must be a JSON object' } };
      } else {
        outcome =
          kind === 'provision'
            ? table.provision(body)
            : kind === 'cancel'
              ? table.cancel(body)
              : table.list();
        if (kind === 'provision' && outcome.status === 200 && ctx.faults.emptyProvisionReply) {
          outcome = { status: 200, reply: '' };
        }
      }
    }
    if (outcome.status >= 400 && outcome.reply !== '') {
      ctx.log(
        `${kind.padEnd(8)} ✗ ${outcome.status} ${String(outcome.reply.message ?? outcome.reply.error)}`,
      );
    }
    const ua = req.headers['user-agent'];
    if (callLog.length >= MAX_HISTORY) callLog.splice(0, callLog.length / 2);
    callLog.push({
      kind,
      at: formatInstant(ctx.now()),
      status: outcome.status,
      body: body === NOT_JSON ? undefined : body,
      reply: outcome.reply,
      ...(ua === undefined ? {} : { user_agent: ua }),
    });
    if (outcome.reply === '') sendEmpty(res, outcome.status);
    else sendJson(res, outcome.status, outcome.reply, 'headers' in outcome ? outcome.headers : undefined);
    ctx.notify();
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const method = req.method ?? 'GET';
    if (path === '/api/agent-cron/provision' && method === 'POST') return handleHop1('provision', req, res);
    if (path === '/api/agent-cron/cancel' && method === 'POST') return handleHop1('cancel', req, res);
    if (path === '/api/agent-cron/list' && method === 'GET') return handleHop1('list', req, res);
    if (path === '/.well-known/jwks.json' && method === 'GET') {
      return sendJson(res, 200, keys.jwks(), { 'cache-control': 'public, max-age=300' });
    }
    if (path === '/_emulator/state' && method === 'GET') return sendJson(res, 200, deps.state());
    if (path === '/_emulator/faults' && method === 'POST') {
      const raw = await readBody(req);
      const parsed = raw === undefined || raw.length === 0 ? NOT_JSON : tryParseJson(raw);
      const problem = mergeFaults(ctx.faults, parsed);
      if (problem) return sendJson(res, 400, { error: 'invalid_request', message: problem });
      ctx.log(`faults   ${JSON.stringify(snapshotFaults(ctx.faults))}`);
      ctx.notify();
      return sendJson(res, 200, { faults: snapshotFaults(ctx.faults) });
    }
    if (path === '/_emulator/rotate-key' && method === 'POST') {
      const raw = await readBody(req);
      const parsed = raw === undefined || raw.length === 0 ? {} : tryParseJson(raw);
      const keepKid =
        typeof parsed === 'object' && parsed !== null
          ? (parsed as { keep_kid?: unknown }).keep_kid
          : undefined;
      if (parsed === NOT_JSON || (keepKid !== undefined && typeof keepKid !== 'boolean'))
        return sendJson(res, 400, {
          error: 'invalid_request',
          message: 'body must be empty or {"keep_kid": true|false}',
        });
      return sendJson(res, 200, { kid: await keys.rotate({ keepKid: keepKid === true }) });
    }
    const fire = /^\/_emulator\/fire\/([^/]+)$/.exec(path);
    if (fire && method === 'POST') {
      const jobId = decodeURIComponent(fire[1]!);
      if (!table.get(jobId))
        return sendJson(res, 404, { error: 'not_armed', message: `${jobId} is not armed` });
      return sendJson(res, 200, { delivery: await deps.fireNow(jobId) });
    }
    sendJson(res, 404, { error: 'not_found', message: `${method} ${path}` });
  }

  return { route, calls: () => [...callLog] };
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
