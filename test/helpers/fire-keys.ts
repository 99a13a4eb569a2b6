import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  base64url,
  type CryptoKey,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  type JSONWebKeySet,
  type JWK,
  type JWTPayload,
  SignJWT,
} from 'jose';

/**
 * Real signing keys and real fire tokens, for tests of the fire webhook and for end-to-end tests that
 * play NAS. Nothing here is a fake: keys come from jose's generateKeyPair and tokens are signed with them.
 */

export type FireKeyAlg = 'ES256' | 'RS256' | 'EdDSA';

export interface FireKey {
  alg: FireKeyAlg;
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  /** The public half as a JWK carrying kid, alg and use, ready for a JWKS. */
  publicJwk: JWK;
  /** The public half as SPKI PEM (what CHRONOS_FIRE_PUBLIC_KEY may hold). */
  publicPem: string;
}

let kidSeq = 0;

export async function generateFireKey(
  alg: FireKeyAlg = 'ES256',
  kid = `test-${alg.toLowerCase()}-${++kidSeq}`,
): Promise<FireKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { alg, kid, privateKey, publicKey, publicJwk, publicPem: await exportSPKI(publicKey) };
}

export function jwksOf(...keys: FireKey[]): JSONWebKeySet {
  return { keys: keys.map((k) => k.publicJwk) };
}

export interface MintOptions {
  /** Epoch ms the token is minted at; iat and the default exp derive from it. */
  now: number;
  aud: string;
  iss: string;
  /** Default `cron_fire`; `null` leaves the claim out. */
  purpose?: string | null;
  /** Seconds since epoch; default iat + 90 s; `null` leaves the claim out. */
  exp?: number | null;
  nbf?: number;
  jti?: string;
  /** Header kid; default the key's own kid; `null` leaves it out. */
  kid?: string | null;
  extraClaims?: Record<string, unknown>;
}

export async function mintFireToken(key: FireKey, opts: MintOptions): Promise<string> {
  const iat = Math.floor(opts.now / 1000);
  const claims: JWTPayload = { ...opts.extraClaims, aud: opts.aud, iss: opts.iss, iat };
  const purpose = opts.purpose === undefined ? 'cron_fire' : opts.purpose;
  if (purpose !== null) claims['purpose'] = purpose;
  const exp = opts.exp === undefined ? iat + 90 : opts.exp;
  if (exp !== null) claims.exp = exp;
  if (opts.nbf !== undefined) claims.nbf = opts.nbf;
  if (opts.jti !== undefined) claims.jti = opts.jti;
  const kid = opts.kid === undefined ? key.kid : opts.kid;
  const header = kid === null ? { alg: key.alg, typ: 'JWT' } : { alg: key.alg, typ: 'JWT', kid };
  return new SignJWT(claims).setProtectedHeader(header).sign(key.privateKey);
}

function encodeSegment(value: unknown): string {
  return base64url.encode(JSON.stringify(value));
}

/** An `alg: none` token: header and payload, empty signature. */
export function unsignedToken(payload: JWTPayload, kid?: string): string {
  return `${encodeSegment({ alg: 'none', typ: 'JWT', ...(kid ? { kid } : {}) })}.${encodeSegment(payload)}.`;
}

/** An HS256 token whose HMAC secret is `secret` (e.g. the trusted public key's PEM: the classic key-confusion attack). */
export async function hmacToken(
  payload: JWTPayload,
  secret: string | Uint8Array,
  kid?: string,
): Promise<string> {
  const key = typeof secret === 'string' ? new TextEncoder().encode(secret) : secret;
  return new SignJWT(payload)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT', ...(kid ? { kid } : {}) })
    .sign(key);
}

/** Standard claims for a valid fire at `now`, for hand-built tokens (alg none, HS256). */
export function fireClaims(now: number, aud: string, iss: string): JWTPayload {
  const iat = Math.floor(now / 1000);
  return { aud, iss, iat, exp: iat + 90, purpose: 'cron_fire' };
}

export interface JwksRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

/**
 * A real loopback HTTP server publishing a JWKS, counting its requests. `hold()` makes later requests
 * wait until `release()`, so a test can observe how many fetches a burst of verifications starts.
 */
export interface JwksServer {
  url: string;
  requests: JwksRequest[];
  /** Replace the published key set (a key rotation at NAS). */
  publish(set: JSONWebKeySet): void;
  hold(): void;
  release(): void;
  /** Resolves once at least `n` requests have arrived. */
  waitForRequests(n: number): Promise<void>;
  close(): Promise<void>;
}

export async function startJwksServer(initial: JSONWebKeySet): Promise<JwksServer> {
  let published = initial;
  const requests: JwksRequest[] = [];
  let gate: { promise: Promise<void>; open: () => void } | undefined;
  const waiters: Array<{ n: number; resolve: () => void }> = [];

  const server: Server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    for (const w of waiters.splice(0)) {
      if (requests.length >= w.n) w.resolve();
      else waiters.push(w);
    }
    const answer = () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(published));
    };
    if (gate) void gate.promise.then(answer);
    else answer();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    requests,
    publish(set) {
      published = set;
    },
    hold() {
      let open!: () => void;
      const promise = new Promise<void>((resolve) => {
        open = resolve;
      });
      gate = { promise, open };
    },
    release() {
      gate?.open();
      gate = undefined;
    },
    waitForRequests(n) {
      if (requests.length >= n) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ n, resolve }));
    },
    async close() {
      gate?.open();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
