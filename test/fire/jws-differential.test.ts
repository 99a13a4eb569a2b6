/*
 * The synchronous fire-token verifier (src/fire/jws.ts, checkFireToken in src/fire/token.ts) against the
 * one it replaced: jose's jwtVerify with the options the fire route used, its errors classified into
 * refusal codes (test/helpers/jose-reference.ts). Every case runs through both on the same token and key
 * source (an inline KeyObject, or a key set); they must agree on accept/refuse and on the refusal code,
 * and both must give the code the case names, so a case cannot silently stop testing what it says.
 *   "honest tokens"      every allowed alg, signed by jose, inline key and key set
 *   "refused tokens..." algs, keys, curves, tampering, kid selection, crit/b64, malformed parts, claims
 *   "mutations"          a few hundred seeded random edits of real tokens
 *   "base64url"          the segment decoder against jose's on seeded random strings
 */
import {
  createPublicKey,
  generateKeyPairSync,
  type JsonWebKey,
  type KeyObject,
  KeyObject as KeyObjectClass,
  sign,
} from 'node:crypto';
import { base64url, type JSONWebKeySet, SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeBase64url, InlineKey, LocalKeySet } from '../../src/fire/jws.js';
import {
  ALLOWED_ALGORITHMS,
  checkFireToken,
  type FireClaimsOptions,
  type TokenFailure,
} from '../../src/fire/token.js';
import { type ReferenceKeys, referenceCheck } from '../helpers/jose-reference.js';
import { seededRandom } from '../helpers/seeded-random.js';

const AUD = 'agent:differential';
const ISS = 'https://nas.example.test';
const NOW = 1_800_000_000_000;
const IAT = NOW / 1000;
const OPTS: FireClaimsOptions = {
  audience: AUD,
  issuers: [ISS, `${ISS}/`],
  now: NOW,
  maxLifetimeSeconds: 300,
};

type Alg =
  | 'RS256'
  | 'RS384'
  | 'RS512'
  | 'PS256'
  | 'PS384'
  | 'PS512'
  | 'ES256'
  | 'ES384'
  | 'ES512'
  | 'EdDSA'
  | 'Ed25519';

interface Pair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

let rsa: Pair;
let rsaOther: Pair;
let rsaShort: Pair;
let rsaPss: Pair;
let p256: Pair;
let p256Other: Pair;
let p384: Pair;
let p521: Pair;
let ed25519: Pair;
let ed448: Pair;
let x25519: Pair;
let secp256k1: Pair;

beforeAll(() => {
  rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  rsaOther = generateKeyPairSync('rsa', { modulusLength: 2048 });
  rsaShort = generateKeyPairSync('rsa', { modulusLength: 1024 });
  rsaPss = generateKeyPairSync('rsa-pss', { modulusLength: 2048 });
  p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  p256Other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  p521 = generateKeyPairSync('ec', { namedCurve: 'P-521' });
  ed25519 = generateKeyPairSync('ed25519');
  ed448 = generateKeyPairSync('ed448');
  x25519 = generateKeyPairSync('x25519');
  secp256k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
});

const keyFor = (alg: Alg): Pair =>
  alg.startsWith('RS') || alg.startsWith('PS')
    ? rsa
    : alg === 'ES256'
      ? p256
      : alg === 'ES384'
        ? p384
        : alg === 'ES512'
          ? p521
          : ed25519;

function claims(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { aud: AUD, iss: ISS, iat: IAT, exp: IAT + 90, purpose: 'cron_fire', ...extra };
}

/** A token signed by jose, as NAS's signer would produce it. */
async function joseToken(
  alg: Alg,
  pair: Pair = keyFor(alg),
  opts: { kid?: string | null; claims?: Record<string, unknown> } = {},
): Promise<string> {
  const kid = opts.kid === undefined ? 'k1' : opts.kid;
  const header = kid === null ? { alg, typ: 'JWT' } : { alg, typ: 'JWT', kid };
  return new SignJWT(opts.claims ?? claims()).setProtectedHeader(header).sign(pair.privateKey);
}

const encode = (value: unknown) =>
  typeof value === 'string' ? value : base64url.encode(JSON.stringify(value));

/**
 * A hand-built token: header and payload as objects (JSON, base64url) or as the exact segment text,
 * signed over that text with node:crypto. For the headers and key/alg pairs jose refuses to sign.
 */
