// The emulator's public shapes, apart from startEmulator so its parts (arms, delivery, routes, signing,
// faults, context) can share them without importing the module that assembles them.
import type { JWK } from 'jose';
import type { Clock } from '../clock.js';

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
