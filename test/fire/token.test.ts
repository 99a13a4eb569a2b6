/*
 * The fire-token verifier on its own (docs/contract.md, The token: the JWKS cache and the key sources): the JWKS persisted to
 * the data directory so a cold process verifies its first fire with zero fetches, the headers sent to
 * the JWKS URL, and the inline key source (PEM / JWK accepted, symmetric keys refused).
 *   "JWKS cache"       cold start from the cache file, corrupt cache, cold unknown kid
 *   "JWKS requests"    Accept and User-Agent
 *   "inline key"       parseInlinePublicKey
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseInlinePublicKey } from '../../src/config/inline-key.js';
import { createFireTokenVerifier } from '../../src/fire/token.js';
import { AUDIENCE, ISSUER, START } from '../helpers/build-fire-app.js';
import {
  type FireKey,
  generateFireKey,
  type JwksServer,
  jwksOf,
  mintFireToken,
  startJwksServer,
} from '../helpers/fire-keys.js';
import { ManualClock } from '../helpers/manual-clock.js';

let es: FireKey;
let rs: FireKey;
let ed: FireKey;
let jwks: JwksServer;
const dirs: string[] = [];

beforeAll(async () => {
  es = await generateFireKey('ES256', 'es-cache');
  rs = await generateFireKey('RS256', 'rs-cache');
  ed = await generateFireKey('EdDSA', 'ed-cache');
  jwks = await startJwksServer(jwksOf(es, rs));
});
afterAll(() => jwks.close());
afterEach(async () => {
  jwks.publish(jwksOf(es, rs));
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function cacheFile(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'chronos-jwks-'));
  dirs.push(dir);
  return join(dir, 'data', 'jwks-cache.json');
}

function verifierFor(file: string, clock: ManualClock) {
  return createFireTokenVerifier({
    audience: AUDIENCE,
    issuer: ISSUER,
    jwksUrl: jwks.url,
    cacheFile: file,
    clock,
  });
}

const bearerFor = async (key: FireKey, clock: ManualClock) =>
  `Bearer ${await mintFireToken(key, { now: clock.now(), aud: AUDIENCE, iss: ISSUER })}`;

describe('JWKS cache', () => {
  it('persists the fetched set, and a cold verifier on the same file verifies with zero fetches', async () => {
    const file = await cacheFile();
    const clock = new ManualClock(START);
    const warm = verifierFor(file, clock);
    const before = jwks.requests.length;
    expect(warm.jwksAgeMs()).toBeNull();
    expect(await warm.verify(await bearerFor(es, clock))).toMatchObject({ ok: true });
    expect(jwks.requests.length - before).toBe(1);

    const cached = JSON.parse(await readFile(file, 'utf8')) as {
      fetched_at: number;
      jwks: { keys: { kid: string }[] };
    };
    expect(cached.fetched_at).toBe(START);
    expect(cached.jwks.keys.map((k) => k.kid)).toEqual(['es-cache', 'rs-cache']);

    // A new process, ten minutes later.
    clock.advance(600_000);
    const cold = verifierFor(file, clock);
    const result = await cold.verify(await bearerFor(rs, clock));
    expect(result).toMatchObject({ ok: true, claims: { aud: AUDIENCE, iss: ISSUER, purpose: 'cron_fire' } });
    expect(jwks.requests.length - before).toBe(1);
    expect(cold.jwksAgeMs()).toBe(600_000);
  });

  it('during a JWKS outage, refuses fires without fetching for each one until the cooldown passes', async () => {
    let fetches = 0;
    const down = createServer((_req, res) => {
      fetches += 1;
      res.writeHead(503).end();
    });
    await new Promise<void>((resolve) => down.listen(0, '127.0.0.1', resolve));
    // A real pino logger: its numeric levels are what an operator's filter sees (40 = warn).
    const logs: Array<{ level: number; msg: string; err?: string }> = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
    try {
      const clock = new ManualClock(START);
      const verifier = createFireTokenVerifier({
        audience: AUDIENCE,
        issuer: ISSUER,
        jwksUrl: `http://127.0.0.1:${(down.address() as AddressInfo).port}/jwks.json`,
        cacheFile: await cacheFile(),
        clock,
        refreshCooldownMs: 30_000,
        logger,
      });
      for (let i = 0; i < 5; i++) {
        expect(await verifier.verify(await bearerFor(es, clock))).toMatchObject({
          ok: false,
          code: 'jwks_unavailable',
        });
      }
      expect(fetches).toBe(1);
      // The failed fetch is a warning, not routine information (it was logged at info once).
      expect(logs.filter((l) => l.msg === 'fire key set could not be fetched')).toEqual([
        expect.objectContaining({ level: 40, err: 'HTTP 503' }),
      ]);
      clock.advance(30_000);
      await verifier.verify(await bearerFor(es, clock));
      expect(fetches).toBe(2);
    } finally {
      await new Promise((resolve) => down.close(resolve));
    }
  });

  it('accepts a replay of a verified token from memory, and never past its exp', async () => {
    const clock = new ManualClock(START);
    const verifier = verifierFor(await cacheFile(), clock);
    const replayed = await bearerFor(es, clock);
    expect(await verifier.verify(replayed)).toMatchObject({ ok: true });

    // NAS drops the es key, and an unknown kid makes the verifier refresh its set: a fresh es token now
    // fails, but the very token already verified is known.
    jwks.publish(jwksOf(rs));
    clock.advance(60_000); // past the refresh cooldown
    const stranger = await generateFireKey('ES256', 'stranger');
    expect(await verifier.verify(await bearerFor(stranger, clock))).toMatchObject({ ok: false });
    const fresh = await bearerFor(es, clock);
    expect(await verifier.verify(fresh)).toMatchObject({ ok: false, code: 'kid_unknown' });
    expect(await verifier.verify(replayed)).toMatchObject({ ok: true, claims: { purpose: 'cron_fire' } });

    // exp (90 s) plus the 30 s leeway have passed: the memory does not outlive the token.
    clock.advance(61_000);
    expect(await verifier.verify(replayed)).toMatchObject({ ok: false });
  });

  it('warm() loads the cache ahead of the first fire without a fetch', async () => {
    const file = await cacheFile();
    const clock = new ManualClock(START);
    await verifierFor(file, clock).warm();
    const before = jwks.requests.length;
    const cold = verifierFor(file, clock);
    await cold.warm();
    expect(cold.jwksAgeMs()).toBe(0);
    expect(jwks.requests.length).toBe(before);
  });

  it('a cold process with a cached set fetches once for a kid it does not know (rotation while asleep)', async () => {
    const file = await cacheFile();
    const clock = new ManualClock(START);
    await verifierFor(file, clock).warm();
    jwks.publish(jwksOf(es, rs, ed));
    clock.advance(3_600_000);
    const before = jwks.requests.length;
    const cold = verifierFor(file, clock);
    expect(await cold.verify(await bearerFor(ed, clock))).toMatchObject({ ok: true });
    expect(jwks.requests.length - before).toBe(1);
    // The refreshed set replaced the cache for the next cold start.
    const cached = JSON.parse(await readFile(file, 'utf8')) as { jwks: { keys: { kid: string }[] } };
    expect(cached.jwks.keys.map((k) => k.kid)).toContain('ed-cache');
  });

  it('a key replaced under the same kid: one refresh on the failed signature, then the fire verifies', async () => {
    const file = await cacheFile();
    const clock = new ManualClock(START);
    await verifierFor(file, clock).warm();
    // NAS rotated its key material while keeping the kid: the cached set has a key for this kid, but the
    // wrong one. Before the fix, every fire was refused `signature_invalid`, even after a restart.
    const rotated = await generateFireKey('ES256', es.kid);
    jwks.publish(jwksOf(rotated, rs));
    const before = jwks.requests.length;
    const cold = verifierFor(file, clock);
    expect(await cold.verify(await bearerFor(rotated, clock))).toMatchObject({ ok: true });
    expect(jwks.requests.length - before).toBe(1);
    // The refreshed set is what the next cold start reads.
    const next = verifierFor(file, clock);
    expect(await next.verify(await bearerFor(rotated, clock))).toMatchObject({ ok: true });
    expect(jwks.requests.length - before).toBe(1);
  });

  it('forged signatures under a known kid refresh at most once per cooldown, single-flight', async () => {
    const file = await cacheFile();
    const clock = new ManualClock(START);
    const verifier = createFireTokenVerifier({
      audience: AUDIENCE,
      issuer: ISSUER,
      jwksUrl: jwks.url,
      cacheFile: file,
      clock,
      refreshCooldownMs: 30_000,
    });
    await verifier.warm();
    const forger = await generateFireKey('ES256', es.kid);
    const before = jwks.requests.length;
    const burst = await Promise.all(
      Array.from({ length: 20 }, async () => verifier.verify(await bearerFor(forger, clock))),
    );
    for (const r of burst) expect(r).toMatchObject({ ok: false, code: 'signature_invalid' });
    expect(jwks.requests.length - before).toBe(1);
    clock.advance(29_000);
    expect(await verifier.verify(await bearerFor(forger, clock))).toMatchObject({ ok: false });
    expect(jwks.requests.length - before).toBe(1);
    clock.advance(1_000);
    expect(await verifier.verify(await bearerFor(forger, clock))).toMatchObject({ ok: false });
    expect(jwks.requests.length - before).toBe(2);
    // The genuine key still verifies throughout.
    expect(await verifier.verify(await bearerFor(es, clock))).toMatchObject({ ok: true });
  });

  it('an old cache still answers a cold fire without a fetch; refreshIfStale() then replaces it', async () => {
    const file = await cacheFile();
    const clock = new ManualClock(START);
    const maxAgeMs = 3_600_000;
    const make = () =>
      createFireTokenVerifier({
        audience: AUDIENCE,
        issuer: ISSUER,
        jwksUrl: jwks.url,
        cacheFile: file,
        clock,
        maxAgeMs,
      });
    await make().warm();
    clock.advance(maxAgeMs - 1);
    const young = make();
    const before = jwks.requests.length;
    expect(await young.verify(await bearerFor(es, clock))).toMatchObject({ ok: true });
    await young.refreshIfStale();
    expect(jwks.requests.length - before).toBe(0);

    clock.advance(1);
    const old = make();
    expect(await old.verify(await bearerFor(es, clock))).toMatchObject({ ok: true });
    expect(jwks.requests.length - before).toBe(0);
    expect(old.jwksAgeMs()).toBe(maxAgeMs);
    await old.refreshIfStale();
    expect(jwks.requests.length - before).toBe(1);
    expect(old.jwksAgeMs()).toBe(0);
    const cached = JSON.parse(await readFile(file, 'utf8')) as { fetched_at: number };
    expect(cached.fetched_at).toBe(clock.now());
  });

  it('an unreadable cache file is ignored and replaced by a fetch', async () => {
    const file = await cacheFile();
    const clock = new ManualClock(START);
    await verifierFor(file, clock).warm();
    await writeFile(file, '{"fetched_at": 1, "jwks": ');
    const before = jwks.requests.length;
    const cold = verifierFor(file, clock);
    expect(await cold.verify(await bearerFor(es, clock))).toMatchObject({ ok: true });
    expect(jwks.requests.length - before).toBe(1);
    expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({ jwks: { keys: expect.any(Array) } });
  });
});

describe('token lifetime', () => {
  const file = () => cacheFile();
  it.each([
    ['a 90 s token (as NAS mints them)', 90, true],
    ['a token at the bound', 300, true],
    ['a token one second over the bound', 301, false],
    ['a token valid for a year', 365 * 86_400, false],
  ])('%s', async (_name, lifetime, ok) => {
    const clock = new ManualClock(START);
    const verifier = verifierFor(await file(), clock);
    const iat = Math.floor(clock.now() / 1000);
    const token = await mintFireToken(es, {
      now: clock.now(),
      aud: AUDIENCE,
      iss: ISSUER,
      exp: iat + lifetime,
    });
    const result = await verifier.verify(`Bearer ${token}`);
    if (ok) expect(result).toMatchObject({ ok: true });
    else expect(result).toMatchObject({ ok: false, code: 'lifetime_too_long' });
  });

  it('without iat, measures exp from now; the bound is configurable', async () => {
    const clock = new ManualClock(START);
    const verifier = createFireTokenVerifier({
      audience: AUDIENCE,
      issuer: ISSUER,
      jwksUrl: jwks.url,
      cacheFile: await file(),
      clock,
      maxLifetimeSeconds: 60,
    });
    const now = Math.floor(clock.now() / 1000);
    const sign = (exp: number) =>
      new SignJWT({ aud: AUDIENCE, iss: ISSUER, purpose: 'cron_fire', exp })
        .setProtectedHeader({ alg: es.alg, kid: es.kid })
        .sign(es.privateKey);
    expect(await verifier.verify(`Bearer ${await sign(now + 60)}`)).toMatchObject({ ok: true });
    expect(await verifier.verify(`Bearer ${await sign(now + 61)}`)).toMatchObject({
      ok: false,
      code: 'lifetime_too_long',
    });
  });
});

describe('JWKS requests', () => {
  it('send Accept: application/json and a User-Agent naming chronos', async () => {
    const clock = new ManualClock(START);
    const verifier = createFireTokenVerifier({
      audience: AUDIENCE,
      issuer: ISSUER,
      jwksUrl: jwks.url,
      clock,
    });
    const before = jwks.requests.length;
    await verifier.warm();
    const sent = jwks.requests.slice(before);
    expect(sent).toHaveLength(1);
    expect(sent[0]?.method).toBe('GET');
    expect(sent[0]?.url).toBe('/.well-known/jwks.json');
    expect(sent[0]?.headers.accept).toBe('application/json');
    expect(sent[0]?.headers['user-agent']).toMatch(/^chronos\//);
  });
});

describe('inline key', () => {
  it('accepts a PEM public key, also with escaped newlines as env files carry it', () => {
    expect(parseInlinePublicKey(es.publicPem).type).toBe('public');
    expect(parseInlinePublicKey(ed.publicPem.replace(/\n/g, '\\n')).asymmetricKeyType).toBe('ed25519');
  });

  it('accepts a JWK public key', () => {
    const key = parseInlinePublicKey(JSON.stringify(rs.publicJwk));
    expect(key.type).toBe('public');
    expect(key.asymmetricKeyType).toBe('rsa');
  });

  it('refuses a symmetric kty "oct" JWK', () => {
    const oct = JSON.stringify({ kty: 'oct', k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0', alg: 'HS256' });
    expect(() => parseInlinePublicKey(oct)).toThrow(expect.objectContaining({ code: 'invalid_config' }));
    expect(() => parseInlinePublicKey(oct)).toThrow(/symmetric/);
    expect(() =>
      createFireTokenVerifier({
        audience: AUDIENCE,
        issuer: ISSUER,
        publicKey: oct,
        clock: new ManualClock(),
      }),
    ).toThrow(/symmetric/);
  });

  it('refuses text that is neither PEM nor JWK', () => {
    expect(() => parseInlinePublicKey('hunter2')).toThrow(
      expect.objectContaining({ code: 'invalid_config' }),
    );
    expect(() => parseInlinePublicKey('{"kty":')).toThrow(
      expect.objectContaining({ code: 'invalid_config' }),
    );
  });

  it('a private key given by mistake yields only its public half', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    expect(parseInlinePublicKey(pem).type).toBe('public');
  });

  it('an inline-key verifier reports no JWKS age and needs no warm-up', async () => {
    const clock = new ManualClock(START);
    const verifier = createFireTokenVerifier({
      audience: AUDIENCE,
      issuer: ISSUER,
      publicKey: ed.publicPem,
      clock,
    });
    await verifier.warm();
    expect(verifier.jwksAgeMs()).toBeNull();
    expect(await verifier.verify(await bearerFor(ed, clock))).toMatchObject({ ok: true });
  });
});
