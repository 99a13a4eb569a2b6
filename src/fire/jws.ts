import { constants, createPublicKey, type KeyObject, verify } from 'node:crypto';
import { errorMessage } from '../errors.js';

/*
 * Compact JWS verification for fire tokens, synchronous, with node:crypto. WebCrypto (what jose 6 uses)
 * runs every signature check on libuv's thread pool; in a warm but idle process the hop to a sleeping
 * thread and back costs more than the check itself (docs/performance.md, "Fire tokens verified
 * synchronously"). This module judges a token exactly as jose's jwtVerify with a local key set or a
 * KeyObject did: the same headers refused, the same key chosen, the same refusal for each failure, in
 * the same order (test/fire/jws-differential.test.ts replays both on the same tokens).
 */

/** Why a JWS was refused; the codes are a subset of the fire route's TokenFailure (src/fire/token.ts). */
export type JwsFailure = 'token_malformed' | 'alg_not_allowed' | 'kid_unknown' | 'signature_invalid';

export type JwsResult =
  | { ok: true; header: Record<string, unknown>; payload: Buffer }
  | { ok: false; code: JwsFailure; detail: string };

/** A JSON Web Key as it arrives in a key set: any members, none trusted yet. */
export type Jwk = Record<string, unknown>;

interface AlgorithmSpec {
  /** The JWK key type this algorithm verifies with. */
  kty: 'RSA' | 'EC' | 'OKP';
  /** The curve the key must be on (ES* and EdDSA); any other curve is refused, never used. */
  crv?: string;
  /** Digest for crypto.verify; null for Ed25519, which hashes internally. */
  hash: string | null;
  /** RSA-PSS with a salt as long as the hash (RFC 7518 section 3.5); PKCS #1 v1.5 otherwise. */
  pssSaltLength?: number;
}

const rsa = (bits: number, pss: boolean): AlgorithmSpec => ({
  kty: 'RSA',
  hash: `sha${bits}`,
  ...(pss ? { pssSaltLength: bits / 8 } : {}),
});
const ecdsa = (crv: string, bits: number): AlgorithmSpec => ({ kty: 'EC', crv, hash: `sha${bits}` });
const eddsa: AlgorithmSpec = { kty: 'OKP', crv: 'Ed25519', hash: null };

/** Every asymmetric JWS algorithm this verifier can check; which of them a caller accepts is its choice. */
const ALGORITHMS: ReadonlyMap<string, AlgorithmSpec> = new Map(
  Object.entries({
    RS256: rsa(256, false),
    RS384: rsa(384, false),
    RS512: rsa(512, false),
    PS256: rsa(256, true),
    PS384: rsa(384, true),
    PS512: rsa(512, true),
    ES256: ecdsa('P-256', 256),
    ES384: ecdsa('P-384', 384),
    ES512: ecdsa('P-521', 512),
    EdDSA: eddsa,
    Ed25519: eddsa,
  }),
);

/** RSA keys shorter than this are refused (RFC 7518 section 3.3), whatever they signed. */
const MIN_RSA_BITS = 2048;

/**
 * One configured public key (CHRONOS_FIRE_PUBLIC_KEY): no kid, no restrictions, only its type decides. A
 * key of another type than the alg's is refused as alg_not_allowed, as jose did on Node 20 (from Node
 * 22.10 jose imports a KeyObject without JWK export, and the same token fails with token_malformed there).
 */
export class InlineKey {
  /** The key's JWK type and curve, or why it has none (a key type JOSE cannot describe is never usable). */
  private readonly shape: { kty: string; crv: string | undefined } | { error: string };

  constructor(readonly key: KeyObject) {
    try {
      const jwk = key.export({ format: 'jwk' });
      this.shape = { kty: String(jwk.kty), crv: typeof jwk.crv === 'string' ? jwk.crv : undefined };
    } catch (err) {
      this.shape = { error: `the configured key cannot verify JWS: ${errorMessage(err)}` };
    }
  }

  /** The key for `alg`, or the refusal when this key cannot verify it. */
  keyFor(alg: string): KeyObject | Refusal {
    const spec = ALGORITHMS.get(alg);
    if (!spec) return refuse('alg_not_allowed', `alg ${JSON.stringify(alg)} is not supported`);
    const shape = this.shape;
    if ('error' in shape) return refuse('token_malformed', shape.error);
    if (shape.kty !== spec.kty)
      return refuse(
        'alg_not_allowed',
        `alg ${alg} needs a ${spec.kty} key; the configured key is ${shape.kty}`,
      );
    // jose refused this one at WebCrypto's key import, hence not alg_not_allowed.
    if (spec.crv !== undefined && shape.crv !== spec.crv)
      return refuse(
        'token_malformed',
        `alg ${alg} needs curve ${spec.crv}; the configured key is on ${shape.crv}`,
      );
    return this.key;
  }
}

interface KeySetMember {
  jwk: Jwk;
  /** Imported once when the set is installed; a member that cannot be imported refuses what selects it. */
  key: KeyObject | { error: string };
}

