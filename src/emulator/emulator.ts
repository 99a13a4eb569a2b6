import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type CryptoKey, calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { Agent, request } from 'undici';
import { type Clock, systemClock } from '../clock.js';
import { ChronosError } from '../errors.js';
import { VERSION } from '../version.js';

export type FireAlg = 'ES256' | 'RS256' | 'EdDSA';

export interface EmulatorOptions {
  /** 0 = ephemeral (default). */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Bearer token agents must present on hop 1 (default 'dev-agent-token'). */
  agentToken?: string;
  /** `aud` claim of fire JWTs (default 'agent:dev'). */
  audience?: string;
  /** Signing algorithm of fire JWTs (default ES256). */
  alg?: FireAlg;
  /** The emulator's clock reads host clock + offset: a skewed NAS (fault switch). */
  clockOffsetMs?: number;
  /** Delivery retries (defaults 8 attempts, 500 ms base, 30 s cap). */
  retry?: { maxAttempts?: number; baseDelayMs?: number; maxDelayMs?: number };
  /** Per-attempt delivery timeout (default 10 000 ms). */
  deliveryTimeoutMs?: number;
  /** Human-readable event log, one line per event (default: silent). */
  log?: (line: string) => void;
  /** Rewrite the fire URL (`<agent_callback_url>/api/cron/fire`) before POSTing, e.g. to a wake proxy. */
  deliverVia?: (fireUrl: string) => string;
  /** Host clock used for timers and timestamps (default: the system clock). */
  clock?: Clock;
  /** How long a rotated-out public key stays in the JWKS (default 10 minutes). */
  retiredKeyTtlMs?: number;
}

export interface ArmedOneShot {
  job_id: string;
  /** As the agent sent it. */
  fire_at: string;
  schedule_id: string;
  agent_callback_url: string;
  dedup_key: string;
  /** ISO instant (emulator clock) of the provision call that created this arm. */
  armed_at: string;
}

export interface DeliveryAttempt {
  job_id: string;
  fire_at: string;
  /** 1-based attempt number within one delivery. */
  attempt: number;
  /** ISO instant (emulator clock) when the POST was sent. */
  at: string;
  /** HTTP status, or 0 for a transport error / timeout. */
  status: number;
  /** Reply body: parsed JSON when it is JSON, else text (bounded). */
  body?: unknown;
  error?: string;
  /** Set on the extra POST made by the `duplicateDelivery` fault. */
  duplicate?: true;
  /** Set when the delivery was started by `fireNow` / the control endpoint. */
  manual?: true;
}

export type ProvisionKind = 'provision' | 'cancel' | 'list';

export interface ProvisionCall {
  kind: ProvisionKind;
  /** ISO instant (emulator clock) when the call was received. */
  at: string;
  /** HTTP status the emulator answered with. */
  status: number;
  /** Request body (parsed JSON; undefined for list or unparseable bodies). */
  body: unknown;
  /** Reply body. */
  reply: unknown;
  /** The caller's User-Agent header (SPEC §7: Chronos names itself). */
  user_agent?: string;
}

export interface FaultSwitches {
  /** Deliver each fire twice (the second right after the first succeeds). */
  duplicateDelivery: boolean;
  /** Drop the next N scheduled deliveries: the arm is consumed and nothing is POSTed. */
  dropDeliveries: number;
  /** Deliver this much before fire_at (negative = late). Setting it re-times pending arms. */
  earlyMs: number;
  /** Answer the next N provision calls with 503 + Retry-After: 1. */
  provisionFailures: number;
  /** Answer every hop-1 call with 403 {"error":"invalid_client"}. */
  rejectAgent: boolean;
}

export interface FireTokenClaims {
  aud: string;
  iss: string;
  purpose: string;
  iat: number;
  exp: number;
  nbf?: number;
  jti: string;
  sub: string;
  [claim: string]: unknown;
}

