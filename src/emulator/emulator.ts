import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JWK } from 'jose';
import { type Clock, formatInstant, systemClock } from '../clock.js';
import { ChronosError } from '../errors.js';
import { ArmTable } from './arms.js';
import { describeError, type EmulatorContext } from './context.js';
import { Deliveries } from './delivery.js';
import { createFaults, mergeFaults, STRICT_FAULTS, snapshotFaults } from './faults.js';
import { createRouter } from './routes.js';
import { SigningKeys } from './signing.js';
import { sendJson, urlHost } from './wire.js';

// The emulator is put together from parts a reader can hold one at a time:
// arms.ts (NAS's table and hop-1 semantics), delivery.ts (timers, hop 3, retries), signing.ts (fire-token
// keys), routes.ts (the HTTP routes), faults.ts (the switches), wire.ts (validation and HTTP helpers).

export { JUNK_LIST_ITEMS, STRICT_FAULTS } from './faults.js';
export { formatUtcPlusZero, isIsoWithOffset, parseRetryAfter, validateProvision } from './wire.js';

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
  /**
   * The strictest reading of the NAS contract (see docs/emulator.md): turns on rememberKeys,
   * removeRowOnDelivery, emptyProvisionReply, listQuirks and junkListItems, with deliveryAttempts 4.
   */
  strict?: boolean;
  /** Initial fault switches, applied after `strict`; validated like `POST /_emulator/faults`. */
  faults?: Partial<FaultSwitches>;
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
  /** The caller's User-Agent header (Chronos names itself: docs/contract.md, hop 1). */
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
  /**
   * Remember every dedup_key: a provision whose key was already delivered (a delivery got a 2xx), given up
   * or dropped answers 200 and arms nothing; the job's current row is left exactly as it is.
   */
  rememberKeys: boolean;
  /**
   * When a delivery ends (2xx, after the duplicateDelivery POST if on, or given up), remove the job's row
   * removeRowDelayMs later, whatever arm it then holds: also one provisioned while the delivery was in flight.
   */
  removeRowOnDelivery: boolean;
  /** Delay of the removeRowOnDelivery removal, in ms (default 250). */
  removeRowDelayMs: number;
  /** Attempts per delivery before giving up (default: the `retry.maxAttempts` option, 8). */
  deliveryAttempts: number;
  /** A successful provision answers 200 with an empty body (no `schedule_id`). */
  emptyProvisionReply: boolean;
  /** `list` items omit `schedule_id`, render `fire_at` in UTC with `+00:00`, and carry unknown fields. */
  listQuirks: boolean;
  /** Each `list` reply also carries the malformed items in JUNK_LIST_ITEMS. */
  junkListItems: boolean;
  /** The `list` item of each named job is sent with `"fire_at": "soon"`. */
  malformedListJobs: string[];
}

/** A row NAS removed on its own (the removeRowOnDelivery fault). */
export interface RowRemoval {
  job_id: string;
  /** ISO instant (emulator clock) of the removal. */
  at: string;
  /** fire_at of the delivery whose end scheduled the removal. */
  after_delivery_of: string;
  /** fire_at of the arm the row held when it was removed, or null when it was already empty. */
  removed_fire_at: string | null;
}

/** Why NAS considers a dedup_key consumed (the rememberKeys fault). */
export type KeyOutcome = 'delivered' | 'given_up' | 'dropped';

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
  /** Rows removed by the removeRowOnDelivery fault, oldest first. */
  rowRemovals(): RowRemoval[];
  /** dedup_keys NAS has consumed (delivered, given up or dropped), oldest first. */
  consumedKeys(): Array<{ dedup_key: string; outcome: KeyOutcome }>;
  /** Whether the emulator was started with `strict: true`. */
  strict: boolean;
  /** Mutable fault switches. */
  faults: FaultSwitches;
  /** The public JWKS as served at jwksUrl. */
  jwks(): { keys: JWK[] };
  /** The kid of the current signing key. */
  currentKid(): string;
  /** Make a new key the signing key; the old public key stays in the JWKS for retiredKeyTtlMs. */
  /** See SigningKeys.rotate: a new signing key, or with `keepKid` new key material under the same kid. */
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

