import type { KeyObject } from 'node:crypto';
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTPayload, jwtVerify } from 'jose';
import { errorMessage } from '../../src/errors.js';
import {
  ALLOWED_ALGORITHMS,
  CLOCK_TOLERANCE_SECONDS,
  FIRE_PURPOSE,
  type FireClaimsOptions,
  type VerifyResult,
} from '../../src/fire/token.js';

/*
 * The fire-token check as src/fire/token.ts did it before it verified with node:crypto: jose's
 * jwtVerify with the same options, then purpose and lifetime, and jose's errors classified into refusal
 * codes. Kept as the reference the synchronous verifier is compared with (jws-differential.test.ts).
 */

export type ReferenceKeys = KeyObject | JSONWebKeySet;

export async function referenceCheck(
  token: string,
  keys: ReferenceKeys,
  opts: FireClaimsOptions,
): Promise<VerifyResult> {
  const key = 'keys' in keys ? createLocalJWKSet(keys as JSONWebKeySet) : (keys as KeyObject);
  try {
    const { payload } = await jwtVerify(token, key as Parameters<typeof jwtVerify>[1], {
      algorithms: ALLOWED_ALGORITHMS,
      audience: opts.audience,
      issuer: [...opts.issuers],
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      requiredClaims: ['exp'],
      currentDate: new Date(opts.now),
    });
    if (payload['purpose'] !== FIRE_PURPOSE) return { ok: false, code: 'purpose_mismatch' };
    if (lifetimeSeconds(payload, opts.now) > opts.maxLifetimeSeconds)
      return { ok: false, code: 'lifetime_too_long' };
    return { ok: true, claims: payload };
  } catch (err) {
    return { ok: false, ...classify(err) };
  }
}

function lifetimeSeconds(claims: JWTPayload, now: number): number {
  const exp = claims.exp ?? 0;
  const from = typeof claims.iat === 'number' ? claims.iat : Math.floor(now / 1000);
  return exp - from;
}

/** The mapping from jose's errors to refusal codes the fire route used. */
export function classify(err: unknown): { code: VerifyFailureCode; detail?: string } {
  const detail = errorMessage(err);
  if (err instanceof errors.JWTExpired) return { code: 'expired', detail };
  if (err instanceof errors.JWKSNoMatchingKey) return { code: 'kid_unknown', detail };
  if (err instanceof errors.JOSEAlgNotAllowed) return { code: 'alg_not_allowed', detail };
  if (err instanceof errors.JWSSignatureVerificationFailed) return { code: 'signature_invalid', detail };
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return { code: 'audience_mismatch', detail };
    if (err.claim === 'iss') return { code: 'issuer_mismatch', detail };
    if (err.claim === 'nbf') return { code: 'not_yet_valid', detail };
    if (err.claim === 'exp') return { code: 'exp_missing', detail };
    return { code: 'token_malformed', detail };
  }
  if (err instanceof errors.JOSENotSupported) return { code: 'alg_not_allowed', detail };
  if (err instanceof errors.JWKSMultipleMatchingKeys) return { code: 'signature_invalid', detail };
  return { code: 'token_malformed', detail };
}

type VerifyFailureCode = Extract<VerifyResult, { ok: false }>['code'];