/**
 * A JSON Web Key Set with its public keys imported once. A token's `alg` and `kid` select exactly one
 * member as jose's createLocalJWKSet does: the member's kty (and curve) must fit the alg, its own `alg`,
 * `use` and `key_ops` must allow verifying with it, and without a `kid` in the token every other member
 * that fits counts too. No member: kid_unknown. Several: refused as signature_invalid, as jose's
 * JWKSMultipleMatchingKeys was (the refresh that follows may publish an unambiguous set).
 */
export class LocalKeySet {
  private readonly members: KeySetMember[];

  /** Throws when `set` is not a key set at all (jose refused such a set as a whole, too). */
  constructor(set: unknown) {
    if (!isPlainObject(set) || !Array.isArray(set['keys']) || !set['keys'].every(isPlainObject))
      throw new Error('JSON Web Key Set malformed: "keys" must be an array of objects');
    this.members = (set['keys'] as Jwk[]).map((jwk) => ({ jwk: { ...jwk }, key: importPublicJwk(jwk) }));
  }

  /** The one member that verifies `alg` under `kid` (undefined: the token has none), imported at install. */
  keyFor(alg: string, kid: unknown): KeyObject | Refusal {
    const spec = ALGORITHMS.get(alg);
    if (!spec) return refuse('alg_not_allowed', `alg ${JSON.stringify(alg)} is not supported`);
    const candidates = this.members.filter((m) => usableFor(m.jwk, spec, alg, kid));
    const [member] = candidates;
    if (!member)
      return refuse('kid_unknown', `no key in the key set fits kid ${JSON.stringify(kid)} and alg ${alg}`);
    if (candidates.length > 1)
      return refuse(
        'signature_invalid',
        `${candidates.length} keys in the key set fit kid ${JSON.stringify(kid)} and alg ${alg}`,
      );
    if ('error' in member.key) return refuse('token_malformed', member.key.error);
    return member.key;
  }
}

export type VerificationKeys = InlineKey | LocalKeySet;

interface Refusal {
  refused: { code: JwsFailure; detail: string };
}

const refuse = (code: JwsFailure, detail: string): Refusal => ({ refused: { code, detail } });
const fail = (code: JwsFailure, detail: string): JwsResult => ({ ok: false, code, detail });

/**
 * Verifies a compact JWS whose payload is a JWT (so `b64: false` is refused) and returns its decoded
 * header and payload bytes. The order of the checks is jose's: a token that fails several ways is refused
 * for the first one jose would have found.
 */
export function verifyCompactJws(
  token: string,
  keys: VerificationKeys,
  allowed: ReadonlySet<string>,
): JwsResult {
  const parts = token.split('.');
  if (parts.length !== 3) return fail('token_malformed', 'a compact JWS has three dot-separated parts');
  const [encodedHeader, encodedPayload, encodedSignature] = parts as [string, string, string];

  const header = decodeJson(encodedHeader);
  if (!header) return fail('token_malformed', 'the JWS header is not a base64url-encoded JSON object');

  const crit = checkCrit(header);
  if (typeof crit !== 'boolean') return crit;
  const b64 = crit;

  const alg = header['alg'];
  if (typeof alg !== 'string' || alg === '') return fail('token_malformed', 'the JWS header has no "alg"');
  const spec = allowed.has(alg) ? ALGORITHMS.get(alg) : undefined;
  if (!spec) return fail('alg_not_allowed', `alg ${JSON.stringify(alg)} is not allowed`);

  const notAscii = () => fail('token_malformed', 'the JWS payload is not ASCII');
  if (!b64 && !isAscii(encodedPayload)) return notAscii();
  let key: KeyObject | Refusal | undefined;
  // jose resolves a key set's member before it looks at the signature, and an inline key after.
  if (keys instanceof LocalKeySet) {
    key = keys.keyFor(alg, header['kid']);
    if ('refused' in key) return { ok: false, ...key.refused };
  }
  if (b64 && !isAscii(encodedPayload)) return notAscii();
  const signature = decodeBase64url(encodedSignature);
  if (!signature) return fail('token_malformed', 'the JWS signature is not base64url');
  key ??= (keys as InlineKey).keyFor(alg);
  if ('refused' in key) return { ok: false, ...key.refused };
  return checkSignature(token, encodedPayload, signature, header, b64, alg, spec, key);
}

function checkSignature(
  token: string,
  encodedPayload: string,
  signature: Buffer,
  header: Record<string, unknown>,
  b64: boolean,
  alg: string,
  spec: AlgorithmSpec,
  key: KeyObject,
): JwsResult {
  if (spec.kty === 'RSA') {
    const bits = key.asymmetricKeyDetails?.modulusLength;
    if (typeof bits !== 'number' || bits < MIN_RSA_BITS)
      return fail('token_malformed', `${alg} needs an RSA key of at least ${MIN_RSA_BITS} bits`);
  }
  const signingInput = Buffer.from(token.slice(0, token.lastIndexOf('.')), 'latin1');
  let valid = false;
  try {
    valid = verify(spec.hash, signingInput, keyInput(key, spec), signature);
  } catch {
    valid = false; // a signature of the wrong shape for the key is simply not a valid one
  }
  if (!valid) return fail('signature_invalid', 'signature verification failed');
  if (!b64) return fail('token_malformed', 'a JWT must not use an unencoded payload ("b64": false)');
  const payload = decodeBase64url(encodedPayload);
  if (!payload) return fail('token_malformed', 'the JWS payload is not base64url');
  return { ok: true, header, payload };
}