export interface Emulator {
  /** Base URL, e.g. http://127.0.0.1:41234; also the `iss` of every fire JWT. */
  url: string;
  jwksUrl: string;
  audience: string;
  agentToken: string;
  alg: FireAlg;
  armed(): ArmedOneShot[];
  deliveries(): DeliveryAttempt[];
  provisions(): ProvisionCall[];
  /** Mutable fault switches. */
  faults: FaultSwitches;
  /** The public JWKS as served at jwksUrl. */
  jwks(): { keys: JWK[] };
  /** The kid of the current signing key. */
  currentKid(): string;
  /**
   * Make a new key the signing key; the old public key stays in the JWKS for retiredKeyTtlMs. With
   * `keepKid`, the new key takes the current key's kid and replaces it in the JWKS at once (a NAS that
   * rotates key material under a stable kid): tokens signed with the old key stop verifying.
   */
  rotateKey(options?: { keepKid?: boolean }): Promise<string>;
  /**
   * A fire JWT signed with the current key. Overrides replace default claims; an override set to
   * `undefined` removes that claim (e.g. `{ exp: undefined }` for a token without expiry).
   */
  mintFireToken(claims?: Partial<FireTokenClaims>): Promise<string>;
  /**
   * Deliver an armed one-shot now, ignoring its timer and the dropDeliveries/earlyMs faults.
   * Resolves with the first attempt; retries (if any) continue in the background.
   */
  fireNow(jobId: string): Promise<DeliveryAttempt>;
  /** Resolves when predicate holds (checked now and after every emulator event); rejects on timeout. */
  waitFor(predicate: () => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
  /** Emulator-clock ms after which a rotated-out key leaves the JWKS. */
  retireAfter?: number;
}

interface Arm extends ArmedOneShot {
  fireAtMs: number;
  timer?: Cancellable;
  /** Aborted when this arm is replaced or cancelled, so waiting retries give up. */
  superseded: AbortController;
}

interface Cancellable {
  cancel(): void;
}

const FIRE_PATH = '/api/cron/fire';
const MAX_BODY_BYTES = 1024 * 1024;
const MAX_REPLY_CHARS = 4096;
const DELIVERY_HISTORY = 200;
const MAX_DELIVERY_LOG = 100_000;
// setTimeout silently treats delays above 2^31-1 ms (~24.8 days) as 1 ms.
const MAX_TIMER_MS = 2 ** 31 - 1;
const ISO_WITH_OFFSET = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

export async function startEmulator(opts: EmulatorOptions = {}): Promise<Emulator> {
  const clock = opts.clock ?? systemClock;
  const offsetMs = opts.clockOffsetMs ?? 0;
  const now = (): number => clock.now() + offsetMs;
  const log = opts.log ?? (() => {});
  const alg: FireAlg = opts.alg ?? 'ES256';
  const agentToken = opts.agentToken ?? 'dev-agent-token';
  const audience = opts.audience ?? 'agent:dev';
  const maxAttempts = Math.max(1, opts.retry?.maxAttempts ?? 8);
  const baseDelayMs = opts.retry?.baseDelayMs ?? 500;
  const maxDelayMs = opts.retry?.maxDelayMs ?? 30_000;
  const deliveryTimeoutMs = opts.deliveryTimeoutMs ?? 10_000;
  const retiredKeyTtlMs = opts.retiredKeyTtlMs ?? 10 * 60_000;

  const arms = new Map<string, Arm>();
  const deliveryLog: DeliveryAttempt[] = [];
  const provisionLog: ProvisionCall[] = [];
  const listeners = new Set<() => void>();
  const keys: SigningKey[] = [await newSigningKey(alg)];
  const closing = new AbortController();
  const inflight = new Set<Promise<void>>();
  const dispatcher = new Agent({ connections: 64 });
  let url = '';

  const notify = (): void => {
    for (const listener of [...listeners]) listener();
  };

  const timerAt = (dueMs: number, fn: () => void): Cancellable => {
    let handle = clock.setTimeout(step, clampDelay(dueMs - now()));
    let cancelled = false;
    function step(): void {
      if (cancelled) return;
      const left = dueMs - now();
      // Re-check because long waits are chunked and Node timers may fire a millisecond early.
      if (left > 0) {
        handle = clock.setTimeout(step, clampDelay(left));
        return;
      }
      fn();
    }
    return {
      cancel() {
        cancelled = true;
        clock.clearTimeout(handle);
      },
    };
  };

  let earlyMs = 0;
  const faults: FaultSwitches = {
    duplicateDelivery: false,
    dropDeliveries: 0,
    get earlyMs() {
      return earlyMs;
    },
    set earlyMs(value: number) {
      earlyMs = value;
      for (const arm of arms.values()) if (arm.timer) schedule(arm);
    },
    provisionFailures: 0,
    rejectAgent: false,
  };

  function schedule(arm: Arm): void {
    arm.timer?.cancel();
    const dueMs = Math.max(0, arm.fireAtMs - earlyMs);
    arm.timer = timerAt(dueMs, () => {
      arm.timer = undefined;
      onDue(arm);
    });
  }

  function onDue(arm: Arm): void {
    if (!isCurrent(arm) || closing.signal.aborted) return;
    if (faults.dropDeliveries > 0) {
      faults.dropDeliveries -= 1;
      arms.delete(arm.job_id);
      log(`drop     ${arm.job_id} ${arm.fire_at}  (fault: dropDeliveries, ${faults.dropDeliveries} left)`);
      notify();
      return;
    }
    void startDelivery(arm, false);
  }

  const isCurrent = (arm: Arm): boolean => arms.get(arm.job_id) === arm;

  function removeIfCurrent(arm: Arm): void {
    if (isCurrent(arm)) arms.delete(arm.job_id);
  }

  function supersede(arm: Arm): void {
    arm.timer?.cancel();
    arm.timer = undefined;
    arm.superseded.abort();
  }

  async function signToken(overrides: Partial<FireTokenClaims> = {}): Promise<string> {
    const key = keys[keys.length - 1]!;
    const iat = Math.floor(now() / 1000);
    const claims: Record<string, unknown> = {
      aud: audience,
      iss: url,
      purpose: 'cron_fire',
      iat,
      exp: iat + 90,
      jti: randomBytes(16).toString('base64url'),
      sub: '',
      ...overrides,
    };
    for (const name of Object.keys(claims)) if (claims[name] === undefined) delete claims[name];
    return new SignJWT(claims).setProtectedHeader({ alg, kid: key.kid, typ: 'JWT' }).sign(key.privateKey);
  }

  function fireUrl(arm: Arm): string {
    const direct = arm.agent_callback_url.replace(/\/+$/, '') + FIRE_PATH;
    return opts.deliverVia ? opts.deliverVia(direct) : direct;
  }

  async function post(
    arm: Arm,
    attempt: number,
    flags: { duplicate?: true; manual?: true },
  ): Promise<{ result: DeliveryAttempt; retryAfterMs?: number }> {
    const at = new Date(now()).toISOString();
    const result: DeliveryAttempt = {
      job_id: arm.job_id,
      fire_at: arm.fire_at,
      attempt,
      at,
      status: 0,
      ...flags,
    };
    let retryAfterMs: number | undefined;
    try {
      const token = await signToken({ sub: arm.job_id });
      const res = await request(fireUrl(arm), {
        method: 'POST',
        dispatcher,
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          accept: 'application/json',
          'user-agent': `nas-emulator/${VERSION}`,
        },
        body: JSON.stringify({ job_id: arm.job_id, fire_at: arm.fire_at }),
        signal: AbortSignal.any([closing.signal, AbortSignal.timeout(deliveryTimeoutMs)]),
      });
      result.status = res.statusCode;
      const text = await res.body.text();
      if (text.length > 0) result.body = parseReply(text);
      if (res.statusCode === 425 || res.statusCode === 429 || res.statusCode === 503) {
        retryAfterMs = parseRetryAfter(res.headers['retry-after'], now());
      }
    } catch (err) {
      result.error = describeError(err);
    }
    deliveryLog.push(result);
    // Bounded so a long-running dev emulator does not grow without limit; benchmarks stay well under it.
    if (deliveryLog.length > MAX_DELIVERY_LOG) deliveryLog.splice(0, deliveryLog.length / 2);
    const outcome = result.status === 0 ? `✗ ${result.error}` : `→ ${result.status}`;
    const tag = flags.duplicate ? '  (fault: duplicate)' : flags.manual ? '  (manual)' : '';
    log(`deliver  ${arm.job_id} ${arm.fire_at} attempt ${attempt} ${outcome}${tag}`);
    notify();
    return retryAfterMs === undefined ? { result } : { result, retryAfterMs };
  }

