/*
 * Row 2 of the reply table (docs/contract.md): every token failure answers 401 with the same body
 * `{"error":"invalid fire token"}`, logs its cause under a stable code, and changes nothing. Through
 * app.inject() against the real route, with a real verifier reading the JWKS from a loopback server
 * (RS256 key), plus the inline-key source (EdDSA PEM, ES256 JWK) for the key-confusion attacks.
 *   "row 2: refused tokens"         one test per cause (it.each)
 *   "row 2: clock leeway"           exp / nbf accepted within 30 s, refused beyond
 *   "row 2: unknown kid"            one refresh, cooldown, single flight, rotation
 *   "row 2: inline key source"      HS256 with the PEM/JWK as secret, alg none, no key source
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FIRE_PATH } from '../../src/fire/route.js';
import type { Job } from '../../src/jobs/model.js';
import {
  AUDIENCE,
  buildFireApp,
  type FireApp,
  type FireAppOptions,
  fireBody,
  ISSUER,
  START,
  seedJob,
} from '../helpers/build-fire-app.js';
import {
  type FireKey,
  fireClaims,
  generateFireKey,
  hmacToken,
  type JwksServer,
  jwksOf,
  mintFireToken,
  startJwksServer,
  unsignedToken,
} from '../helpers/fire-keys.js';
import { flushMicrotasks } from '../helpers/manual-clock.js';

const T1 = START + 60_000;
const INVALID = { error: 'invalid fire token' };

let trusted: FireKey;
let foreign: FireKey;
let jwks: JwksServer;
const apps: FireApp[] = [];

beforeAll(async () => {
  trusted = await generateFireKey('RS256', 'nas-2026-01');
  foreign = await generateFireKey('RS256', 'attacker');
  jwks = await startJwksServer(jwksOf(trusted));
});
afterAll(() => jwks.close());
afterEach(async () => {
  for (const f of apps.splice(0)) await f.close();
  jwks.publish(jwksOf(trusted));
  jwks.release();
});

/** An app whose verifier reads the loopback JWKS, with one job due now. */
async function dueApp(opts: FireAppOptions = {}): Promise<{ f: FireApp; job: Job }> {
  const f = await buildFireApp({ verifierOptions: { jwksUrl: jwks.url }, ...opts });
  apps.push(f);
  const job = await seedJob(f.store, START, { id: 'nightly' });
  f.clock.set(T1);
  return { f, job };
}

async function expectRefused(
  f: FireApp,
  job: Job,
  authorization: string | undefined,
  code: string,
): Promise<void> {
  const res = await f.fire(authorization, fireBody(job.id, T1));
  expect(res.statusCode).toBe(401);
  expect(res.body).toBe(JSON.stringify(INVALID));
  expect(f.refusalCodes()).toEqual([code]);
  // The cause is in the log, never in the reply.
  expect(res.headers['www-authenticate']).toBeUndefined();
  expect(await f.store.getJob(job.id)).toEqual(job);
  expect(await f.store.getLedgerEntry(job.id, T1)).toBeUndefined();
  await flushMicrotasks();
  expect([...f.accepted, ...f.stale, ...f.inactive]).toEqual([]);
}

type TokenCase = [name: string, code: string, token: (now: number) => Promise<string | undefined>];

const bearer = (token: string) => `Bearer ${token}`;
const mint = (now: number, extra: Partial<Parameters<typeof mintFireToken>[1]> = {}) =>
  mintFireToken(trusted, { now, aud: AUDIENCE, iss: ISSUER, ...extra });
const sec = (ms: number) => Math.floor(ms / 1000);