function keyInput(key: KeyObject, spec: AlgorithmSpec) {
  if (spec.kty === 'EC') return { key, dsaEncoding: 'ieee-p1363' as const };
  if (spec.pssSaltLength !== undefined)
    return { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: spec.pssSaltLength };
  if (spec.kty === 'RSA') return { key, padding: constants.RSA_PKCS1_PADDING };
  return key;
}

/**
 * The `crit` header as RFC 7515 section 4.1.11 asks: only `b64` is an extension we understand; any other
 * critical extension refuses the token (as an unsupported algorithm, jose's code for it). Returns `b64`.
 */
function checkCrit(header: Record<string, unknown>): boolean | JwsResult {
  const crit = header['crit'];
  if (crit === undefined) return true;
  if (
    !Array.isArray(crit) ||
    crit.length === 0 ||
    crit.some((name) => typeof name !== 'string' || name.length === 0)
  )
    return fail('token_malformed', '"crit" must be an array of non-empty strings');
  for (const name of crit as string[]) {
    if (name !== 'b64')
      return fail('alg_not_allowed', `critical extension ${JSON.stringify(name)} is not supported`);
    if (!Object.hasOwn(header, name) || header[name] === undefined)
      return fail('token_malformed', `critical extension ${JSON.stringify(name)} is missing`);
  }
  const b64 = header['b64'];
  if (typeof b64 !== 'boolean') return fail('token_malformed', '"b64" must be a boolean');
  return b64;
}

function usableFor(jwk: Jwk, spec: AlgorithmSpec, alg: string, kid: unknown): boolean {
  const ops = jwk['key_ops'];
  const ext = jwk['ext'];
  const use = jwk['use'];
  return (
    (ext === undefined || typeof ext === 'boolean') &&
    (ops === undefined ||
      (Array.isArray(ops) &&
        ops.every((op, i) => typeof op === 'string' && ops.indexOf(op) === i) &&
        ops.includes('verify'))) &&
    jwk['kty'] === spec.kty &&
    (kid === undefined || (typeof kid === 'string' && kid === jwk['kid'])) &&
    (jwk['alg'] === undefined || jwk['alg'] === alg) &&
    (use === undefined || use === 'sig') &&
    (spec.crv === undefined || jwk['crv'] === spec.crv)
  );
}

/**
 * A key set member as a public KeyObject. A member carrying private material, or allowing operations
 * besides `verify`, cannot be a verification key (WebCrypto refused to import those too).
 */
function importPublicJwk(jwk: Jwk): KeyObject | { error: string } {
  const kid = JSON.stringify(jwk['kid']);
  if (jwk['d'] !== undefined) return { error: `key ${kid} in the key set is a private key` };
  const ops = jwk['key_ops'];
  if (Array.isArray(ops) && ops.some((op) => op !== 'verify'))
    return { error: `key ${kid} in the key set allows operations besides "verify"` };
  try {
    return createPublicKey({ key: jwk as never, format: 'jwk' });
  } catch (err) {
    return { error: `key ${kid} in the key set cannot be imported: ${errorMessage(err)}` };
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** A base64url segment holding a JSON object, or undefined when it is anything else. */
export function decodeJson(segment: string): Record<string, unknown> | undefined {
  const bytes = decodeBase64url(segment);
  if (!bytes) return undefined;
  return parseJsonObject(bytes);
}

/** UTF-8 JSON whose top level is an object (not an array, not null), or undefined. */
export function parseJsonObject(bytes: Uint8Array): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(strictUtf8.decode(bytes));
    return isPlainObject(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === null || proto === Object.prototype;
}

const NON_ASCII = /[\u0080-\uffff]/;
const isAscii = (text: string) => !NON_ASCII.test(text);

const BASE64URL = /^[A-Za-z0-9_-]*(={1,2})?$/;
const HAS_WHITESPACE = /[\t\n\f\r ]/;
const WHITESPACE = /[\t\n\f\r ]/g;

/**
 * Base64url as jose decodes it (the WHATWG forgiving base64 of atob over the URL alphabet): ASCII
 * whitespace is ignored, padding is optional but must be right when present, and a length that cannot
 * come from whole bytes is refused. Buffer's own decoder would skip any junk, so it only decodes what
 * passed this check.
 */
export function decodeBase64url(segment: string): Buffer | undefined {
  const text = HAS_WHITESPACE.test(segment) ? segment.replace(WHITESPACE, '') : segment;
  const match = BASE64URL.exec(text);
  if (!match) return undefined;
  if (match[1] !== undefined ? text.length % 4 !== 0 : text.length % 4 === 1) return undefined;
  return Buffer.from(text, 'base64url');
}
