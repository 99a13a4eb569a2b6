import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { JSONWebKeySet, JWTPayload } from 'jose';
import type { Clock } from '../clock.js';
import { DEFAULT_FIRE_TOKEN_MAX_LIFETIME_SECONDS } from '../config/config.js';
import { parseInlinePublicKey } from '../config/inline-key.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { USER_AGENT } from '../version.js';
import { InlineKey, LocalKeySet, parseJsonObject, type VerificationKeys, verifyCompactJws } from './jws.js';

/** Asymmetric algorithms only: an HS* token "signed" with our public key as the secret must never pass. */
export const ALLOWED_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
];
export const CLOCK_TOLERANCE_SECONDS = 30;
export const FIRE_PURPOSE = 'cron_fire';
/**
 * How old the key set may get before a process refreshes it (off the fire path). A key replaced under the
 * same kid is also picked up at once by the refresh a failed signature triggers; this bounds how long a
 * retired key that NAS still lists would keep verifying.
 */
export const DEFAULT_JWKS_MAX_AGE_MS = 60 * 60_000;

/** Stable codes for why a fire token was refused; logged, never sent (the 401 body is always the same). */
export type TokenFailure =
  | 'token_missing'
  | 'token_malformed'
  | 'alg_not_allowed'
  | 'signature_invalid'
  | 'kid_unknown'
  | 'exp_missing'
  | 'expired'
  | 'not_yet_valid'
  | 'audience_mismatch'
  | 'issuer_mismatch'
  | 'purpose_mismatch'
  | 'lifetime_too_long'
  | 'subject_mismatch'
  | 'no_key_source'
  | 'jwks_unavailable';

export type VerifyResult =
  | { ok: true; claims: JWTPayload }
  | { ok: false; code: TokenFailure; detail?: string };

export interface FireTokenVerifier {
  verify(authorization: string | undefined): Promise<VerifyResult>;
  /** Age of the cached JWKS in ms, or null without a JWKS source / before the first load. */
  jwksAgeMs(): number | null;
  /** Load (or fetch) the key set ahead of the first fire; never throws. */
  warm(): Promise<void>;
  /**
   * Fetch the key set when the one in use is older than its maximum age; never throws. Called off the
   * fire path (after a woken process's first reply), so an old cache still answers the first fire.
   */
  refreshIfStale(): Promise<void>;
}

export interface VerifierOptions {
  audience: string | undefined;
  issuer: string | undefined;
  jwksUrl?: string | undefined;
  publicKey?: string | undefined;
  /** Where the JWKS is persisted so a cold process verifies its first fire without a network call. */
  cacheFile?: string | undefined;
  clock: Clock;
  /** Minimum time between two JWKS refreshes triggered by a token the cached set cannot verify. */
  refreshCooldownMs?: number;
  /** A key set older than this is refreshed by refreshIfStale() (default DEFAULT_JWKS_MAX_AGE_MS). */
  maxAgeMs?: number;
  /** Longest accepted token lifetime: `exp - iat`, or `exp - now` without `iat` (default 300 s). */
  maxLifetimeSeconds?: number;
  fetchTimeoutMs?: number;
  /** Refreshes at info; a failed fetch of the key set at warn (tokens signed with keys it lacks are refused). */
  logger?: Logger;
}

const ALLOWED = new Set(ALLOWED_ALGORITHMS);

/** The `iss` values a fire token may carry: the portal URL, with or without its trailing slash. */
export function acceptedIssuers(issuer: string | undefined): string[] {
  return issuer ? [issuer, `${issuer}/`] : [];
}

/**
 * The time claims as checkFireToken judges them (whole seconds, CLOCK_TOLERANCE_SECONDS either way), for
 * the two places that judge a token without its signature: the refusal pre-check and a remembered token's
 * reuse.
 */
export function timeClaimProblem(
  claims: { exp?: unknown; nbf?: unknown },
  now: number,
): 'exp_missing' | 'expired' | 'not_yet_valid' | null {
  const seconds = Math.floor(now / 1000);
  if (typeof claims.exp !== 'number') return 'exp_missing';
  if (claims.exp + CLOCK_TOLERANCE_SECONDS <= seconds) return 'expired';
  if (typeof claims.nbf === 'number' && claims.nbf - CLOCK_TOLERANCE_SECONDS > seconds)
    return 'not_yet_valid';
  return null;
}

export interface FireClaimsOptions {
  audience: string;
  /** Accepted `iss` values (see acceptedIssuers). */
  issuers: readonly string[];
  /** Epoch ms. */
  now: number;
  maxLifetimeSeconds: number;
}

/**
 * Verifies a fire token's signature with `keys` and judges its claims, synchronously. The claims are
 * checked in the order and with the codes the fire route has always logged: presence of iss, aud and
 * exp, then iss, aud, the time claims (whole seconds, CLOCK_TOLERANCE_SECONDS either way), purpose and
 * lifetime.
 */