  function startDelivery(arm: Arm, manual: boolean): Promise<DeliveryAttempt> {
    arm.timer?.cancel();
    arm.timer = undefined;
    const flags: { manual?: true } = manual ? { manual: true } : {};
    let resolveFirst!: (attempt: DeliveryAttempt) => void;
    const first = new Promise<DeliveryAttempt>((resolve) => {
      resolveFirst = resolve;
    });
    const run = (async () => {
      for (let attempt = 1; ; attempt++) {
        const { result, retryAfterMs } = await post(arm, attempt, flags);
        if (attempt === 1) resolveFirst(result);
        if (result.status >= 200 && result.status < 300) {
          if (faults.duplicateDelivery && !closing.signal.aborted) {
            await post(arm, attempt, { ...flags, duplicate: true });
          }
          // A provision that replaced this arm while the POST was in flight must survive.
          removeIfCurrent(arm);
          notify();
          return;
        }
        if (closing.signal.aborted) return;
        if (attempt >= maxAttempts) {
          log(`give up  ${arm.job_id} ${arm.fire_at} after ${attempt} attempts`);
          removeIfCurrent(arm);
          notify();
          return;
        }
        if (arm.superseded.signal.aborted) {
          log(`stop     ${arm.job_id} ${arm.fire_at}  (arm replaced or cancelled; no more retries)`);
          return;
        }
        const backoff = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
        const delay = Math.max(0, retryAfterMs ?? backoff);
        log(`retry    ${arm.job_id} ${arm.fire_at} in ${formatDuration(delay)}`);
        const waited = await sleep(delay, arm.superseded.signal);
        if (!waited) {
          if (!closing.signal.aborted) {
            log(`stop     ${arm.job_id} ${arm.fire_at}  (arm replaced or cancelled; no more retries)`);
          }
          return;
        }
      }
    })();
    inflight.add(run);
    void run.finally(() => inflight.delete(run));
    return first;
  }