const cases: TokenCase[] = [
  ['a missing Authorization header', 'token_missing', async () => undefined],
  ['a Basic credential', 'token_malformed', async () => 'Basic bmFzOnNlY3JldA=='],
  ['a bare "Bearer"', 'token_malformed', async () => 'Bearer'],
  ['a Bearer value that is not a JWT', 'token_malformed', async () => 'Bearer not-a-jwt'],
  ['three segments of garbage', 'token_malformed', async () => 'Bearer a.b.c'],
  [
    'a bad signature (payload swapped under a real signature)',
    'signature_invalid',
    async (now) => {
      const [header, , signature] = (await mint(now)).split('.');
      const [, payload] = (await mint(now, { aud: 'agent:other', kid: trusted.kid })).split('.');
      return bearer(`${header}.${payload}.${signature}`);
    },
  ],
  [
    'an alg "none" token',
    'alg_not_allowed',
    async (now) => bearer(unsignedToken(fireClaims(now, AUDIENCE, ISSUER), trusted.kid)),
  ],
  [
    'an HS256 token whose secret is the trusted JWK',
    'alg_not_allowed',
    async (now) =>
      bearer(
        await hmacToken(fireClaims(now, AUDIENCE, ISSUER), JSON.stringify(trusted.publicJwk), trusted.kid),
      ),
  ],
  [
    'a foreign key reusing a trusted kid',
    'signature_invalid',
    async (now) =>
      bearer(await mintFireToken(foreign, { now, aud: AUDIENCE, iss: ISSUER, kid: trusted.kid })),
  ],
  ['a token without exp', 'exp_missing', async (now) => bearer(await mint(now, { exp: null }))],
  [
    'a token expired 31 s ago',
    'expired',
    async (now) => bearer(await mint(now - 120_000, { exp: sec(now) - 31 })),
  ],
  [
    'a token with nbf 31 s ahead',
    'not_yet_valid',
    async (now) => bearer(await mint(now, { nbf: sec(now) + 31 })),
  ],
  [
    'a wrong aud',
    'audience_mismatch',
    async (now) => bearer(await mint(now, { aud: 'agent:another-instance' })),
  ],
  ['a wrong iss', 'issuer_mismatch', async (now) => bearer(await mint(now, { iss: 'https://evil.test' }))],
  [
    'purpose other than cron_fire',
    'purpose_mismatch',
    async (now) => bearer(await mint(now, { purpose: 'admin' })),
  ],
  ['purpose missing', 'purpose_mismatch', async (now) => bearer(await mint(now, { purpose: null }))],
  [
    'a token valid for a year',
    'lifetime_too_long',
    async (now) => bearer(await mint(now, { exp: sec(now) + 365 * 86_400 })),
  ],
  [
    'a token minted for another job (sub differs from the body job_id)',
    'subject_mismatch',
    async (now) => bearer(await mint(now, { extraClaims: { sub: 'other-job' } })),
  ],
];

describe('row 2: refused tokens', () => {
  it.each(cases)('refuses %s with 401 and logs %s', async (_name, code, token) => {
    const { f, job } = await dueApp();
    await expectRefused(f, job, await token(f.clock.now()), code);
  });

  it('refuses every token when no key source is configured', async () => {
    const { f, job } = await dueApp({ verifierOptions: {} });
    await expectRefused(f, job, bearer(await mint(f.clock.now())), 'no_key_source');
  });

  it('refuses, and says why in the log, when the JWKS cannot be fetched at all', async () => {
    const { f, job } = await dueApp({ verifierOptions: { jwksUrl: 'http://127.0.0.1:1/jwks.json' } });
    await expectRefused(f, job, bearer(await mint(f.clock.now())), 'jwks_unavailable');
  });

  it('accepts a token whose sub names the fired job, as NAS signs them', async () => {
    const { f } = await dueApp();
    const res = await f.fire(
      bearer(await mint(f.clock.now(), { extraClaims: { sub: 'nightly' } })),
      fireBody('nightly', T1),
    );
    expect(res.statusCode).toBe(202);
  });

  it('accepts the issuer with a trailing slash, as portals often write it', async () => {
    const { f } = await dueApp();
    const res = await f.fire(
      bearer(await mint(f.clock.now(), { iss: `${ISSUER}/` })),
      fireBody('nightly', T1),
    );
    expect(res.statusCode).toBe(202);
  });

  it('is only reachable as POST /api/cron/fire: a valid token on another method gets no fire', async () => {
    const { f, job } = await dueApp();
    const res = await f.app.inject({
      method: 'PUT',
      url: FIRE_PATH,
      headers: { authorization: bearer(await mint(f.clock.now())), 'content-type': 'application/json' },
      payload: fireBody('nightly', T1),
    });
    expect(res.statusCode).toBe(404);
    expect(await f.store.getJob(job.id)).toEqual(job);
  });
});