const DELIVERY_HISTORY = 200;

export async function startEmulator(opts: EmulatorOptions = {}): Promise<Emulator> {
  const clock: Clock = opts.clock ?? systemClock;
  const offsetMs = opts.clockOffsetMs ?? 0;
  const alg: FireAlg = opts.alg ?? 'ES256';
  const agentToken = opts.agentToken ?? 'dev-agent-token';
  const audience = opts.audience ?? 'agent:dev';
  const strict = opts.strict === true;
  const listeners = new Set<() => void>();
  const closing = new AbortController();
  let url = '';

  // Deliveries exist only once the faults do; the earlyMs setter reaches them through this late binding.
  let deliveries: Deliveries | undefined;
  const faults = createFaults(Math.max(1, opts.retry?.maxAttempts ?? 8), () => deliveries?.retimeAll());
  for (const initial of [strict ? STRICT_FAULTS : {}, opts.faults ?? {}]) {
    const problem = mergeFaults(faults, initial);
    if (problem) throw new ChronosError('invalid_config', `emulator faults: ${problem}`);
  }
  const ctx: EmulatorContext = {
    clock,
    now: () => clock.now() + offsetMs,
    log: opts.log ?? (() => {}),
    notify: () => {
      for (const listener of [...listeners]) listener();
    },
    faults,
    closing: closing.signal,
  };

  const keys = await SigningKeys.create(ctx, alg, opts.retiredKeyTtlMs ?? 10 * 60_000);
  const table = new ArmTable(ctx);
  const delivery = new Deliveries(ctx, table, keys, {
    baseDelayMs: opts.retry?.baseDelayMs ?? 500,
    maxDelayMs: opts.retry?.maxDelayMs ?? 30_000,
    deliveryTimeoutMs: opts.deliveryTimeoutMs ?? 10_000,
    audience,
    issuer: () => url,
    ...(opts.deliverVia ? { deliverVia: opts.deliverVia } : {}),
  });
  deliveries = delivery;

  async function fireNow(jobId: string): Promise<DeliveryAttempt> {
    const arm = table.get(jobId);
    if (!arm) throw new ChronosError('job_not_found', `no one-shot armed for job ${jobId}`);
    return delivery.deliverNow(arm);
  }

  const state = (): Record<string, unknown> => ({
    url,
    audience,
    alg,
    clock_offset_ms: offsetMs,
    now: formatInstant(ctx.now()),
    current_kid: keys.currentKid(),
    strict,
    armed: table.publicArms(),
    deliveries: delivery.attempts().slice(-DELIVERY_HISTORY),
    row_removals: table.rowRemovals().slice(-DELIVERY_HISTORY),
    consumed_keys: table.consumedKeys().slice(-DELIVERY_HISTORY),
    faults: snapshotFaults(faults),
  });

  const router = createRouter({ ctx, table, keys, agentToken, state, fireNow });
  const server: Server = createServer((req, res) => {
    router.route(req, res).catch((err: unknown) => {
      ctx.log(`error    ${req.method} ${req.url}: ${describeError(err)}`);
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
  ctx.log(`listen   ${url}  (aud ${audience}, ${alg}, kid ${keys.currentKid()}${strict ? ', strict' : ''})`);
  if (strict || opts.faults) ctx.log(`faults   ${JSON.stringify(snapshotFaults(faults))}`);

  let closed: Promise<void> | undefined;

  return {
    url,
    jwksUrl: `${url}/.well-known/jwks.json`,
    audience,
    agentToken,
    alg,
    faults,
    strict,
    armed: () => table.publicArms(),
    deliveries: () => delivery.attempts(),
    provisions: router.calls,
    rowRemovals: () => table.rowRemovals(),
    consumedKeys: () => table.consumedKeys(),
    jwks: () => keys.jwks(),
    currentKid: () => keys.currentKid(),
    rotateKey: (options) => keys.rotate(options),
    mintFireToken: (claims) => keys.sign({ aud: audience, iss: url }, { sub: 'job', ...claims }),
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
        table.close();
        await delivery.close();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        ctx.log('closed');
      })();
      return closed;
    },
  };
}
