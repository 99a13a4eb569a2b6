import type { IncomingHttpHeaders } from 'node:http';
import undiciRequest from 'undici/lib/api/api-request.js';
import Pool from 'undici/lib/dispatcher/pool.js';
import * as z from 'zod/mini';
import { type Clock, systemClock } from '../clock.js';
import { ChronosError, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { toFieldProblems } from '../validation.js';
import {
  type ArmedEntry,
  type ArmedList,
  type ArmReceipt,
  type ArmRequest,
  dedupKey,
  formatFireAt,
  type NasClient,
  NasError,
  parseFireAt,
} from './nas.js';
import { DEFAULT_RETRY, parseRetryAfter, withRetry } from './retry.js';
import type { TokenSource } from './token-source.js';

export interface HttpNasClientOptions {
  /** NAS base URL; may carry a path prefix (`https://portal.example/nas`). */
  portalUrl: string;
  /** Chronos's public base URL; NAS appends `/api/cron/fire`. Trailing slashes are dropped. */
  callbackUrl: string;
  tokenSource: TokenSource;
  /** Per attempt (connect, headers and body), default 10000. */
  timeoutMs?: number;
  retry?: { maxAttempts?: number; baseDelayMs?: number; maxDelayMs?: number };
  /** Drives backoff sleeps only; per-attempt timeouts are real time, enforced by the socket layer too. */
  clock?: Clock;
  random?: () => number;
  userAgent: string;
  logger?: Logger;
  /** Socket cap toward NAS; reconcile bounds its own concurrency, this is a backstop. Default 16. */
  connections?: number;
}

type Operation = 'provision' | 'cancel' | 'list';

interface CallSpec<T> {
  op: Operation;
  method: 'GET' | 'POST';
  path: string;
  body?: unknown;
  /** Turns the text of a 2xx reply into the result. */
  parse(text: string): T;
}

interface RawReply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

// Only the envelope is checked by schema; items are read one by one (readListItem) so one bad item
// cannot make the others unreadable.
const ListEnvelope = z.object({ armed: z.array(z.unknown()) });

const EXCERPT_CHARS = 200;

function excerpt(text: string): string {
  return text.length > EXCERPT_CHARS ? `${text.slice(0, EXCERPT_CHARS)}…` : text;
}

function tryParseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function errorField(json: unknown, field: string): string | undefined {
  if (typeof json !== 'object' || json === null) return undefined;
  const value = (json as Record<string, unknown>)[field];
  return typeof value === 'string' ? value : undefined;
}

function malformed(op: Operation, what: string, details: Record<string, unknown>): NasError {
  // A 2xx with a body we cannot read will not read better the next time.
  return new NasError('nas_rejected', `NAS ${op}: ${what}`, {
    retryable: false,
    details: { op, ...details },
  });
}

function parseJsonReply(op: Operation, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw malformed(op, 'reply is not JSON', { body: excerpt(text) });
  }
}

function describeTransportError(err: unknown): { message: string; code?: string } {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
    return { message: `${err.message}${cause}`, ...(typeof code === 'string' ? { code } : {}) };
  }
  return { message: String(err) };
}