  function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      const both = AbortSignal.any([signal, closing.signal]);
      if (both.aborted) return resolve(false);
      const timer = timerAt(now() + ms, () => {
        both.removeEventListener('abort', onAbort);
        resolve(true);
      });
      function onAbort(): void {
        timer.cancel();
        resolve(false);
      }
      both.addEventListener('abort', onAbort, { once: true });
    });
  }

  // ---- hop 1 -------------------------------------------------------------------------------

  function provision(body: unknown): { status: number; reply: Record<string, unknown> } {
    const problem = validateProvision(body);
    if (problem) return { status: 400, reply: { error: 'invalid_request', message: problem } };
    const input = body as { job_id: string; fire_at: string; agent_callback_url: string; dedup_key: string };
    const existing = arms.get(input.job_id);
    if (existing && existing.dedup_key === input.dedup_key) {
      log(`same     ${input.job_id} at ${input.fire_at}  (dedup_key unchanged, no-op)`);
      return { status: 200, reply: { schedule_id: existing.schedule_id } };
    }
    if (existing) supersede(existing);
    const arm: Arm = {
      job_id: input.job_id,
      fire_at: input.fire_at,
      fireAtMs: Date.parse(input.fire_at),
      schedule_id: `sch_${randomBytes(9).toString('base64url')}`,
      agent_callback_url: input.agent_callback_url,
      dedup_key: input.dedup_key,
      armed_at: new Date(now()).toISOString(),
      superseded: new AbortController(),
    };
    arms.set(arm.job_id, arm);
    schedule(arm);
    const verb = existing ? 'rearmed' : 'armed';
    const replaced = existing ? `  (was ${existing.fire_at})` : '';
    log(`${verb.padEnd(8)} ${arm.job_id}  at ${arm.fire_at}  (${relative(arm.fireAtMs - now())})${replaced}`);
    return { status: 200, reply: { schedule_id: arm.schedule_id } };
  }

  function cancel(body: unknown): { status: number; reply: Record<string, unknown> } {
    const jobId = (body as { job_id?: unknown } | undefined)?.job_id;
    if (typeof jobId !== 'string' || jobId.length === 0) {
      return { status: 400, reply: { error: 'invalid_request', message: 'job_id is required' } };
    }
    const arm = arms.get(jobId);
    if (arm) {
      supersede(arm);
      arms.delete(jobId);
      log(`cancel   ${jobId}  (was ${arm.fire_at})`);
    } else {
      log(`cancel   ${jobId}  (not armed; ok)`);
    }
    return { status: 200, reply: { ok: true } };
  }

  function list(): { status: number; reply: Record<string, unknown> } {
    const armedList = [...arms.values()].map((a) => ({
      job_id: a.job_id,
      fire_at: a.fire_at,
      schedule_id: a.schedule_id,
    }));
    log(`list     ${armedList.length} armed`);
    return { status: 200, reply: { armed: armedList } };
  }

  const expectedTokenHash = sha256(`Bearer ${agentToken}`);

  async function handleHop1(kind: ProvisionKind, req: IncomingMessage, res: ServerResponse): Promise<void> {
    let body: unknown;
    let outcome: { status: number; reply: Record<string, unknown>; headers?: Record<string, string> };
    const raw = kind === 'list' ? '' : await readBody(req);
    if (raw === undefined) {
      outcome = { status: 413, reply: { error: 'payload_too_large', message: 'body over 1 MiB' } };
    } else {
      if (raw.length > 0) body = tryParseJson(raw);
      const auth = req.headers.authorization ?? '';
      if (!timingSafeEqual(sha256(auth), expectedTokenHash)) {
        outcome = { status: 401, reply: { error: 'unauthorized' } };
      } else if (faults.rejectAgent) {
        outcome = { status: 403, reply: { error: 'invalid_client', message: 'agent identity rejected' } };
      } else if (kind === 'provision' && faults.provisionFailures > 0) {
        faults.provisionFailures -= 1;
        outcome = {
          status: 503,
          reply: { error: 'unavailable', message: 'injected fault: provisionFailures' },
          headers: { 'retry-after': '1' },
        };
      } else if (kind !== 'list' && (body === undefined || body === NOT_JSON)) {
        outcome = { status: 400, reply: { error: 'invalid_request', message: 'body must be a JSON object' } };
      } else {
        outcome = kind === 'provision' ? provision(body) : kind === 'cancel' ? cancel(body) : list();
      }
    }
    if (outcome.status >= 400) {
      log(`${kind.padEnd(8)} ✗ ${outcome.status} ${String(outcome.reply.message ?? outcome.reply.error)}`);
    }
    const ua = req.headers['user-agent'];
    if (provisionLog.length >= MAX_DELIVERY_LOG) provisionLog.splice(0, provisionLog.length / 2);
    provisionLog.push({
      kind,
      at: new Date(now()).toISOString(),
      status: outcome.status,
      body: body === NOT_JSON ? undefined : body,
      reply: outcome.reply,
      ...(ua === undefined ? {} : { user_agent: ua }),
    });
    sendJson(res, outcome.status, outcome.reply, outcome.headers);
    notify();
  }

  // ---- control endpoints -------------------------------------------------------------------

  function state(): Record<string, unknown> {
    return {
      url,
      audience,
      alg,
      clock_offset_ms: offsetMs,
      now: new Date(now()).toISOString(),
      current_kid: keys[keys.length - 1]!.kid,
      armed: publicArms(),
      deliveries: deliveryLog.slice(-DELIVERY_HISTORY),
      faults: { ...faults },
    };
  }

  function publicArms(): ArmedOneShot[] {
    return [...arms.values()].map((a) => ({
      job_id: a.job_id,
      fire_at: a.fire_at,
      schedule_id: a.schedule_id,
      agent_callback_url: a.agent_callback_url,
      dedup_key: a.dedup_key,
      armed_at: a.armed_at,
    }));
  }

  function mergeFaults(patch: unknown): string | undefined {
    if (typeof patch !== 'object' || patch === null || Array.isArray(patch))
      return 'body must be a JSON object';
    const input = patch as Record<string, unknown>;
    const booleans = ['duplicateDelivery', 'rejectAgent'] as const;
    const counts = ['dropDeliveries', 'provisionFailures'] as const;
    for (const name of Object.keys(input)) {
      if (!(name in faults)) return `unknown fault switch: ${name}`;
    }
    for (const name of booleans) {
      if (name in input && typeof input[name] !== 'boolean') return `${name} must be a boolean`;
    }
    for (const name of counts) {
      const v = input[name];
      if (name in input && !(Number.isInteger(v) && (v as number) >= 0)) {
        return `${name} must be a non-negative integer`;
      }
    }
    if ('earlyMs' in input && !Number.isFinite(input.earlyMs)) return 'earlyMs must be a number';
    for (const name of booleans) if (name in input) faults[name] = input[name] as boolean;
    for (const name of counts) if (name in input) faults[name] = input[name] as number;
    if ('earlyMs' in input) faults.earlyMs = input.earlyMs as number;
    log(`faults   ${JSON.stringify({ ...faults })}`);
    return undefined;
  }

  async function rotateKey(options: { keepKid?: boolean } = {}): Promise<string> {
    if (options.keepKid) {
      const current = keys[keys.length - 1]!;
      const next = await newSigningKey(alg, current.kid);
      keys[keys.length - 1] = next;
      log(`rotate   signing key replaced under the same kid ${next.kid}`);
      notify();
      return next.kid;
    }
    const next = await newSigningKey(alg);
    const retireAfter = now() + retiredKeyTtlMs;
    for (const key of keys) key.retireAfter ??= retireAfter;
    keys.push(next);
    log(`rotate   signing key is now ${next.kid}`);
    notify();
    return next.kid;
  }

  function jwks(): { keys: JWK[] } {
    const t = now();
    for (let i = keys.length - 2; i >= 0; i--) {
      const key = keys[i]!;
      if (key.retireAfter !== undefined && key.retireAfter <= t) keys.splice(i, 1);
    }
    return { keys: keys.map((k) => ({ ...k.publicJwk })) };
  }

  async function fireNow(jobId: string): Promise<DeliveryAttempt> {
    const arm = arms.get(jobId);
    if (!arm) throw new ChronosError('job_not_found', `no one-shot armed for job ${jobId}`);
    return startDelivery(arm, true);
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const method = req.method ?? 'GET';
    if (path === '/api/agent-cron/provision' && method === 'POST') return handleHop1('provision', req, res);
    if (path === '/api/agent-cron/cancel' && method === 'POST') return handleHop1('cancel', req, res);
    if (path === '/api/agent-cron/list' && method === 'GET') return handleHop1('list', req, res);
    if (path === '/.well-known/jwks.json' && method === 'GET') {
      return sendJson(res, 200, jwks(), { 'cache-control': 'public, max-age=300' });
    }
    if (path === '/_emulator/state' && method === 'GET') return sendJson(res, 200, state());
    if (path === '/_emulator/faults' && method === 'POST') {
      const raw = await readBody(req);
      const parsed = raw === undefined || raw.length === 0 ? NOT_JSON : tryParseJson(raw);
      const problem = mergeFaults(parsed);
      if (problem) return sendJson(res, 400, { error: 'invalid_request', message: problem });
      notify();
      return sendJson(res, 200, { faults: { ...faults } });
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
      return sendJson(res, 200, { kid: await rotateKey({ keepKid: keepKid === true }) });
    }
    const fire = /^\/_emulator\/fire\/([^/]+)$/.exec(path);
    if (fire && method === 'POST') {
      const jobId = decodeURIComponent(fire[1]!);
      if (!arms.has(jobId))
        return sendJson(res, 404, { error: 'not_armed', message: `${jobId} is not armed` });
      return sendJson(res, 200, { delivery: await fireNow(jobId) });
    }
    sendJson(res, 404, { error: 'not_found', message: `${method} ${path}` });
  }

  const server: Server = createServer((req, res) => {
    route(req, res).catch((err: unknown) => {
      log(`error    ${req.method} ${req.url}: ${describeError(err)}`);
      if (!res.headersSent) sendJson(res, 500, { error: 'internal', message: describeError(err) });
      else res.destroy();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  url = `http://${urlHost(address)}:${address.port}`;
  log(`listen   ${url}  (aud ${audience}, ${alg}, kid ${keys[0]!.kid})`);

  let closed: Promise<void> | undefined;

  return {
    url,
    jwksUrl: `${url}/.well-known/jwks.json`,
    audience,
    agentToken,
    alg,
    faults,
    armed: publicArms,
    deliveries: () => [...deliveryLog],
    provisions: () => [...provisionLog],
    jwks,
    currentKid: () => keys[keys.length - 1]!.kid,
    rotateKey,
    mintFireToken: (claims) => signToken({ sub: 'job', ...claims }),
    fireNow,
    waitFor(predicate, timeoutMs = 5000) {
      return new Promise<void>((resolve, reject) => {
        if (predicate()) return resolve();
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`emulator.waitFor: condition not met within ${timeoutMs} ms`));
        }, timeoutMs);
        function check(): void {
          let ok = false;
          try {
            ok = predicate();
          } catch (err) {
            listeners.delete(check);
            clearTimeout(timer);
            reject(err);
            return;
          }
          if (!ok) return;
          listeners.delete(check);
          clearTimeout(timer);
          resolve();
        }
        listeners.add(check);
      });
    },
    close() {
      closed ??= (async () => {
        closing.abort();
        for (const arm of arms.values()) supersede(arm);
        await Promise.allSettled([...inflight]);
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        await dispatcher.close();
        log('closed');
      })();
      return closed;
    },
  };
}