function rawToken(header: unknown, payload: unknown, alg: string, key: KeyObject): string {
  const input = `${encode(header)}.${encode(payload)}`;
  return `${input}.${base64url.encode(rawSign(alg, key, Buffer.from(input, 'latin1')))}`;
}

function rawSign(alg: string, key: KeyObject, input: Buffer): Uint8Array {
  const bits = alg.slice(2);
  if (alg.startsWith('RS')) return sign(`sha${bits}`, input, key);
  if (alg.startsWith('PS'))
    return sign(`sha${bits}`, input, { key, padding: 6 /* PSS */, saltLength: Number(bits) / 8 });
  if (alg.startsWith('ES')) return sign(`sha${bits}`, input, { key, dsaEncoding: 'ieee-p1363' });
  return sign(null, input, key);
}

function jwk(pair: Pair, members: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...(pair.publicKey.export({ format: 'jwk' }) as JsonWebKey), ...members };
}

const set = (...keys: Array<Record<string, unknown>>): JSONWebKeySet => ({ keys }) as JSONWebKeySet;

type Source = KeyObject | JSONWebKeySet;

interface Case {
  name: string;
  token: () => Promise<string> | string;
  keys: () => Source;
  expected: 'accepted' | TokenFailure;
  /**
   * jose's code for this case depends on the Node version: with KeyObject.toCryptoKey (Node >= 22.10)
   * it imports an inline key without exporting it as a JWK first, and a key of the wrong type then fails
   * with a DOMException (classified token_malformed) instead of JOSENotSupported (alg_not_allowed). We
   * keep the code of the Node it was written against (20); on newer Node only accept/refuse is compared.
   */
  joseCodeVariesByNode?: boolean;
}

async function compare(c: Case): Promise<void> {
  const token = await c.token();
  const source = c.keys();
  const keys = source instanceof KeyObjectClass ? new InlineKey(source) : new LocalKeySet(source);
  const ours = checkFireToken(token, keys, OPTS);
  const reference = await referenceCheck(token, source as ReferenceKeys, OPTS);
  const outcome = (r: typeof ours) => (r.ok ? 'accepted' : r.code);
  expect(outcome(ours), 'our verifier').toBe(c.expected);
  const newerNode = typeof (KeyObjectClass.prototype as { toCryptoKey?: unknown }).toCryptoKey === 'function';
  if (c.joseCodeVariesByNode && newerNode) expect(reference.ok).toBe(ours.ok);
  else expect(outcome(reference), 'jose').toBe(c.expected);
  if (ours.ok && reference.ok) expect(ours.claims).toEqual(reference.claims);
}

// Every algorithm the fire route accepts, so one added there is tested here too.
const ALGS = ALLOWED_ALGORITHMS as Alg[];

describe('honest tokens', () => {
  const cases: Case[] = ALGS.flatMap((alg): Case[] => [
    {
      name: `${alg}, inline key`,
      token: () => joseToken(alg),
      keys: () => keyFor(alg).publicKey,
      expected: 'accepted',
    },
    {
      name: `${alg}, key set member with kid, alg and use`,
      token: () => joseToken(alg),
      keys: () => set(jwk(keyFor(alg), { kid: 'k1', alg, use: 'sig' })),
      expected: 'accepted',
    },
    {
      name: `${alg}, no kid in the token, one bare member that fits`,
      token: () => joseToken(alg, keyFor(alg), { kid: null }),
      keys: () => set(jwk(keyFor(alg))),
      expected: 'accepted',
    },
  ]);
  it.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => compare(c));
});

const tamper = (token: string, part: 0 | 1 | 2, edit: (segment: string) => string) => {
  const parts = token.split('.');
  parts[part] = edit(parts[part]!);
  return parts.join('.');
};
const flipLast = (s: string) => s.slice(0, -2) + (s.at(-2) === 'A' ? 'B' : 'A') + s.slice(-1);

