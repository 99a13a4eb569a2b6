import { formatInstant, systemClock } from '../../clock.js';
import type { HttpTarget } from '../../jobs/model.js';
import { signingKey, webhookHeaders } from '../../signing.js';
import { USER_AGENT } from '../../version.js';
import { HeadCapture } from '../output.js';
import {
  abortedResult,
  errorText,
  resourceErrorCode,
  type TargetContext,
  type TargetResult,
  timedOutResult,
} from './types.js';

/**
 * Header names are case-insensitive; a user's `user-agent` must replace ours rather than be sent
 * beside it, so everything is keyed lower-case. The X-Chronos-* headers are set last: a receiver
 * de-duplicates on them, so a job definition cannot spoof them.
 */
function buildHeaders(target: HttpTarget, ctx: TargetContext, jsonBody: boolean): Record<string, string> {
  const headers: Record<string, string> = { 'user-agent': USER_AGENT, accept: '*/*' };
  for (const [name, value] of Object.entries(target.headers ?? {})) headers[name.toLowerCase()] = value;
  if (jsonBody && headers['content-type'] === undefined) headers['content-type'] = 'application/json';
  headers['x-chronos-job'] = ctx.job.id;
  headers['x-chronos-fire-at'] = formatInstant(ctx.fire_at);
  headers['x-chronos-run'] = ctx.run_id;
  return headers;
}

function encodeBody(body: unknown): { payload: string | undefined; json: boolean } {
  if (body === undefined || body === null) return { payload: undefined, json: false };
  if (typeof body === 'string') return { payload: body, json: false };
  return { payload: JSON.stringify(body), json: true };
}

/**
 * With a signing secret, the call carries Standard Webhooks headers (webhook-id = the run id, the same on
 * every local retry of the run), so a target can check that it came from Chronos (docs/jobs.md). Set last,
 * like the X-Chronos-* headers: a job's own headers cannot replace them.
 */
function signed(
  headers: Record<string, string>,
  ctx: TargetContext,
  secret: string | undefined,
  body: string | undefined,
): Record<string, string> {
  if (secret === undefined) return headers;
  const seconds = Math.floor((ctx.clock ?? systemClock).now() / 1000);
  return { ...headers, ...webhookHeaders(signingKey(secret), ctx.run_id, seconds, body ?? '') };
}

export async function executeHttp(
  target: HttpTarget,
  ctx: TargetContext,
  signingSecret?: string,
): Promise<TargetResult> {
  if (ctx.signal.aborted) return abortedResult(ctx.signal);
  // undici is the largest dependency; loading it here keeps it off the cold-start path of the fire
  // endpoint, which must reply before any target runs.
  const undici = await import('undici');
  // esbuild's code splitting exposes a dynamically imported CommonJS package only as `default` (the
  // production bundle), while Node's own loader also gives named exports (tests run the sources).
  const request = undici.request ?? (undici as unknown as { default: typeof undici }).default.request;
  const clock = ctx.clock ?? systemClock;
  const controller = new AbortController();
  const timeoutReason = new Error('run timeout');
  const onOuterAbort = () => controller.abort(ctx.signal.reason);
  ctx.signal.addEventListener('abort', onOuterAbort, { once: true });
  const timer = clock.setTimeout(() => controller.abort(timeoutReason), ctx.timeoutMs);
  const { payload, json } = encodeBody(target.body);
  const capture = new HeadCapture(ctx.outputLimitBytes);
  const interrupted = (): TargetResult | undefined => {
    if (controller.signal.reason === timeoutReason) return timedOutResult(ctx.timeoutMs, capture.text());
    if (ctx.signal.aborted) return abortedResult(ctx.signal, capture.text());
    return undefined;
  };
  try {
    const response = await request(target.url, {
      method: target.method,
      headers: signed(buildHeaders(target, ctx, json), ctx, signingSecret, payload),
      body: payload,
      signal: controller.signal,
      // undici's own 300 s defaults would cut long jobs short of their configured timeout; the timer
      // above is the one limit, these only back it up.
      headersTimeout: ctx.timeoutMs + 1000,
      bodyTimeout: ctx.timeoutMs + 1000,
    });
    for await (const chunk of response.body) {
      // Leaving the loop destroys the body, which releases the connection without reading the rest.
      if (!capture.push(chunk as Buffer)) break;
    }
    const status = response.statusCode;
    if (status >= 200 && status < 300)
      return { ok: true, output: capture.text(), error: null, timedOut: false };
    return { ok: false, output: capture.text(), error: `HTTP ${status}`, timedOut: false };
  } catch (err) {
    const stopped = interrupted();
    if (stopped) return stopped;
    const code = (err as { code?: string }).code;
    if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
      return timedOutResult(ctx.timeoutMs, capture.text());
    }
    // Out of descriptors or memory before a reply came: the request may not have left this process.
    const internal = capture.text() === null ? resourceErrorCode(err) : undefined;
    return {
      ok: false,
      output: capture.text(),
      error: `request failed: ${errorText(err)}`,
      timedOut: false,
      ...(internal ? { internal } : {}),
    };
  } finally {
    clock.clearTimeout(timer);
    ctx.signal.removeEventListener('abort', onOuterAbort);
  }
}