export function createHttpNasClient(options: HttpNasClientOptions): NasClient {
  let base: URL;
  try {
    base = new URL(options.portalUrl);
  } catch {
    throw new ChronosError('invalid_config', `portal URL ${options.portalUrl} is not a URL`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new ChronosError('invalid_config', `portal URL ${options.portalUrl} must be http or https`);
  }
  const prefix = base.pathname.replace(/\/+$/, '');
  const callbackUrl = options.callbackUrl.replace(/\/+$/, '');
  const timeoutMs = options.timeoutMs ?? 10_000;
  const clock = options.clock ?? systemClock;
  const { tokenSource, logger } = options;

  const pool = new Pool(base.origin, {
    connections: options.connections ?? 16,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    connect: { timeout: timeoutMs },
  });

  const lifetime = new AbortController();
  const pending = new Set<Promise<unknown>>();
  let closing: Promise<void> | undefined;

  const closedError = (): NasError =>
    new NasError('nas_unreachable', 'NAS client is closed', { retryable: false, details: { closed: true } });

  /** One HTTP exchange, bounded by the per-attempt timeout. Any transport failure is retryable. */
  async function exchange(
    spec: CallSpec<unknown>,
    token: string,
    callSignal: AbortSignal,
  ): Promise<RawReply> {
    const attempt = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      attempt.abort();
    }, timeoutMs);
    const onCallAbort = (): void => attempt.abort(callSignal.reason);
    callSignal.addEventListener('abort', onCallAbort, { once: true });
    const headers: Record<string, string> = {
      accept: 'application/json',
      'user-agent': options.userAgent,
      authorization: `Bearer ${token}`,
    };
    if (spec.body !== undefined) headers['content-type'] = 'application/json';
    try {
      const res = await undiciRequest.call(pool, {
        method: spec.method,
        path: prefix + spec.path,
        headers,
        body: spec.body === undefined ? null : JSON.stringify(spec.body),
        signal: attempt.signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      // Always drain the body: an unread body pins the keep-alive socket.
      const text = await res.body.text();
      return { status: res.statusCode, headers: res.headers, text };
    } catch (err) {
      if (callSignal.aborted) throw callSignal.reason;
      const { message, code } = describeTransportError(err);
      const undiciTimeout = code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
      if (timedOut || undiciTimeout) {
        throw new NasError('nas_unreachable', `NAS ${spec.op}: no reply within ${timeoutMs} ms`, {
          retryable: true,
          details: { op: spec.op, timeout_ms: timeoutMs },
          cause: err,
        });
      }
      throw new NasError('nas_unreachable', `NAS ${spec.op}: cannot reach ${base.origin}: ${message}`, {
        retryable: true,
        details: { op: spec.op, ...(code ? { cause_code: code } : {}) },
        cause: err,
      });
    } finally {
      clearTimeout(timer);
      callSignal.removeEventListener('abort', onCallAbort);
    }
  }

  function interpret<T>(spec: CallSpec<T>, reply: RawReply): T {
    const { status, text } = reply;
    if (status >= 200 && status < 300) return spec.parse(text);
    const json = tryParseJson(text);
    const nasError = errorField(json, 'error');
    const description = errorField(json, 'error_description') ?? errorField(json, 'message');
    const said = nasError ? ` (${nasError}${description ? `: ${description}` : ''})` : '';
    const details = { op: spec.op, body: excerpt(text) };
    if (status === 403 && nasError === 'invalid_client') {
      throw new NasError(
        'nas_invalid_client',
        `NAS ${spec.op}: NAS rejected this agent's identity (403 invalid_client)${description ? `: ${description}` : ''}; ` +
          'retrying cannot fix it: check the access token and the instance registration at the portal',
        { status, retryable: false, details },
      );
    }
    const retryable = status === 429 || status >= 500;
    throw new NasError('nas_rejected', `NAS ${spec.op}: replied ${status}${said}`, {
      status,
      retryable,
      ...(retryable ? { retryAfterMs: parseRetryAfter(reply.headers['retry-after'], clock.now()) } : {}),
      details,
    });
  }

  async function refreshToken(op: Operation): Promise<string> {
    try {
      return await tokenSource.refresh();
    } catch (err) {
      const reason = errorMessage(err);
      throw new NasError(
        'nas_unauthorized',
        `NAS ${op}: NAS rejected the access token (401) and re-reading it failed: ${reason}`,
        {
          status: 401,
          retryable: false,
          details: { op },
          cause: err,
        },
      );
    }
  }

  async function perform<T>(spec: CallSpec<T>, callSignal: AbortSignal): Promise<T> {
    let refreshed = false;
    const started = performance.now();
    const result = await withRetry(
      async () => {
        let token = await tokenSource.get();
        for (;;) {
          const reply = await exchange(spec, token, callSignal);
          if (reply.status !== 401) return interpret(spec, reply);
          if (refreshed) {
            throw new NasError(
              'nas_unauthorized',
              `NAS ${spec.op}: NAS rejected the access token (401) again after it was re-read; ` +
                'check CHRONOS_ACCESS_TOKEN / CHRONOS_ACCESS_TOKEN_FILE',
              { status: 401, retryable: false, details: { op: spec.op, body: excerpt(reply.text) } },
            );
          }
          // The token may have been rotated under us (token file): re-read once and retry at once.
          refreshed = true;
          token = await refreshToken(spec.op);
        }
      },
      {
        maxAttempts: options.retry?.maxAttempts ?? DEFAULT_RETRY.maxAttempts,
        baseDelayMs: options.retry?.baseDelayMs ?? DEFAULT_RETRY.baseDelayMs,
        maxDelayMs: options.retry?.maxDelayMs ?? DEFAULT_RETRY.maxDelayMs,
        clock,
        ...(options.random ? { random: options.random } : {}),
        signal: callSignal,
        onRetry: ({ attempt, delayMs, error, fromRetryAfter }) => {
          const err = error as Partial<NasError>;
          logger?.warn(
            {
              op: spec.op,
              attempt,
              delay_ms: delayMs,
              retry_after: fromRetryAfter,
              code: err.code,
              status: err.status,
            },
            `NAS ${spec.op} failed (${err.message ?? String(error)}); retrying`,
          );
        },
      },
    );
    logger?.debug({ op: spec.op, ms: Math.round(performance.now() - started) }, `NAS ${spec.op} ok`);
    return result;
  }

  /** A logical call, from its first attempt to its last (backoff waits included); close() ends it. */
  function run<T>(spec: CallSpec<T>, signal: AbortSignal | undefined): Promise<T> {
    if (closing) return Promise.reject(closedError());
    const call = new AbortController();
    const onCallerAbort = (): void => call.abort(signal?.reason);
    const onClose = (): void => call.abort(lifetime.signal.reason);
    if (signal?.aborted) call.abort(signal.reason);
    signal?.addEventListener('abort', onCallerAbort, { once: true });
    lifetime.signal.addEventListener('abort', onClose, { once: true });
    const promise = perform(spec, call.signal).finally(() => {
      signal?.removeEventListener('abort', onCallerAbort);
      lifetime.signal.removeEventListener('abort', onClose);
      pending.delete(promise);
    });
    pending.add(promise);
    return promise;
  }

  return {
    provision(req: ArmRequest, signal?: AbortSignal) {
      const fireAt = formatFireAt(req.fire_at);
      return run(
        {
          op: 'provision',
          method: 'POST',
          path: '/api/agent-cron/provision',
          body: {
            job_id: req.job_id,
            fire_at: fireAt,
            agent_callback_url: callbackUrl,
            dedup_key: dedupKey(req.job_id, req.fire_at),
          },
          parse: (text) => readProvisionReply(text),
        },
        signal,
      );
    },

    cancel(jobId: string, signal?: AbortSignal) {
      return run(
        {
          op: 'cancel',
          method: 'POST',
          path: '/api/agent-cron/cancel',
          body: { job_id: jobId },
          // Any 2xx means the job is no longer armed; the body carries nothing we need.
          parse: () => undefined,
        },
        signal,
      );
    },

    list(signal?: AbortSignal) {
      return run(
        {
          op: 'list',
          method: 'GET',
          path: '/api/agent-cron/list',
          parse: (text) => parseList(parseJsonReply('list', text), text, logger),
        },
        signal,
      );
    },

    close() {
      closing ??= (async () => {
        lifetime.abort(closedError());
        await Promise.allSettled([...pending]);
        await pool.destroy();
      })();
      return closing;
    },
  };
}

/**
 * Any 2xx to provision is an arm: NAS acknowledged it. `schedule_id` is kept when the body names one;
 * an empty, non-JSON or differently shaped body is not a reason to count the arm as failed.
 */
function readProvisionReply(text: string): ArmReceipt {
  const json = text.trim() === '' ? undefined : tryParseJson(text);
  const id = errorField(json, 'schedule_id');
  return { schedule_id: id !== undefined && id !== '' ? id : null };
}

/**
 * Read a `list` reply. The envelope must parse, or nothing NAS said can be trusted. Each item is then
 * read on its own: readable ones are trusted, unreadable ones are skipped, counted, and (when they name a
 * job) reported, so the caller knows which jobs it cannot see instead of distrusting the whole list.
 */
function parseList(json: unknown, text: string, logger: Logger | undefined): ArmedList {
  const parsed = z.safeParse(ListEnvelope, json);
  if (!parsed.success) {
    throw malformed('list', 'reply does not match {"armed": [...]}', {
      problems: toFieldProblems(parsed.error),
      body: excerpt(text),
    });
  }
  const entries: ArmedEntry[] = [];
  const unreadable = new Set<string>();
  let skipped = 0;
  parsed.data.armed.forEach((item, index) => {
    const read = readListItem(item);
    if ('entry' in read) {
      entries.push(read.entry);
      return;
    }
    skipped += 1;
    if (read.jobId !== undefined) unreadable.add(read.jobId);
    logger?.debug(
      { op: 'list', index, problem: read.problem, item: excerpt(JSON.stringify(item) ?? String(item)) },
      'NAS list: skipped an item that cannot be read',
    );
  });
  const unreadableJobIds = [...unreadable];
  if (skipped > 0) {
    // Logged here, once per reply, so every caller's log shows it; the caller decides what it means.
    logger?.warn(
      { op: 'list', skipped, unreadable_job_ids: unreadableJobIds, trusted: entries.length },
      `NAS list: skipped ${skipped} item(s) that cannot be read; the other ${entries.length} are trusted`,
    );
  }
  return { entries, skipped, unreadableJobIds };
}

type ItemReading = { entry: ArmedEntry } | { problem: string; jobId?: string };

function readListItem(item: unknown): ItemReading {
  if (typeof item !== 'object' || item === null || Array.isArray(item)) return { problem: 'not an object' };
  const record = item as Record<string, unknown>;
  const jobId = record.job_id;
  if (typeof jobId !== 'string' || jobId === '') return { problem: 'no job_id' };
  const raw = record.fire_at;
  if (typeof raw !== 'string') return { problem: 'no fire_at', jobId };
  const fireAt = parseFireAt(raw);
  if (fireAt === undefined)
    return { problem: `fire_at is not an ISO-8601 instant with offset: ${raw}`, jobId };
  const scheduleId = record.schedule_id;
  return {
    entry: {
      job_id: jobId,
      fire_at: fireAt,
      schedule_id: typeof scheduleId === 'string' && scheduleId !== '' ? scheduleId : null,
      fire_at_raw: raw,
    },
  };
}