// ---- helpers ---------------------------------------------------------------------------------

const NOT_JSON: unique symbol = Symbol('not-json');

async function newSigningKey(alg: FireAlg, keepKid?: string): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  const kid = keepKid ?? (await calculateJwkThumbprint(jwk));
  return { kid, privateKey, publicJwk: { ...jwk, kid, alg, use: 'sig' } };
}

/** Returns the reason a provision body is invalid, or undefined. */
export function validateProvision(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'body must be a JSON object';
  const b = body as Record<string, unknown>;
  if (typeof b.job_id !== 'string' || b.job_id.length === 0) return 'job_id is required';
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  if (b.job_id.length > 256 || /[\s\u0000-\u001f]/.test(b.job_id)) {
    return 'job_id must be at most 256 characters without whitespace';
  }
  if (typeof b.fire_at !== 'string' || b.fire_at.length === 0) return 'fire_at is required';
  if (!isIsoWithOffset(b.fire_at)) {
    return 'fire_at must be an ISO-8601 instant with an explicit offset, e.g. 2026-03-08T07:00:00Z';
  }
  if (typeof b.agent_callback_url !== 'string' || b.agent_callback_url.length === 0) {
    return 'agent_callback_url is required';
  }
  let callback: URL | undefined;
  try {
    callback = new URL(b.agent_callback_url);
  } catch {
    callback = undefined;
  }
  if (!callback || (callback.protocol !== 'http:' && callback.protocol !== 'https:')) {
    return 'agent_callback_url must be an http(s) URL';
  }
  if (typeof b.dedup_key !== 'string' || b.dedup_key.length === 0) return 'dedup_key is required';
  if (b.dedup_key !== `${b.job_id}:${b.fire_at}`) return 'dedup_key must equal "<job_id>:<fire_at>"';
  return undefined;
}