describe('row 2: clock leeway', () => {
  it('accepts a token that expired 29 s ago', async () => {
    const { f } = await dueApp();
    const now = f.clock.now();
    const res = await f.fire(
      bearer(await mint(now - 120_000, { exp: sec(now) - 29 })),
      fireBody('nightly', T1),
    );
    expect(res.statusCode).toBe(202);
  });

  it('accepts a token whose nbf is 29 s ahead', async () => {
    const { f } = await dueApp();
    const now = f.clock.now();
    const res = await f.fire(bearer(await mint(now, { nbf: sec(now) + 29 })), fireBody('nightly', T1));
    expect(res.statusCode).toBe(202);
  });

  it('judges expiry by the injected clock, not the machine clock', async () => {
    const { f, job } = await dueApp();
    const token = bearer(await mint(f.clock.now()));
    // exp is iat + 90 s; past it plus the 30 s leeway the same token is refused.
    f.clock.advance(121_000);
    await f.store.updateJob(job.id, (j) => ({ ...j, next_run_at: f.clock.now() }));
    const res = await f.fire(token, fireBody('nightly', f.clock.now()));
    expect(res.statusCode).toBe(401);
    expect(f.refusalCodes()).toEqual(['expired']);
  });
});

describe('row 2: unknown kid', () => {
  const rotated = () => generateFireKey('RS256', `rotated-${Math.random().toString(36).slice(2)}`);

  it('refreshes the JWKS exactly once, then refuses; a burst within the cooldown fetches nothing more', async () => {
    const { f, job } = await dueApp({ verifierOptions: { jwksUrl: jwks.url, refreshCooldownMs: 30_000 } });
    await f.verifier.warm();
    const before = jwks.requests.length;
    // Past any cooldown the warm-up may have started, so the unknown kid below is allowed its one refresh.
    f.clock.advance(31_000);
    await f.store.updateJob(job.id, (j) => ({ ...j, next_run_at: f.clock.now() }));
    const unknown = await rotated();
    const at = f.clock.now();
    const token = bearer(await mintFireToken(unknown, { now: at, aud: AUDIENCE, iss: ISSUER }));

    const first = await f.fire(token, fireBody('nightly', at));
    expect(first.statusCode).toBe(401);
    expect(first.json()).toEqual(INVALID);
    expect(jwks.requests.length - before).toBe(1);

    for (let i = 0; i < 5; i++) {
      const again = await f.fire(token, fireBody('nightly', at));
      expect(again.statusCode).toBe(401);
    }
    expect(jwks.requests.length - before).toBe(1);
    expect(f.refusalCodes()).toEqual(Array(6).fill('kid_unknown'));
  });

  it('concurrent unknown-kid requests share one fetch', async () => {
    // Cooldown 0: only single-flight can keep the burst at one fetch.
    const { f } = await dueApp({ verifierOptions: { jwksUrl: jwks.url, refreshCooldownMs: 0 } });
    await f.verifier.warm();
    const before = jwks.requests.length;
    const unknown = await rotated();
    const token = bearer(await mintFireToken(unknown, { now: f.clock.now(), aud: AUDIENCE, iss: ISSUER }));

    jwks.hold();
    const burst = Array.from({ length: 8 }, () => f.fire(token, fireBody('nightly', T1)));
    await jwks.waitForRequests(before + 1);
    // While the one refresh is held open, give every other request ample time to reach the verifier;
    // without single-flight each would have started its own fetch by now.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(jwks.requests.length - before).toBe(1);
    jwks.release();
    const replies = await Promise.all(burst);
    expect(replies.map((r) => r.statusCode)).toEqual(Array(8).fill(401));
    expect(jwks.requests.length - before).toBe(1);
  });

  it('a rotated key published at NAS is picked up by the one refresh and the fire accepted', async () => {
    const { f } = await dueApp();
    await f.verifier.warm();
    f.clock.advance(31_000);
    const next = await rotated();
    jwks.publish(jwksOf(trusted, next));
    const before = jwks.requests.length;
    const res = await f.fire(
      bearer(await mintFireToken(next, { now: f.clock.now(), aud: AUDIENCE, iss: ISSUER })),
      fireBody('nightly', T1),
    );
    expect(res.statusCode).toBe(202);
    expect(jwks.requests.length - before).toBe(1);
  });

  it('a known kid never causes a fetch once the set is loaded', async () => {
    const { f } = await dueApp();
    await f.verifier.warm();
    const before = jwks.requests.length;
    for (let i = 0; i < 3; i++) {
      const res = await f.fire(bearer(await mint(f.clock.now())), fireBody('nightly', T1));
      expect([202, 200]).toContain(res.statusCode);
    }
    expect(jwks.requests.length).toBe(before);
  });
});