export function checkFireToken(token: string, keys: VerificationKeys, opts: FireClaimsOptions): VerifyResult {
  const jws = verifyCompactJws(token, keys, ALLOWED);
  if (!jws.ok) return jws;
  const claims = parseJsonObject(jws.payload) as JWTPayload | undefined;
  if (!claims)
    return { ok: false, code: 'token_malformed', detail: 'the JWT claims set is not a JSON object' };
  for (const [claim, code] of REQUIRED_CLAIMS)
    if (!Object.hasOwn(claims, claim))
      return { ok: false, code, detail: `missing required "${claim}" claim` };
  if (!opts.issuers.includes(claims.iss as string))
    return { ok: false, code: 'issuer_mismatch', detail: 'unexpected "iss" claim value' };
  const aud = claims.aud;
  if (!(typeof aud === 'string' ? aud === opts.audience : Array.isArray(aud) && aud.includes(opts.audience)))
    return { ok: false, code: 'audience_mismatch', detail: 'unexpected "aud" claim value' };
  const now = Math.floor(opts.now / 1000);
  if (claims.iat !== undefined && typeof claims.iat !== 'number')
    return { ok: false, code: 'token_malformed', detail: '"iat" claim must be a number' };
  if (claims.nbf !== undefined && typeof claims.nbf !== 'number')
    return { ok: false, code: 'not_yet_valid', detail: '"nbf" claim must be a number' };
  if (claims.nbf !== undefined && claims.nbf > now + CLOCK_TOLERANCE_SECONDS)
    return { ok: false, code: 'not_yet_valid', detail: '"nbf" claim timestamp check failed' };
  if (typeof claims.exp !== 'number')
    return { ok: false, code: 'exp_missing', detail: '"exp" claim must be a number' };
  if (claims.exp <= now - CLOCK_TOLERANCE_SECONDS)
    return { ok: false, code: 'expired', detail: '"exp" claim timestamp check failed' };
  if (claims['purpose'] !== FIRE_PURPOSE) return { ok: false, code: 'purpose_mismatch' };
  const lifetime = tokenLifetimeSeconds(claims, opts.now);
  if (lifetime > opts.maxLifetimeSeconds)
    return {
      ok: false,
      code: 'lifetime_too_long',
      detail: `token lives ${lifetime} s; at most ${opts.maxLifetimeSeconds} s is accepted`,
    };
  return { ok: true, claims };
}

/** Checked for presence first, in this order, each refused with its own code. */
const REQUIRED_CLAIMS: ReadonlyArray<[claim: string, code: TokenFailure]> = [
  ['iss', 'issuer_mismatch'],
  ['aud', 'audience_mismatch'],
  ['exp', 'exp_missing'],
];