export function isIsoWithOffset(value: string): boolean {
  const m = ISO_WITH_OFFSET.exec(value);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const offset = m[8]!;
  if (offset !== 'Z' && (Number(offset.slice(1, 3)) > 23 || Number(offset.slice(4, 6)) > 59)) return false;
  if (month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59) return false;
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  return day >= 1 && day <= daysInMonth && Number.isFinite(Date.parse(value));
}

export function parseRetryAfter(header: string | string[] | undefined, nowMs: number): number | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined || value.trim() === '') return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const date = Date.parse(trimmed);
  return Number.isFinite(date) ? Math.max(0, date - nowMs) : undefined;
}

function clampDelay(ms: number): number {
  return Math.min(MAX_TIMER_MS, Math.max(0, ms));
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

function tryParseJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return NOT_JSON;
  }
}

function parseReply(text: string): unknown {
  const bounded = text.length > MAX_REPLY_CHARS ? text.slice(0, MAX_REPLY_CHARS) : text;
  if (bounded.length === text.length) {
    const parsed = tryParseJson(text);
    if (parsed !== NOT_JSON) return parsed;
  }
  return bounded;
}

function readBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) tooBig = true;
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(tooBig ? undefined : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(payload),
    ...headers,
  });
  res.end(payload);
}

function describeError(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    const code = (err as { code?: unknown }).code ?? (cause as { code?: unknown } | undefined)?.code;
    if (err.name === 'TimeoutError' || err.name === 'AbortError') return err.name;
    return typeof code === 'string' ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

function urlHost(address: AddressInfo): string {
  if (address.address === '0.0.0.0' || address.address === '::') return '127.0.0.1';
  return address.family === 'IPv6' ? `[${address.address}]` : address.address;
}

export function formatDuration(ms: number): string {
  const abs = Math.abs(ms);
  if (abs < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  if (abs < 3_600_000) return `${(ms / 60_000).toFixed(1)}m`;
  if (abs < 86_400_000) return `${(ms / 3_600_000).toFixed(1)}h`;
  return `${(ms / 86_400_000).toFixed(1)}d`;
}

function relative(ms: number): string {
  return ms >= 0 ? `in ${formatDuration(ms)}` : `${formatDuration(-ms)} ago, fires now`;
}