describe('row 2: inline key source', () => {
  let ed: FireKey;
  let es: FireKey;
  beforeAll(async () => {
    ed = await generateFireKey('EdDSA', 'ed-1');
    es = await generateFireKey('ES256', 'es-1');
  });

  it('accepts an EdDSA token against a PEM key', async () => {
    const { f } = await dueApp({ verifierOptions: { publicKey: ed.publicPem } });
    const res = await f.fire(
      bearer(await mintFireToken(ed, { now: f.clock.now(), aud: AUDIENCE, iss: ISSUER })),
      fireBody('nightly', T1),
    );
    expect(res.statusCode).toBe(202);
  });

  it('accepts an ES256 token against a JWK key', async () => {
    const { f } = await dueApp({ verifierOptions: { publicKey: JSON.stringify(es.publicJwk) } });
    const res = await f.fire(
      bearer(await mintFireToken(es, { now: f.clock.now(), aud: AUDIENCE, iss: ISSUER })),
      fireBody('nightly', T1),
    );
    expect(res.statusCode).toBe(202);
  });

  it('refuses an HS256 token whose secret is the trusted PEM', async () => {
    const { f, job } = await dueApp({ verifierOptions: { publicKey: ed.publicPem } });
    const token = await hmacToken(fireClaims(f.clock.now(), AUDIENCE, ISSUER), ed.publicPem);
    await expectRefused(f, job, bearer(token), 'alg_not_allowed');
  });

  it('refuses an HS256 token whose secret is the trusted JWK', async () => {
    const jwkText = JSON.stringify(es.publicJwk);
    const { f, job } = await dueApp({ verifierOptions: { publicKey: jwkText } });
    const token = await hmacToken(fireClaims(f.clock.now(), AUDIENCE, ISSUER), jwkText);
    await expectRefused(f, job, bearer(token), 'alg_not_allowed');
  });

  it('refuses an alg "none" token', async () => {
    const { f, job } = await dueApp({ verifierOptions: { publicKey: ed.publicPem } });
    await expectRefused(
      f,
      job,
      bearer(unsignedToken(fireClaims(f.clock.now(), AUDIENCE, ISSUER))),
      'alg_not_allowed',
    );
  });

  it('refuses a token signed by another key of the same type', async () => {
    const other = await generateFireKey('EdDSA');
    const { f, job } = await dueApp({ verifierOptions: { publicKey: ed.publicPem } });
    const token = await mintFireToken(other, { now: f.clock.now(), aud: AUDIENCE, iss: ISSUER });
    await expectRefused(f, job, bearer(token), 'signature_invalid');
  });
});