const refused: Case[] = [
  // Algorithms
  {
    name: 'HS256 whose secret is the trusted PEM',
    token: () =>
      new SignJWT(claims())
        .setProtectedHeader({ alg: 'HS256' })
        .sign(new TextEncoder().encode(rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string)),
    keys: () => rsa.publicKey,
    expected: 'alg_not_allowed',
  },
  {
    name: 'HS256 against a key set',
    token: () =>
      new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', kid: 'k1' }).sign(new Uint8Array(32)),
    keys: () => set(jwk(rsa, { kid: 'k1' })),
    expected: 'alg_not_allowed',
  },
  {
    name: 'alg none',
    token: () => `${encode({ alg: 'none' })}.${encode(claims())}.`,
    keys: () => p256.publicKey,
    expected: 'alg_not_allowed',
  },
  {
    name: 'an alg jose knows but we do not allow (ML-DSA-44)',
    token: () => `${encode({ alg: 'ML-DSA-44', kid: 'k1' })}.${encode(claims())}.AAAA`,
    keys: () => set(jwk(p256, { kid: 'k1' })),
    expected: 'alg_not_allowed',
  },
  {
    name: 'no alg',
    token: () => rawToken({ typ: 'JWT' }, claims(), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'an empty alg',
    token: () => rawToken({ alg: '' }, claims(), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'a numeric alg',
    token: () => rawToken({ alg: 256 }, claims(), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'token_malformed',
  },
  // The key's type or curve does not fit the alg
  {
    name: 'RS256 token, inline EC key',
    token: () => joseToken('RS256'),
    keys: () => p256.publicKey,
    expected: 'alg_not_allowed',
    joseCodeVariesByNode: true,
  },
  {
    name: 'ES256 token, inline Ed25519 key',
    token: () => joseToken('ES256'),
    keys: () => ed25519.publicKey,
    expected: 'alg_not_allowed',
    joseCodeVariesByNode: true,
  },
  {
    name: 'EdDSA token, inline RSA key',
    token: () => joseToken('EdDSA'),
    keys: () => rsa.publicKey,
    expected: 'alg_not_allowed',
    joseCodeVariesByNode: true,
  },
  {
    name: 'RS256 token, key set holding only an EC key under its kid',
    token: () => joseToken('RS256'),
    keys: () => set(jwk(p256, { kid: 'k1' })),
    expected: 'kid_unknown',
  },
  {
    name: 'ES256 signed with a P-384 key, inline P-384 key',
    token: () => rawToken({ alg: 'ES256' }, claims(), 'ES256', p384.privateKey),
    keys: () => p384.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'ES256 signed with a P-384 key, key set holding it under its kid',
    token: () => rawToken({ alg: 'ES256', kid: 'k1' }, claims(), 'ES256', p384.privateKey),
    keys: () => set(jwk(p384, { kid: 'k1' })),
    expected: 'kid_unknown',
  },
  {
    name: 'ES256, inline secp256k1 key',
    token: () => rawToken({ alg: 'ES256' }, claims(), 'ES256', secp256k1.privateKey),
    keys: () => secp256k1.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'EdDSA signed with Ed448, inline Ed448 key',
    token: () => rawToken({ alg: 'EdDSA' }, claims(), 'EdDSA', ed448.privateKey),
    keys: () => ed448.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'EdDSA, inline X25519 key',
    token: () => joseToken('EdDSA'),
    keys: () => x25519.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'EdDSA signed with Ed448, key set holding it',
    token: () => rawToken({ alg: 'EdDSA', kid: 'k1' }, claims(), 'EdDSA', ed448.privateKey),
    keys: () => set(jwk(ed448, { kid: 'k1' })),
    expected: 'kid_unknown',
  },
  {
    name: 'PS256, inline RSA-PSS (SPKI id-RSASSA-PSS) key',
    token: () => rawToken({ alg: 'PS256' }, claims(), 'PS256', rsaPss.privateKey),
    keys: () => rsaPss.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'RS256 with a 1024-bit key, inline',
    token: () => rawToken({ alg: 'RS256' }, claims(), 'RS256', rsaShort.privateKey),
    keys: () => rsaShort.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'PS256 with a 1024-bit key, key set',
    token: () => rawToken({ alg: 'PS256', kid: 'k1' }, claims(), 'PS256', rsaShort.privateKey),
    keys: () => set(jwk(rsaShort, { kid: 'k1' })),
    expected: 'token_malformed',
  },
  {
    name: 'PS256 signed with a salt shorter than the hash',
    token: () => {
      const input = `${encode({ alg: 'PS256' })}.${encode(claims())}`;
      const sig = sign('sha256', Buffer.from(input), { key: rsa.privateKey, padding: 6, saltLength: 20 });
      return `${input}.${base64url.encode(sig)}`;
    },
    keys: () => rsa.publicKey,
    expected: 'signature_invalid',
  },
  {
    name: 'RS256 token whose signature is PKCS #1 v1.5 under PS256',
    token: () =>
      tamper(rawToken({ alg: 'PS256' }, claims(), 'RS256', rsa.privateKey), 0, () =>
        encode({ alg: 'PS256' }),
      ),
    keys: () => rsa.publicKey,
    expected: 'signature_invalid',
  },
  // Tampering
  {
    name: 'tampered header (kid unchanged, typ added)',
    token: async () =>
      tamper(await joseToken('ES256'), 0, () => encode({ alg: 'ES256', kid: 'k1', typ: 'at+jwt' })),
    keys: () => set(jwk(p256, { kid: 'k1' })),
    expected: 'signature_invalid',
  },
  {
    name: 'tampered payload',
    token: async () => tamper(await joseToken('RS256'), 1, () => encode(claims({ sub: 'other-job' }))),
    keys: () => rsa.publicKey,
    expected: 'signature_invalid',
  },
  {
    name: 'tampered signature, ES256',
    token: async () => tamper(await joseToken('ES256'), 2, flipLast),
    keys: () => p256.publicKey,
    expected: 'signature_invalid',
  },
  {
    name: 'tampered signature, EdDSA',
    token: async () => tamper(await joseToken('EdDSA'), 2, flipLast),
    keys: () => set(jwk(ed25519, { kid: 'k1' })),
    expected: 'signature_invalid',
  },
  {
    name: 'truncated signature, ES512',
    token: async () => tamper(await joseToken('ES512'), 2, (s) => s.slice(0, 40)),
    keys: () => p521.publicKey,
    expected: 'signature_invalid',
  },
  {
    name: 'empty signature, RS256',
    token: async () => tamper(await joseToken('RS256'), 2, () => ''),
    keys: () => rsa.publicKey,
    expected: 'signature_invalid',
  },
  {
    name: 'signature not base64url',
    token: async () => tamper(await joseToken('ES256'), 2, (s) => `${s.slice(1)}$`),
    keys: () => p256.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'signature with standard-base64 characters',
    token: async () => tamper(await joseToken('ES256'), 2, (s) => `+${s.slice(1)}`),
    keys: () => set(jwk(p256, { kid: 'k1' })),
    expected: 'token_malformed',
  },
  {
    name: 'a signature by another key of the same type',
    token: () => joseToken('ES256', p256Other),
    keys: () => set(jwk(p256, { kid: 'k1' })),
    expected: 'signature_invalid',
  },
  {
    name: 'ES256 signature in DER instead of IEEE P1363',
    token: () => {
      const input = `${encode({ alg: 'ES256' })}.${encode(claims())}`;
      return `${input}.${base64url.encode(sign('sha256', Buffer.from(input), p256.privateKey))}`;
    },
    keys: () => p256.publicKey,
    expected: 'signature_invalid',
  },
  // Which key the kid selects
  {
    name: 'wrong kid',
    token: () => joseToken('ES256', p256, { kid: 'k2' }),
    keys: () => set(jwk(p256, { kid: 'k1' })),
    expected: 'kid_unknown',
  },
  {
    name: 'numeric kid',
    token: () => rawToken({ alg: 'ES256', kid: 1 }, claims(), 'ES256', p256.privateKey),
    keys: () => set(jwk(p256, { kid: 1 })),
    expected: 'kid_unknown',
  },
  {
    name: 'several keys under one kid',
    token: () => joseToken('ES256'),
    keys: () => set(jwk(p256Other, { kid: 'k1' }), jwk(p256, { kid: 'k1' })),
    expected: 'signature_invalid',
  },
  {
    name: 'no kid and two keys that fit',
    token: () => joseToken('RS256', rsa, { kid: null }),
    keys: () => set(jwk(rsa, { kid: 'a' }), jwk(rsaOther, { kid: 'b' })),
    expected: 'signature_invalid',
  },
  {
    name: 'no kid, two keys but only one of the right type',
    token: () => joseToken('RS256', rsa, { kid: null }),
    keys: () => set(jwk(p256, { kid: 'a' }), jwk(rsa, { kid: 'b' })),
    expected: 'accepted',
  },
  {
    name: 'one kid on two keys, only one of which allows the alg',
    token: () => joseToken('ES256'),
    keys: () => set(jwk(p256Other, { kid: 'k1', alg: 'ES384' }), jwk(p256, { kid: 'k1', alg: 'ES256' })),
    expected: 'accepted',
  },
  {
    name: 'one kid on two keys, only one on the right curve',
    token: () => joseToken('ES384'),
    keys: () => set(jwk(p256, { kid: 'k1' }), jwk(p384, { kid: 'k1' })),
    expected: 'accepted',
  },
  // The member's own restrictions
  {
    name: 'member alg RS384, token RS256',
    token: () => joseToken('RS256'),
    keys: () => set(jwk(rsa, { kid: 'k1', alg: 'RS384' })),
    expected: 'kid_unknown',
  },
  {
    name: 'member alg RS256, token PS256',
    token: () => joseToken('PS256'),
    keys: () => set(jwk(rsa, { kid: 'k1', alg: 'RS256' })),
    expected: 'kid_unknown',
  },
  {
    name: 'member use enc',
    token: () => joseToken('ES256'),
    keys: () => set(jwk(p256, { kid: 'k1', use: 'enc' })),
    expected: 'kid_unknown',
  },
  {
    name: 'member key_ops [sign]',
    token: () => joseToken('ES256'),
    keys: () => set(jwk(p256, { kid: 'k1', key_ops: ['sign'] })),
    expected: 'kid_unknown',
  },
  {
    name: 'member key_ops [verify, verify]',
    token: () => joseToken('ES256'),
    keys: () => set(jwk(p256, { kid: 'k1', key_ops: ['verify', 'verify'] })),
    expected: 'kid_unknown',
  },
  {
    name: 'member key_ops [verify]',
    token: () => joseToken('EdDSA'),
    keys: () => set(jwk(ed25519, { kid: 'k1', key_ops: ['verify'] })),
    expected: 'accepted',
  },
  {
    name: 'member key_ops [verify, sign]',
    token: () => joseToken('ES256'),
    keys: () => set(jwk(p256, { kid: 'k1', key_ops: ['verify', 'sign'] })),
    expected: 'token_malformed',
  },
  {
    name: 'member ext not a boolean',
    token: () => joseToken('ES256'),
    keys: () => set(jwk(p256, { kid: 'k1', ext: 'yes' })),
    expected: 'kid_unknown',
  },
  {
    name: 'member ext false',
    token: () => joseToken('ES256'),
    keys: () => set(jwk(p256, { kid: 'k1', ext: false })),
    expected: 'accepted',
  },
  {
    name: 'member is a private key',
    token: () => joseToken('ES256'),
    keys: () => set({ ...(p256.privateKey.export({ format: 'jwk' }) as JsonWebKey), kid: 'k1' }),
    expected: 'token_malformed',
  },
  {
    name: 'member whose point is not on its curve',
    token: () => joseToken('ES256'),
    keys: () => set(jwk(p256, { kid: 'k1', y: jwk(p256)['x'] })),
    expected: 'token_malformed',
  },
  {
    name: 'Ed25519 member with a short x',
    token: () => joseToken('EdDSA'),
    keys: () => set(jwk(ed25519, { kid: 'k1', x: 'AAAA' })),
    expected: 'token_malformed',
  },
  // crit and b64
  {
    name: 'crit naming an unknown extension',
    token: () => rawToken({ alg: 'ES256', crit: ['exp'], exp: 1 }, claims(), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'alg_not_allowed',
  },
  {
    name: 'crit naming an unknown extension, unknown kid',
    token: () =>
      rawToken({ alg: 'ES256', kid: 'zz', crit: ['x-y'], 'x-y': 1 }, claims(), 'ES256', p256.privateKey),
    keys: () => set(jwk(p256, { kid: 'k1' })),
    expected: 'alg_not_allowed',
  },
  {
    name: 'crit empty',
    token: () => rawToken({ alg: 'ES256', crit: [] }, claims(), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'crit not an array',
    token: () => rawToken({ alg: 'ES256', crit: 'b64', b64: true }, claims(), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'crit null',
    token: () => rawToken({ alg: 'ES256', crit: null }, claims(), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'crit [b64] without b64',
    token: () => rawToken({ alg: 'ES256', crit: ['b64'] }, claims(), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'crit [b64] with a b64 that is not a boolean',
    token: () => rawToken({ alg: 'ES256', crit: ['b64'], b64: 'false' }, claims(), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'b64 false, correctly signed',
    token: () => rawToken({ alg: 'ES256', crit: ['b64'], b64: false }, claims(), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'b64 false, signed by another key',
    token: () =>
      rawToken({ alg: 'ES256', crit: ['b64'], b64: false }, claims(), 'ES256', p256Other.privateKey),
    keys: () => p256.publicKey,
    expected: 'signature_invalid',
  },
  {
    name: 'b64 false with a non-ASCII payload, unknown kid',
    token: () => `${encode({ alg: 'ES256', kid: 'zz', crit: ['b64'], b64: false })}.{"é":1}.AAAA`,
    keys: () => set(jwk(p256, { kid: 'k1' })),
    expected: 'token_malformed',
  },
  {
    name: 'a non-ASCII payload, unknown kid (the key is looked up first)',
    token: () => `${encode({ alg: 'ES256', kid: 'zz' })}.é.AAAA`,
    keys: () => set(jwk(p256, { kid: 'k1' })),
    expected: 'kid_unknown',
  },
  {
    name: 'b64 false outside crit is ignored',
    token: () => rawToken({ alg: 'ES256', b64: false }, claims(), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'accepted',
  },
  {
    name: 'crit [b64, b64] with b64 true',
    token: () =>
      rawToken({ alg: 'ES256', crit: ['b64', 'b64'], b64: true }, claims(), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'accepted',
  },
  // Malformed parts
  { name: 'two segments', token: () => 'abc.def', keys: () => p256.publicKey, expected: 'token_malformed' },
  {
    name: 'four segments',
    token: async () => `${await joseToken('ES256')}.x`,
    keys: () => p256.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'header not JSON',
    token: () => rawToken(base64url.encode('{alg:ES256}'), claims(), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'header a JSON array',
    token: () => rawToken(encode([{ alg: 'ES256' }]), claims(), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'header with invalid UTF-8',
    token: () =>
      rawToken(
        base64url.encode(
          Buffer.concat([Buffer.from('{"alg":"ES256","x":"'), Buffer.from([0xff]), Buffer.from('"}')]),
        ),
        claims(),
        'ES256',
        p256.privateKey,
      ),
    keys: () => p256.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'header with a byte-order mark',
    token: () =>
      rawToken(
        base64url.encode(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"alg":"ES256"}')])),
        claims(),
        'ES256',
        p256.privateKey,
      ),
    keys: () => p256.publicKey,
    expected: 'accepted',
  },
  {
    name: 'padded header segment, signed as written',
    token: () => {
      const header = Buffer.from('{"alg":"ES256" }')
        .toString('base64')
        .replace(/\+/g, '-')
        .replace(/\//g, '_');
      expect(header.endsWith('==')).toBe(true);
      return rawToken(header, claims(), 'ES256', p256.privateKey);
    },
    keys: () => p256.publicKey,
    expected: 'accepted',
  },
  {
    name: 'header with a wrongly padded segment',
    token: () => rawToken(`${encode({ alg: 'ES256', k: 'abcd' })}==`, claims(), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'payload a JSON array',
    token: () => rawToken({ alg: 'ES256' }, encode([claims()]), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'payload not base64url, correctly signed',
    token: () => rawToken({ alg: 'ES256' }, 'not*base64', 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'payload not base64url, signed by another key',
    token: () => rawToken({ alg: 'ES256' }, 'not*base64', 'ES256', p256Other.privateKey),
    keys: () => p256.publicKey,
    expected: 'signature_invalid',
  },
  {
    name: 'payload not JSON',
    token: () => rawToken({ alg: 'EdDSA' }, base64url.encode('exp=1'), 'EdDSA', ed25519.privateKey),
    keys: () => ed25519.publicKey,
    expected: 'token_malformed',
  },
  // Claims
  {
    name: 'no iss and no aud',
    token: () => joseToken('ES256', p256, { claims: claims({ iss: undefined, aud: undefined }) }),
    keys: () => p256.publicKey,
    expected: 'issuer_mismatch',
  },
  {
    name: 'no aud',
    token: () => joseToken('ES256', p256, { claims: claims({ aud: undefined }) }),
    keys: () => p256.publicKey,
    expected: 'audience_mismatch',
  },
  {
    name: 'no exp, wrong aud (presence first)',
    token: () => joseToken('ES256', p256, { claims: claims({ exp: undefined, aud: 'agent:other' }) }),
    keys: () => p256.publicKey,
    expected: 'exp_missing',
  },
  {
    name: 'wrong iss',
    token: () => joseToken('ES256', p256, { claims: claims({ iss: 'https://evil.test' }) }),
    keys: () => p256.publicKey,
    expected: 'issuer_mismatch',
  },
  {
    name: 'iss with a trailing slash',
    token: () => joseToken('ES256', p256, { claims: claims({ iss: `${ISS}/` }) }),
    keys: () => p256.publicKey,
    expected: 'accepted',
  },
  {
    name: 'aud an array holding ours',
    token: () => joseToken('ES256', p256, { claims: claims({ aud: ['x', AUD] }) }),
    keys: () => p256.publicKey,
    expected: 'accepted',
  },
  {
    name: 'aud an array without ours',
    token: () => joseToken('ES256', p256, { claims: claims({ aud: ['x'] }) }),
    keys: () => p256.publicKey,
    expected: 'audience_mismatch',
  },
  {
    name: 'aud a number',
    token: () => rawToken({ alg: 'ES256' }, claims({ aud: 7 }), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'audience_mismatch',
  },
  {
    name: 'exp a string',
    token: () => rawToken({ alg: 'ES256' }, claims({ exp: String(IAT + 90) }), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'exp_missing',
  },
  {
    name: 'exp null',
    token: () => rawToken({ alg: 'ES256' }, claims({ exp: null }), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'exp_missing',
  },
  {
    name: 'iat a string',
    token: () => rawToken({ alg: 'ES256' }, claims({ iat: 'now' }), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'token_malformed',
  },
  {
    name: 'nbf a string',
    token: () => rawToken({ alg: 'ES256' }, claims({ nbf: 'soon' }), 'ES256', p256.privateKey),
    keys: () => p256.publicKey,
    expected: 'not_yet_valid',
  },
  {
    name: 'expired 31 s ago',
    token: () => joseToken('ES256', p256, { claims: claims({ iat: IAT - 120, exp: IAT - 31 }) }),
    keys: () => p256.publicKey,
    expected: 'expired',
  },
  {
    name: 'expired 30 s ago (the leeway is exclusive)',
    token: () => joseToken('ES256', p256, { claims: claims({ iat: IAT - 120, exp: IAT - 30 }) }),
    keys: () => p256.publicKey,
    expected: 'expired',
  },
  {
    name: 'expired 29 s ago',
    token: () => joseToken('ES256', p256, { claims: claims({ iat: IAT - 110, exp: IAT - 29 }) }),
    keys: () => p256.publicKey,
    expected: 'accepted',
  },
  {
    name: 'nbf 31 s ahead',
    token: () => joseToken('ES256', p256, { claims: claims({ nbf: IAT + 31 }) }),
    keys: () => p256.publicKey,
    expected: 'not_yet_valid',
  },
  {
    name: 'nbf 30 s ahead',
    token: () => joseToken('ES256', p256, { claims: claims({ nbf: IAT + 30 }) }),
    keys: () => p256.publicKey,
    expected: 'accepted',
  },
  {
    name: 'nbf ahead and expired: nbf first',
    token: () => joseToken('ES256', p256, { claims: claims({ nbf: IAT + 60, exp: IAT - 60 }) }),
    keys: () => p256.publicKey,
    expected: 'not_yet_valid',
  },
  {
    name: 'purpose missing',
    token: () => joseToken('ES256', p256, { claims: claims({ purpose: undefined }) }),
    keys: () => p256.publicKey,
    expected: 'purpose_mismatch',
  },
  {
    name: 'purpose other than cron_fire',
    token: () => joseToken('ES256', p256, { claims: claims({ purpose: 'admin' }) }),
    keys: () => p256.publicKey,
    expected: 'purpose_mismatch',
  },
  {
    name: 'valid for a year',
    token: () => joseToken('ES256', p256, { claims: claims({ exp: IAT + 365 * 86_400 }) }),
    keys: () => p256.publicKey,
    expected: 'lifetime_too_long',
  },
  {
    name: 'no iat, exp 301 s ahead',
    token: () => joseToken('ES256', p256, { claims: claims({ iat: undefined, exp: IAT + 301 }) }),
    keys: () => p256.publicKey,
    expected: 'lifetime_too_long',
  },
  {
    name: 'exp beyond any number (1e400)',
    token: () =>
      rawToken(
        { alg: 'ES256' },
        base64url.encode(`{"aud":"${AUD}","iss":"${ISS}","exp":1e400,"purpose":"cron_fire"}`),
        'ES256',
        p256.privateKey,
      ),
    keys: () => p256.publicKey,
    expected: 'lifetime_too_long',
  },
];

describe('refused tokens, and edge cases both accept', () => {
  it.each(refused.map((c) => [c.name, c] as const))('%s', (_name, c) => compare(c));
});

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const EDIT_CHARS = `${ALPHABET}.=+/ \té`;

describe('mutations', () => {
  it('agrees with jose on 400 seeded random edits of real tokens, for both key sources', async () => {
    const random = seededRandom(13);
    const pick = (chars: string) => chars[Math.floor(random() * chars.length)]!;
    const sources: Array<[Alg, () => Source]> = [
      ['ES256', () => p256.publicKey],
      ['RS256', () => set(jwk(rsa, { kid: 'k1' }), jwk(p256, { kid: 'k1' }))],
      ['EdDSA', () => set(jwk(ed25519, { kid: 'k1' }))],
      ['PS384', () => rsa.publicKey],
    ];
    const outcomes = new Map<string, number>();
    for (const [alg, keys] of sources) {
      const token = await joseToken(alg);
      for (let i = 0; i < 100; i++) {
        const at = Math.floor(random() * token.length);
        const kind = random();
        const mutated =
          kind < 0.5
            ? token.slice(0, at) + pick(EDIT_CHARS) + token.slice(at + 1)
            : kind < 0.75
              ? token.slice(0, at) + token.slice(at + 1)
              : token.slice(0, at) + pick(EDIT_CHARS) + token.slice(at);
        const source = keys();
        const ours = checkFireToken(
          mutated,
          source instanceof KeyObjectClass ? new InlineKey(source) : new LocalKeySet(source),
          OPTS,
        );
        const reference = await referenceCheck(mutated, source as ReferenceKeys, OPTS);
        const outcome = (r: typeof ours) => (r.ok ? 'accepted' : r.code);
        expect(outcome(ours), `token ${mutated}`).toBe(outcome(reference));
        outcomes.set(outcome(ours), (outcomes.get(outcome(ours)) ?? 0) + 1);
      }
    }
    // The edits reach past the first check: several different verdicts come out of them.
    expect(outcomes.get('token_malformed')).toBeGreaterThan(0);
    expect(outcomes.get('signature_invalid')).toBeGreaterThan(0);
    expect(outcomes.size).toBeGreaterThanOrEqual(3);
  });
});

describe('base64url', () => {
  it('decodes exactly what jose decodes, and refuses exactly what it refuses', () => {
    const random = seededRandom(2026);
    const chars = `${ALPHABET}==== \t\n+/.é`;
    let accepted = 0;
    for (let i = 0; i < 5000; i++) {
      const length = Math.floor(random() * 12);
      let text = '';
      for (let j = 0; j < length; j++) text += chars[Math.floor(random() * chars.length)];
      let expected: Uint8Array | undefined;
      try {
        expected = base64url.decode(text);
      } catch {
        expected = undefined;
      }
      const ours = decodeBase64url(text);
      expect(ours === undefined, JSON.stringify(text)).toBe(expected === undefined);
      if (ours && expected) {
        expect(new Uint8Array(ours), JSON.stringify(text)).toEqual(expected);
        accepted++;
      }
    }
    expect(accepted).toBeGreaterThan(500);
  });

  it('covers padding and lengths that cannot come from whole bytes', () => {
    for (const [text, ok] of [
      ['', true],
      ['QQ', true],
      ['QQ==', true],
      ['QUI=', true],
      ['QQ=', false],
      ['QUI==', false],
      ['Q', false],
      ['QUJDR', false],
      ['Q===', false],
      ['Q=Q=', false],
      ['QUJD\nRA', true],
    ] as const) {
      expect(decodeBase64url(text) !== undefined, text).toBe(ok);
      let joseOk = true;
      try {
        base64url.decode(text);
      } catch {
        joseOk = false;
      }
      expect(joseOk, text).toBe(ok);
    }
  });
});

describe('key sets', () => {
  it('imports each member once per installed set, not per token', () => {
    const keys = new LocalKeySet(set(jwk(p256, { kid: 'a' }), jwk(ed25519, { kid: 'b' })));
    const first = keys.keyFor('ES256', 'a');
    expect(first).toBeInstanceOf(KeyObjectClass);
    expect(keys.keyFor('ES256', 'a')).toBe(first);
    expect(keys.keyFor('EdDSA', 'b')).toBe(keys.keyFor('Ed25519', 'b'));
  });

  it('refuses a key set whose members are not all objects, as a whole', () => {
    expect(() => new LocalKeySet({ keys: [jwk(p256), 'k'] })).toThrow(/malformed/);
    expect(() => new LocalKeySet({ keys: {} })).toThrow(/malformed/);
    expect(() => new LocalKeySet([])).toThrow(/malformed/);
  });

  it('a public key given inline as PEM verifies as the same key given as a KeyObject', async () => {
    const pem = ed25519.publicKey.export({ type: 'spki', format: 'pem' });
    const token = await joseToken('EdDSA');
    expect(checkFireToken(token, new InlineKey(createPublicKey(pem)), OPTS).ok).toBe(true);
  });
});