export function createFireTokenVerifier(opts: VerifierOptions): FireTokenVerifier {
  const cooldownMs = opts.refreshCooldownMs ?? 30_000;
  const maxAgeMs = opts.maxAgeMs ?? DEFAULT_JWKS_MAX_AGE_MS;
  const maxLifetime = opts.maxLifetimeSeconds ?? DEFAULT_FIRE_TOKEN_MAX_LIFETIME_SECONDS;
  const issuers = acceptedIssuers(opts.issuer);
  let inlineKey: InlineKey | undefined;
  if (opts.publicKey) inlineKey = new InlineKey(parseInlinePublicKey(opts.publicKey));

  // Each member imported once per installed set, never per token.
  let jwks: { set: JSONWebKeySet; keys: LocalKeySet; loadedAt: number } | undefined;
  let refreshing: Promise<boolean> | undefined;
  let lastRefreshAt = Number.NEGATIVE_INFINITY;
  let lastFailureAt = Number.NEGATIVE_INFINITY;

  function install(set: JSONWebKeySet, loadedAt: number): void {
    jwks = { set, keys: new LocalKeySet(set), loadedAt };
  }

  async function loadCache(): Promise<boolean> {
    if (!opts.cacheFile) return false;
    try {
      const cached = JSON.parse(await readFile(opts.cacheFile, 'utf8')) as {
        fetched_at: number;
        jwks: JSONWebKeySet;
      };
      if (!Array.isArray(cached.jwks?.keys)) return false;
      install(cached.jwks, cached.fetched_at);
      return true;
    } catch {
      return false; // absent or unreadable: the network fetch below replaces it
    }
  }

  async function fetchJwks(): Promise<boolean> {
    if (!opts.jwksUrl) return false;
    try {
      const res = await fetch(opts.jwksUrl, {
        headers: { accept: 'application/json', 'user-agent': USER_AGENT },
        signal: AbortSignal.timeout(opts.fetchTimeoutMs ?? 5_000),
      });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const set = (await res.json()) as JSONWebKeySet;
      if (!Array.isArray(set.keys)) throw new Error('response has no "keys" array');
      install(set, opts.clock.now());
      if (opts.cacheFile) await persist(opts.cacheFile, { fetched_at: jwks!.loadedAt, jwks: set });
      opts.logger?.info({ keys: set.keys.length }, 'fire key set refreshed');
      return true;
    } catch (err) {
      lastFailureAt = opts.clock.now();
      opts.logger?.warn({ err: errorMessage(err), url: opts.jwksUrl }, 'fire key set could not be fetched');
      return false;
    }
  }

  /** Single-flight refresh with a cooldown, so a burst of unverifiable tokens cannot hammer the portal. */
  function refresh(): Promise<boolean> {
    if (refreshing) return refreshing;
    if (opts.clock.now() - lastRefreshAt < cooldownMs) return Promise.resolve(false);
    lastRefreshAt = opts.clock.now();
    return fetchOnce();
  }

  function fetchOnce(): Promise<boolean> {
    refreshing ??= fetchJwks().finally(() => {
      refreshing = undefined;
    });
    return refreshing;
  }

  const recent = new RecentTokens();
  let warming: Promise<void> | undefined;
  function warm(): Promise<void> {
    if (!opts.jwksUrl || jwks) return Promise.resolve();
    // The first load is not an unknown-kid refresh: it does not start the cooldown.
    warming ??= loadCache().then(async (ok) => {
      // During an outage, fires are refused without a fetch each until the cooldown has passed.
      if (!ok && !jwks && opts.clock.now() - lastFailureAt >= cooldownMs) await fetchOnce();
      warming = undefined;
    });
    return warming;
  }

  function verifyWith(token: string, keys: VerificationKeys): VerifyResult {
    return checkFireToken(token, keys, {
      audience: opts.audience!,
      issuers,
      now: opts.clock.now(),
      maxLifetimeSeconds: maxLifetime,
    });
  }

  return {
    jwksAgeMs: () => (jwks ? Math.max(0, opts.clock.now() - jwks.loadedAt) : null),
    warm,
    async refreshIfStale() {
      if (!opts.jwksUrl) return;
      if (!jwks) await warm();
      if (!jwks || opts.clock.now() - jwks.loadedAt < maxAgeMs) return;
      if (opts.clock.now() - lastFailureAt < cooldownMs) return;
      await fetchOnce();
    },
    async verify(authorization) {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
      if (!authorization) return { ok: false, code: 'token_missing' };
      if (!match) return { ok: false, code: 'token_malformed', detail: 'expected "Bearer <JWT>"' };
      if (!opts.audience || !opts.issuer || (!inlineKey && !opts.jwksUrl))
        return { ok: false, code: 'no_key_source' };
      const token = match[1]!;
      const known = recent.check(token, opts.clock.now());
      if (known) return { ok: true, claims: known };
      const result = await verifySignature(token);
      if (result.ok) recent.remember(token, result.claims);
      return result;
    },
  };

  async function verifySignature(token: string): Promise<VerifyResult> {
    if (inlineKey) return verifyWith(token, inlineKey);
    if (!jwks) await warm();
    if (!jwks) return { ok: false, code: 'jwks_unavailable' };
    const first = verifyWith(token, jwks.keys);
    if (first.ok || (first.code !== 'kid_unknown' && first.code !== 'signature_invalid')) return first;
    // An unknown kid is a rotation at NAS; a bad signature under a kid we know may be one too, when NAS
    // replaced the key and kept its kid. Either way: refresh once (single-flight, cooldown), then decide.
    if (!(await refresh())) return first;
    return verifyWith(token, jwks.keys);
  }
}

/**
 * Tokens verified recently, by their exact text. A duplicate delivery (a relay retrying the same request,
 * see docs/contract.md) carries the very same JWT: its signature was checked, so only the time claims need checking
 * again. That spares the signature check (~0.15 ms of CPU for ES256) on the path that must answer duplicates
 * fastest.
 */
class RecentTokens {
  private readonly entries = new Map<string, JWTPayload>();

  /** About 1 KB each; a token is never used past its exp (90-120 s at NAS), so this bounds a burst, not a day. */
  constructor(private readonly limit = 4096) {}

  check(token: string, now: number): JWTPayload | undefined {
    const claims = this.entries.get(token);
    if (!claims) return undefined;
    if (timeClaimProblem(claims, now) !== null) {
      this.entries.delete(token);
      return undefined;
    }
    return claims;
  }

  remember(token: string, claims: JWTPayload): void {
    if (this.entries.size >= this.limit) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(token, claims);
  }
}

/** `exp - iat`, or `exp - now` for a token without `iat`, in whole seconds. */
function tokenLifetimeSeconds(claims: JWTPayload, now: number): number {
  const exp = claims.exp ?? 0;
  const from = typeof claims.iat === 'number' ? claims.iat : Math.floor(now / 1000);
  return exp - from;
}

async function persist(file: string, value: unknown): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const tmp = join(dirname(file), `.${process.pid}.${Date.now()}.jwks.tmp`);
  await writeFile(tmp, JSON.stringify(value));
  await rename(tmp, file);
}
