/*
 * docs/contract.md (Replies), the fire endpoint's decision table, through app.inject() against the real route, a real
 * verifier fed by a loopback JWKS server, and real stores. Rows → describe blocks:
 *   row 1  "row 1: body over 16 KiB"            row 7  "row 7: inactive job"
 *   row 2  "row 2: token before body", "row 2: refused tokens are limited on their own"
 *          (every cause: token-refusals.test.ts)  row 8  "row 8: duplicate occurrence"
 *   row 3  "row 3: rate limit on verified fires"
 *   row 4  "row 4: bad body"                    row 9  "row 9: stale fire"
 *   row 5  "row 5: draining"                    row 10 "row 10: early fire"
 *   row 6  "row 6: unknown job"                 row 11 "row 11: claim cannot be written"
 *   row 12 "row 12: accepted" (and fire_at absent, retry occurrence, dead-owner recovery, offsets)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ChronosError } from '../../src/errors.js';
import { DEFAULT_REFUSAL_LOG_INTERVAL_MS, REFUSALS_SUMMARY_MSG, REFUSED_MSG } from '../../src/fire/guard.js';
import { FIRE_BODY_LIMIT } from '../../src/fire/route.js';
import { createFireTokenVerifier, type FireTokenVerifier } from '../../src/fire/token.js';
import type { Job } from '../../src/jobs/model.js';
import { claimFire } from '../../src/occurrence/claim.js';
import { currentOccurrence } from '../../src/occurrence/decide.js';
import { settleOccurrence } from '../../src/occurrence/settle.js';
import { FileStore } from '../../src/store/file-store.js';
import { CLAIM_LEASE_MS } from '../../src/store/lease.js';
import type { Store } from '../../src/store/store.js';
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
  type MintOptions,
  mintFireToken,
  startJwksServer,
  unsignedToken,
} from '../helpers/fire-keys.js';
import { flushMicrotasks, ManualClock } from '../helpers/manual-clock.js';
import { deadOwner } from '../store/fixtures.js';

/** The first `every 1m` occurrence of a job seeded at START. */
const T1 = START + 60_000;
const T2 = T1 + 60_000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let key: FireKey;
let jwks: JwksServer;
const apps: FireApp[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  key = await generateFireKey('ES256');
  jwks = await startJwksServer(jwksOf(key));
});
afterAll(() => jwks.close());
afterEach(async () => {
  for (const f of apps.splice(0)) await f.close();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function setup(opts: FireAppOptions = {}) {
  const f = await buildFireApp({ verifierOptions: { jwksUrl: jwks.url }, ...opts });
  apps.push(f);
  const bearer = async (claims: Partial<MintOptions> = {}) =>
    `Bearer ${await mintFireToken(key, { now: f.clock.now(), aud: AUDIENCE, iss: ISSUER, ...claims })}`;
  return { f, bearer };
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'chronos-fire-'));
  dirs.push(dir);
  return dir;
}

/** The job and its ledger are exactly as they were: nothing was written. */
async function expectNothingWritten(store: Store, before: Job, fireAts: number[] = [T1]): Promise<void> {
  expect(await store.getJob(before.id)).toEqual(before);
  for (const at of fireAts) expect(await store.getLedgerEntry(before.id, at)).toBeUndefined();
  expect(await store.listClaimed()).toEqual([]);
}

async function expectNoCallbacks(f: FireApp): Promise<void> {
  await flushMicrotasks();
  expect(f.inactive).toEqual([]);
  expect(f.stale).toEqual([]);
  expect(f.accepted).toEqual([]);
}

describe('row 1: body over 16 KiB', () => {
  it('answers 413 even with a valid token for a due job, and writes nothing', async () => {
    const { f, bearer } = await setup();
    const job = await seedJob(f.store, START, { id: 'big' });
    f.clock.set(T1);
    const padded = JSON.stringify({ ...fireBody('big', T1), pad: 'x'.repeat(FIRE_BODY_LIMIT) });
    const res = await f.fire(await bearer(), padded);
    expect(res.statusCode).toBe(413);
    expect(res.json()).toEqual({ error: 'FST_ERR_CTP_BODY_TOO_LARGE', message: 'Request body is too large' });
    await expectNothingWritten(f.store, job);
    await expectNoCallbacks(f);
  });

  it('answers 413 before looking at the token (row 1 before row 2)', async () => {
    const { f } = await setup();
    const res = await f.fire(undefined, 'x'.repeat(FIRE_BODY_LIMIT + 1));
    expect(res.statusCode).toBe(413);
    expect(f.refusalCodes()).toEqual([]);
  });

  it('accepts a body of exactly 16 KiB', async () => {
    const { f, bearer } = await setup();
    await seedJob(f.store, START, { id: 'edge' });
    f.clock.set(T1);
    const base = JSON.stringify({ ...fireBody('edge', T1), pad: '' });
    const exact = JSON.stringify({ ...fireBody('edge', T1), pad: 'x'.repeat(FIRE_BODY_LIMIT - base.length) });
    expect(Buffer.byteLength(exact)).toBe(FIRE_BODY_LIMIT);
    const res = await f.fire(await bearer(), exact);
    expect(res.statusCode).toBe(202);
  });
});

describe('row 2: refused tokens are limited on their own', () => {
  /** The app's verifier, counting the requests that reached a signature check. */
  async function countingSetup(opts: FireAppOptions = {}) {
    const clock = new ManualClock(START);
    const verifier = createFireTokenVerifier({
      audience: AUDIENCE,
      issuer: ISSUER,
      jwksUrl: jwks.url,
      clock,
    });
    let verified = 0;
    const counting: FireTokenVerifier = {
      ...verifier,
      verify: (authorization) => {
        verified += 1;
        return verifier.verify(authorization);
      },
    };
    const { f, bearer } = await setup({ verifier: counting, clock, ...opts });
    return { f, bearer, verifiedCount: () => verified };
  }

  it('never spends the budget of verified fires: junk from the same address leaves NAS its every fire', async () => {
    const { f, bearer } = await setup({ rateLimit: { max: 2, timeWindowMs: 60_000 } });
    await seedJob(f.store, START, { id: 'busy' });
    f.clock.set(T1);
    for (let i = 0; i < 30; i++) expect((await f.fire(undefined, fireBody('busy', T1))).statusCode).toBe(401);
    expect((await f.fire(await bearer(), fireBody('busy', T1))).statusCode).toBe(202);
    expect((await f.fire(await bearer(), fireBody('busy', T1))).statusCode).toBe(200);
    await flushMicrotasks();
    expect(f.accepted).toHaveLength(1);
  });

  it('past the refusal budget, refuses implausible tokens without a signature check and still verifies plausible ones', async () => {
    const { f, bearer, verifiedCount } = await countingSetup({
      refusalLimit: { max: 3, timeWindowMs: 60_000 },
    });
    const job = await seedJob(f.store, START, { id: 'flood' });
    f.clock.set(T1);
    for (let i = 0; i < 3; i++)
      expect((await f.fire('Bearer junk', fireBody('flood', T1))).statusCode).toBe(401);
    expect(verifiedCount()).toBe(3);

    const now = f.clock.now();
    const implausible = [
      undefined,
      'Bearer junk',
      'Basic dXNlcjpwYXNz',
      await bearer({ aud: 'agent:someone-else' }),
      await bearer({ iss: 'https://evil.test' }),
      await bearer({ purpose: 'admin' }),
      await bearer({ exp: Math.floor(now / 1000) - 3600 }),
      await bearer({ exp: null }),
      `Bearer ${await hmacToken(fireClaims(now, AUDIENCE, ISSUER), 'secret')}`,
      `Bearer ${unsignedToken(fireClaims(now, AUDIENCE, ISSUER))}`,
    ];
    for (const authorization of implausible) {
      const res = await f.fire(authorization, fireBody('flood', T1));
      expect(res.statusCode).toBe(401);
      expect(res.json()).toEqual({ error: 'invalid fire token' });
    }
    expect(verifiedCount()).toBe(3);

    // Right claims, wrong key: it could be NAS's, so its signature is checked, and refused.
    const stranger = await generateFireKey('ES256', key.kid);
    const forged = `Bearer ${await mintFireToken(stranger, { now, aud: AUDIENCE, iss: ISSUER })}`;
    expect((await f.fire(forged, fireBody('flood', T1))).statusCode).toBe(401);
    expect(verifiedCount()).toBe(4);
    await expectNothingWritten(f.store, job);

    // NAS's own fire from the same address is verified and accepted.
    expect((await f.fire(await bearer(), fireBody('flood', T1))).statusCode).toBe(202);
    expect(verifiedCount()).toBe(5);
    await flushMicrotasks();
    expect(f.accepted).toHaveLength(1);

    // A new window verifies in full again.
    await f.clock.advance(60_000);
    await f.fire('Bearer junk', fireBody('flood', T1));
    expect(verifiedCount()).toBe(6);
  });

  it('logs the first refusal of each cause at once and the rest as counts per interval, not a line each', async () => {
    const { f } = await setup();
    await seedJob(f.store, START, { id: 'noisy' });
    f.clock.set(T1);
    for (let i = 0; i < 200; i++) await f.fire(undefined, fireBody('noisy', T1));
    for (let i = 0; i < 50; i++) await f.fire('Bearer junk', fireBody('noisy', T1));
    const refusalLines = () => f.logs.filter((l) => l.msg === REFUSED_MSG || l.msg === REFUSALS_SUMMARY_MSG);
    expect(refusalLines().map((l) => [l.msg, l.code])).toEqual([
      [REFUSED_MSG, 'token_missing'],
      [REFUSED_MSG, 'token_malformed'],
    ]);
    expect(refusalLines()[0]).toMatchObject({ level: 40, ip: '127.0.0.1' });

    // The interval ends on the injected clock: one summary with every count.
    await f.clock.advance(DEFAULT_REFUSAL_LOG_INTERVAL_MS);
    const summary = f.logs.filter((l) => l.msg === REFUSALS_SUMMARY_MSG);
    expect(summary).toHaveLength(1);
    expect(summary[0]).toMatchObject({
      refused: 250,
      by_cause: [
        { code: 'token_missing', ip: '127.0.0.1', count: 200 },
        { code: 'token_malformed', ip: '127.0.0.1', count: 50 },
      ],
    });
    // A new interval logs its first refusal at once again.
    await f.fire(undefined, fireBody('noisy', T1));
    expect(refusalLines()).toHaveLength(4);
  });
});

describe('row 2: the client address behind a proxy (CHRONOS_TRUST_PROXY)', () => {
  const refusedIps = (f: FireApp) => f.logs.filter((l) => l.msg === REFUSED_MSG).map((l) => l['ip']);
  const forwarded = { 'x-forwarded-for': 'forged, 203.0.113.7, 198.51.100.1' };

  it('by default, counts and logs the TCP peer whatever X-Forwarded-For says', async () => {
    const { f } = await setup();
    await f.fire(undefined, fireBody('any', T1), forwarded);
    expect(refusedIps(f)).toEqual(['127.0.0.1']);
  });

  it('with a hop count of 2, takes the entry left of the rightmost one and ignores what a client forged', async () => {
    const { f } = await setup({ trustProxy: 2 });
    await f.fire(undefined, fireBody('any', T1), forwarded);
    expect(refusedIps(f)).toEqual(['203.0.113.7']);
  });

  it('with trusted proxy addresses, walks back past them only', async () => {
    const { f } = await setup({ trustProxy: ['127.0.0.1', '198.51.100.0/24'] });
    await f.fire(undefined, fireBody('any', T1), forwarded);
    expect(refusedIps(f)).toEqual(['203.0.113.7']);
  });

  it('keeps separate refusal budgets for clients behind the same proxy', async () => {
    const { f, bearer } = await setup({ trustProxy: 1, refusalLimit: { max: 2, timeWindowMs: 60_000 } });
    await seedJob(f.store, START, { id: 'shared' });
    f.clock.set(T1);
    for (let i = 0; i < 5; i++)
      await f.fire('Bearer junk', fireBody('shared', T1), { 'x-forwarded-for': '203.0.113.66' });
    const fromNas = await f.fire(await bearer(), fireBody('shared', T1), {
      'x-forwarded-for': '198.51.100.9',
    });
    expect(fromNas.statusCode).toBe(202);
    f.flushRefusals();
    const summary = f.logs.find((l) => l.msg === REFUSALS_SUMMARY_MSG);
    expect(summary?.['by_cause']).toEqual([{ code: 'token_malformed', ip: '203.0.113.66', count: 5 }]);
  });
});

describe('row 3: rate limit on verified fires', () => {
  it('answers 429 with Retry-After past the limit, after the token check, and writes nothing', async () => {
    const { f, bearer } = await setup({ rateLimit: { max: 2, timeWindowMs: 60_000 } });
    const job = await seedJob(f.store, START, { id: 'busy' });
    f.clock.set(T1 - 61_000);
    // Two verified fires (early: 425, nothing written) spend the budget.
    expect((await f.fire(await bearer(), fireBody('busy', T1))).statusCode).toBe(425);
    expect((await f.fire(await bearer(), fireBody('busy', T1))).statusCode).toBe(425);

    await f.clock.advance(20_000);
    const limited = await f.fire(await bearer(), fireBody('busy', T1));
    expect(limited.statusCode).toBe(429);
    expect(limited.headers['retry-after']).toBe('40');
    expect(limited.json()).toEqual({
      error: 'rate_limited',
      message: 'more than 2 fires from this address in 60 s; deliver again in 40 s',
    });
    expect(f.logs.filter((l) => l.msg === 'fire refused: rate limit')).toHaveLength(1);

    // Row 2 before row 3: a bad token is refused as such, not limited.
    expect((await f.fire(undefined, fireBody('busy', T1))).statusCode).toBe(401);
    // Row 1 before row 3: the size check comes first.
    expect((await f.fire(await bearer(), 'x'.repeat(FIRE_BODY_LIMIT + 1))).statusCode).toBe(413);
    await expectNothingWritten(f.store, job);
    await expectNoCallbacks(f);

    // The next window has a fresh budget.
    f.clock.set(T1);
    expect((await f.fire(await bearer(), fireBody('busy', T1))).statusCode).toBe(202);
  });
});

describe('row 2: token before body', () => {
  it('answers 401 (not 400) to a bad token with a bad body, and writes nothing', async () => {
    const { f } = await setup();
    const job = await seedJob(f.store, START, { id: 'order' });
    f.clock.set(T1);
    const res = await f.fire('Bearer garbage', 'not json at all');
    expect(res.statusCode).toBe(401);
    expect(res.json()).toEqual({ error: 'invalid fire token' });
    expect(f.refusalCodes()).toEqual(['token_malformed']);
    await expectNothingWritten(f.store, job);
    await expectNoCallbacks(f);
  });

  it('answers 401 to a valid body with a token minted for another audience, and writes nothing', async () => {
    const { f, bearer } = await setup();
    const job = await seedJob(f.store, START, { id: 'aud' });
    f.clock.set(T1);
    const res = await f.fire(await bearer({ aud: 'agent:someone-else' }), fireBody('aud', T1));
    expect(res.statusCode).toBe(401);
    expect(res.json()).toEqual({ error: 'invalid fire token' });
    await expectNothingWritten(f.store, job);
    await expectNoCallbacks(f);
  });
});

describe('row 4: bad body', () => {
  const jobIdMessage = 'job_id is required and must match [a-z0-9][a-z0-9_-]{0,63}';
  const fireAtMessage = 'fire_at must be an ISO-8601 instant with an offset, e.g. 2026-03-08T07:00:00Z';
  const jsonMessage = 'body must be JSON: {"job_id": "...", "fire_at": "<ISO-8601>"}';
  const cases: Array<[string, string, string]> = [
    ['not JSON', '{"job_id": "a",', jsonMessage],
    ['an empty body', '', jsonMessage],
    ['a JSON array', '["a"]', 'body must be a JSON object'],
    ['job_id missing', '{"fire_at":"2026-03-08T07:00:00Z"}', jobIdMessage],
    ['job_id not a string', '{"job_id":42}', jobIdMessage],
    ['an unsafe job_id (../etc)', '{"job_id":"../etc"}', jobIdMessage],
    ['an upper-case job_id', '{"job_id":"Daily"}', jobIdMessage],
    ['fire_at "tomorrow"', '{"job_id":"a","fire_at":"tomorrow"}', fireAtMessage],
    ['a naive fire_at (2026-03-08 07:00)', '{"job_id":"a","fire_at":"2026-03-08 07:00"}', fireAtMessage],
    ['a fire_at without offset', '{"job_id":"a","fire_at":"2026-03-08T07:00:00"}', fireAtMessage],
    ['a numeric fire_at', '{"job_id":"a","fire_at":1772953200000}', fireAtMessage],
  ];
  it.each(cases)('answers 400 to %s with a valid token, and writes nothing', async (_name, body, message) => {
    const { f, bearer } = await setup();
    const job = await seedJob(f.store, START, { id: 'a' });
    f.clock.set(T1);
    const res = await f.fire(await bearer(), body);
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({ error: 'bad_request', message });
    await expectNothingWritten(f.store, job);
    await expectNoCallbacks(f);
  });

  it('parses the body whatever the content type says (NAS may omit it)', async () => {
    const { f, bearer } = await setup();
    await seedJob(f.store, START, { id: 'a' });
    f.clock.set(T1);
    const res = await f.fire(await bearer(), fireBody('a', T1), { 'content-type': 'text/plain' });
    expect(res.statusCode).toBe(202);
  });
});

describe('row 5: draining', () => {
  it('answers 503 with Retry-After while draining, and writes nothing', async () => {
    const { f, bearer } = await setup();
    const job = await seedJob(f.store, START, { id: 'drain' });
    f.clock.set(T1);
    f.setDraining(7);
    const res = await f.fire(await bearer(), fireBody('drain', T1));
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('7');
    expect(res.json()).toEqual({ error: 'draining', message: 'shutting down; deliver again later' });
    await expectNothingWritten(f.store, job);
    await expectNoCallbacks(f);
  });

  it('checks the token and the body first, and answers 503 even for an unknown job (rows 2, 4 before 5 before 6)', async () => {
    const { f, bearer } = await setup();
    f.setDraining(3);
    expect((await f.fire(undefined, fireBody('x', T1))).statusCode).toBe(401);
    expect((await f.fire(await bearer(), '{')).statusCode).toBe(400);
    const unknown = await f.fire(await bearer(), fireBody('nobody', T1));
    expect(unknown.statusCode).toBe(503);
    await expectNoCallbacks(f);
  });
});

describe('row 6: unknown job', () => {
  it('answers 200 gone and asks for the arm to be cancelled', async () => {
    const { f, bearer } = await setup();
    const res = await f.fire(await bearer(), fireBody('nobody', T1));
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'gone' });
    expect(f.inactive).toEqual(['nobody']);
    expect(await f.store.listJobs()).toEqual([]);
    expect(await f.store.listClaimed()).toEqual([]);
    await flushMicrotasks();
    expect(f.accepted).toEqual([]);
    expect(f.stale).toEqual([]);
  });
});

describe('row 7: inactive job', () => {
  const cases: Array<[string, Partial<Job>]> = [
    ['paused', { state: 'paused' }],
    ['disabled', { enabled: false }],
    ['completed', { state: 'completed', repeat: { times: 1, completed: 1 } }],
    ['in the error state', { state: 'error', last_error: 'cannot compute the next run' }],
  ];
  it.each(cases)(
    'answers 200 inactive for a job %s, cancels its arm, and writes nothing',
    async (_name, patch) => {
      const { f, bearer } = await setup();
      const job = await seedJob(f.store, START, { id: 'quiet' }, patch);
      f.clock.set(T1);
      const res = await f.fire(await bearer(), fireBody('quiet', T1));
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ status: 'inactive' });
      expect(f.inactive).toEqual(['quiet']);
      await expectNothingWritten(f.store, job);
      await flushMicrotasks();
      expect(f.accepted).toEqual([]);
      expect(f.stale).toEqual([]);
    },
  );
});

describe('row 8: duplicate occurrence', () => {
  it('a replayed token for an accepted occurrence is a duplicate: one run only, nothing rewritten', async () => {
    const { f, bearer } = await setup();
    await seedJob(f.store, START, { id: 'once' });
    f.clock.set(T1);
    const token = await bearer({ jti: 'fire-1' });
    const first = await f.fire(token, fireBody('once', T1));
    expect(first.statusCode).toBe(202);
    const afterFirst = await f.store.getJob('once');
    const row = await f.store.getLedgerEntry('once', T1);

    f.clock.advance(5_000);
    const replay = await f.fire(token, fireBody('once', T1));
    expect(replay.statusCode).toBe(200);
    expect(replay.json()).toEqual({ status: 'duplicate' });
    await flushMicrotasks();
    expect(f.accepted).toHaveLength(1);
    expect(f.stale).toEqual([]);
    expect(f.inactive).toEqual([]);
    expect(await f.store.getJob('once')).toEqual(afterFirst);
    expect(await f.store.getLedgerEntry('once', T1)).toEqual(row);
  });

  it("logs an occurrence's first duplicate at info and its repeats at debug, each occurrence on its own", async () => {
    const { f, bearer } = await setup();
    await seedJob(f.store, START, { id: 'loud' });
    await seedJob(f.store, START, { id: 'other' });
    f.clock.set(T1);
    const token = await bearer();
    expect((await f.fire(token, fireBody('loud', T1))).statusCode).toBe(202);
    expect((await f.fire(token, fireBody('other', T1))).statusCode).toBe(202);
    for (const id of ['loud', 'loud', 'loud', 'other'])
      expect((await f.fire(token, fireBody(id, T1))).json()).toEqual({ status: 'duplicate' });
    await flushMicrotasks();
    const levels = (id: string) =>
      f.logs.filter((l) => l.msg === 'duplicate fire' && l['job_id'] === id).map((l) => l.level);
    // pino's levels: 30 info, 20 debug.
    expect(levels('loud')).toEqual([30, 20, 20]);
    expect(levels('other')).toEqual([30]);
  });

  describe('without fire_at (older NAS): the occurrence currently due', () => {
    it('a second delivery of a claimed occurrence is a duplicate, not an early claim of the next one', async () => {
      const { f, bearer } = await setup();
      await seedJob(f.store, START, { id: 'legacy' });
      f.clock.set(T1);
      const first = await f.fire(await bearer(), fireBody('legacy'));
      expect(first.statusCode).toBe(202);
      expect(first.json()).toMatchObject({ fire_at: '2026-03-08T07:00:00Z' });
      const afterFirst = await f.store.getJob('legacy');
      expect(afterFirst?.next_run_at).toBe(T2);

      // 5 s later T2 is within the 60 s early window: before the fix this claimed T2 early, and T2's own
      // delivery was then answered `duplicate` although its run had happened a minute ahead of time.
      f.clock.advance(5_000);
      const second = await f.fire(await bearer(), fireBody('legacy'));
      expect(second.statusCode).toBe(200);
      expect(second.json()).toEqual({ status: 'duplicate' });
      await flushMicrotasks();
      expect(f.accepted).toHaveLength(1);
      expect(await f.store.getJob('legacy')).toEqual(afterFirst);
      expect(await f.store.getLedgerEntry('legacy', T2)).toBeUndefined();

      // T2's own delivery, with or without fire_at, is accepted when it comes.
      f.clock.set(T2);
      const next = await f.fire(await bearer(), fireBody('legacy'));
      expect(next.statusCode).toBe(202);
      expect(next.json()).toMatchObject({ fire_at: '2026-03-08T07:01:00Z' });
    });

    it('a settled occurrence delivered again is a duplicate too', async () => {
      const { f, bearer } = await setup();
      await seedJob(f.store, START, { id: 'legacy' });
      f.clock.set(T1);
      expect((await f.fire(await bearer(), fireBody('legacy'))).statusCode).toBe(202);
      await settleOccurrence(f.store, 'legacy', T1, 'finished');
      f.clock.advance(20_000);
      expect((await f.fire(await bearer(), fireBody('legacy'))).json()).toEqual({ status: 'duplicate' });
      expect(await f.store.getLedgerEntry('legacy', T2)).toBeUndefined();
    });

    it('closer to the next instant than to the last claimed one, it is an early delivery of the next', async () => {
      const { f, bearer } = await setup();
      await seedJob(f.store, START, { id: 'legacy' });
      f.clock.set(T1);
      expect((await f.fire(await bearer(), fireBody('legacy'))).statusCode).toBe(202);
      f.clock.set(T1 + 40_000); // 40 s after T1, 20 s before T2
      const res = await f.fire(await bearer(), fireBody('legacy'));
      expect(res.statusCode).toBe(202);
      expect(res.json()).toMatchObject({ fire_at: '2026-03-08T07:01:00Z' });
    });

    it('an overdue armed instant is due however late, even with an older occurrence in the ledger', async () => {
      const { f, bearer } = await setup();
      await seedJob(f.store, START, { id: 'legacy' });
      f.clock.set(T1);
      expect((await f.fire(await bearer(), fireBody('legacy'))).statusCode).toBe(202);
      await settleOccurrence(f.store, 'legacy', T1, 'finished');
      f.clock.set(T2 + 300_000); // NAS was down: T2 is 5 minutes late
      const res = await f.fire(await bearer(), fireBody('legacy'));
      expect(res.statusCode).toBe(202);
      expect(res.json()).toMatchObject({ fire_at: '2026-03-08T07:01:00Z' });
    });
  });

  it.each<[string, number | null, number | undefined, number, number | null]>([
    ['nothing armed, nothing claimed', null, undefined, T1, null],
    ['armed overdue by an hour', T1, undefined, T1 + 3_600_000, T1],
    ['armed 60 s ahead (the edge of the early window)', T1, undefined, T1 - 60_000, T1],
    ['armed 61 s ahead', T1, undefined, T1 - 61_000, null],
    ['claimed 5 s ago, next 55 s ahead', T2, T1, T1 + 5_000, T1],
    ['claimed 40 s ago, next 20 s ahead', T2, T1, T1 + 40_000, T2],
    ['claimed 30 s ago, next 30 s ahead (a tie goes to the ledger)', T2, T1, T1 + 30_000, T1],
    ['claimed 61 s ago, next 59 s ahead', T2 + 1_000, T1, T1 + 61_000, T2 + 1_000],
    ['claimed 61 s ago, next 3 min ahead', T2 + 120_000, T1, T1 + 61_000, null],
  ])('currentOccurrence: %s', (_name, armed, latest, now, expected) => {
    expect(currentOccurrence(armed, latest, now)).toBe(expected);
  });

  it('an occurrence already finished is a duplicate', async () => {
    const { f, bearer } = await setup();
    await seedJob(f.store, START, { id: 'done' });
    f.clock.set(T1);
    expect((await f.fire(await bearer(), fireBody('done', T1))).statusCode).toBe(202);
    await settleOccurrence(f.store, 'done', T1, 'finished');
    const res = await f.fire(await bearer(), fireBody('done', T1));
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'duplicate' });
    expect((await f.store.getLedgerEntry('done', T1))?.status).toBe('finished');
  });

  it('an occurrence claimed by another live process is a duplicate', async () => {
    const { f, bearer } = await setup();
    await seedJob(f.store, START, { id: 'shared' });
    f.clock.set(T1);
    const other = { boot_id: 'another-live-process', pid: process.ppid, host: f.owner.host };
    const claimed = await claimFire(f.store, {
      job_id: 'shared',
      fire_at: T1,
      trigger: 'nas',
      now: T1,
      owner: other,
    });
    expect(claimed.kind).toBe('accepted');
    const res = await f.fire(await bearer(), fireBody('shared', T1));
    expect(res.json()).toEqual({ status: 'duplicate' });
    expect((await f.store.getLedgerEntry('shared', T1))?.owner).toEqual(other);
  });

  it('a duplicate of an old occurrence is duplicate, not stale (row 8 before row 9)', async () => {
    const { f, bearer } = await setup();
    await seedJob(f.store, START, { id: 'older' });
    f.clock.set(T1);
    expect((await f.fire(await bearer(), fireBody('older', T1))).statusCode).toBe(202);
    // Its run (not started by this fixture) ends; a claim left unrun would be taken over once its lease ran out.
    await settleOccurrence(f.store, 'older', T1, 'finished');
    f.clock.set(T2);
    expect((await f.fire(await bearer(), fireBody('older', T2))).statusCode).toBe(202);
    // T1 no longer matches next_run_at (T2 + 1 m), but the ledger knows it.
    const res = await f.fire(await bearer(), fireBody('older', T1));
    expect(res.json()).toEqual({ status: 'duplicate' });
    expect(f.stale).toEqual([]);
  });
});

describe('row 9: stale fire', () => {
  it('answers 200 stale for a fire_at that is not the next run, re-arms the current job, writes nothing', async () => {
    const { f, bearer } = await setup();
    const job = await seedJob(f.store, START, { id: 'moved' });
    f.clock.set(T1);
    const old = T1 - 60_000;
    const res = await f.fire(await bearer(), fireBody('moved', old));
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'stale' });
    expect(f.stale).toEqual([job]);
    await expectNothingWritten(f.store, job, [T1, old]);
    await flushMicrotasks();
    expect(f.accepted).toEqual([]);
    expect(f.inactive).toEqual([]);
  });

  it('a far-future fire_at that does not match is stale, not early (row 9 before row 10)', async () => {
    const { f, bearer } = await setup();
    const job = await seedJob(f.store, START, { id: 'future' });
    const res = await f.fire(await bearer(), fireBody('future', T1 + 3_600_000));
    expect(res.json()).toEqual({ status: 'stale' });
    expect(f.stale).toEqual([job]);
  });

  it('without fire_at (older NAS), a job not yet due is stale', async () => {
    const { f, bearer } = await setup();
    const job = await seedJob(f.store, START, { id: 'legacy' });
    f.clock.set(T1 - 61_000);
    const res = await f.fire(await bearer(), fireBody('legacy'));
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'stale' });
    expect(f.stale).toEqual([job]);
    await expectNothingWritten(f.store, job);
  });
});

describe('row 10: early fire', () => {
  it('answers 425 with Retry-After = seconds until due when more than 60 s early, and writes nothing', async () => {
    const { f, bearer } = await setup();
    const job = await seedJob(f.store, START, { id: 'soon' });
    f.clock.set(T1 - 61_000);
    const res = await f.fire(await bearer(), fireBody('soon', T1));
    expect(res.statusCode).toBe(425);
    expect(res.headers['retry-after']).toBe('61');
    expect(res.json()).toEqual({ error: 'too_early', retry_after: 61 });
    await expectNothingWritten(f.store, job);
    await expectNoCallbacks(f);
  });

  it('rounds a fractional wait up', async () => {
    const { f, bearer } = await setup();
    await seedJob(f.store, START, { id: 'soon' });
    f.clock.set(T1 - 90_500);
    const res = await f.fire(await bearer(), fireBody('soon', T1));
    expect(res.headers['retry-after']).toBe('91');
  });

  it.each([59_000, 60_000])('accepts a fire %i ms early (clock skew)', async (early) => {
    const { f, bearer } = await setup();
    await seedJob(f.store, START, { id: 'skew' });
    f.clock.set(T1 - early);
    const res = await f.fire(await bearer(), fireBody('skew', T1));
    expect(res.statusCode).toBe(202);
    const stored = await f.store.getJob('skew');
    expect(stored?.next_run_at).toBe(T2);
  });
});

describe('row 11: claim cannot be written', () => {
  /** A real FileStore whose writes fail the way a full or read-only disk makes them fail. */
  function failingWrites(inner: Store): Store {
    return new Proxy(inner, {
      get(target, prop, receiver) {
        if (prop === 'transact') {
          return async () => {
            throw new ChronosError(
              'store_unavailable',
              'EROFS: read-only file system, open /srv/chronos/jobs/.w.tmp',
            );
          };
        }
        const value = Reflect.get(target, prop, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }

  it('answers 503 with Retry-After, logs the failure, and does nothing else', async () => {
    const dir = await tempDir();
    const inner = await FileStore.open({ dir });
    const job = await seedJob(inner, START, { id: 'disk' });
    const { f, bearer } = await setup({ store: failingWrites(inner) });
    f.clock.set(T1);
    const res = await f.fire(await bearer(), fireBody('disk', T1));
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('5');
    expect(res.json()).toEqual({
      error: 'claim_failed',
      message: 'the occurrence could not be recorded; deliver again later',
    });
    expect(res.body).not.toContain('EROFS');
    const logged = f.logs.find((l) => l.msg === 'fire not claimed: store error');
    expect(logged).toMatchObject({ job_id: 'disk', fire_at: '2026-03-08T07:00:00.000Z' });
    expect(JSON.stringify(logged)).toContain('EROFS');
    await expectNothingWritten(inner, job);
    await expectNoCallbacks(f);
    await inner.close();
  });
});

describe('row 12: accepted', () => {
  it('claims, advances next_run_at and counts the repeat in one stored job, replies 202, then calls onAccepted', async () => {
    const { f, bearer } = await setup();
    await seedJob(f.store, START, { id: 'daily' });
    f.clock.set(T1);
    const res = await f.fire(await bearer(), fireBody('daily', T1));
    expect(res.statusCode).toBe(202);
    const body = res.json() as Record<string, string>;
    expect(body).toEqual({
      status: 'accepted',
      job_id: 'daily',
      fire_at: '2026-03-08T07:00:00Z',
      run_id: expect.stringMatching(UUID),
    });
    // The wire keeps its form (docs/contract.md); the log writes every instant as the runner does.
    expect(f.logs.find((l) => l.msg === 'fire accepted')).toMatchObject({
      fire_at: '2026-03-08T07:00:00.000Z',
    });

    const stored = await f.store.getJob('daily');
    expect(stored?.next_run_at).toBe(T2);
    expect(stored?.repeat.completed).toBe(1);
    expect(await f.store.getLedgerEntry('daily', T1)).toEqual({
      job_id: 'daily',
      fire_at: T1,
      status: 'claimed',
      trigger: 'nas',
      run_id: body['run_id'],
      owner: f.owner,
      claimed_at: T1,
      expires_at: T1 + CLAIM_LEASE_MS,
    });

    await flushMicrotasks();
    expect(f.events).toEqual(['response:202', 'accepted:daily']);
    expect(f.accepted).toEqual([
      { job: stored, fire_at: T1, run_id: body['run_id'], trigger: 'nas', attempt: 1, recovered: false },
    ]);
    expect(f.stale).toEqual([]);
    expect(f.inactive).toEqual([]);
  });

  it('a late delivery moves next_run_at strictly past now, never into the past', async () => {
    const { f, bearer } = await setup();
    await seedJob(f.store, START, { id: 'late' });
    f.clock.set(T1 + 150_000);
    expect((await f.fire(await bearer(), fireBody('late', T1))).statusCode).toBe(202);
    const stored = await f.store.getJob('late');
    expect(stored?.next_run_at).toBe(T1 + 180_000);
    expect(stored?.repeat.completed).toBe(1);
  });

  it('a one-shot is counted and left with no next run', async () => {
    const { f, bearer } = await setup();
    await seedJob(f.store, START, { id: 'oneshot', schedule: 'at 2026-03-08T07:00:00Z' });
    f.clock.set(T1);
    expect((await f.fire(await bearer(), fireBody('oneshot', T1))).statusCode).toBe(202);
    const stored = await f.store.getJob('oneshot');
    expect(stored?.next_run_at).toBeNull();
    expect(stored?.repeat).toEqual({ times: 1, completed: 1 });
  });

  it('without fire_at (older NAS), uses the due next_run_at', async () => {
    const { f, bearer } = await setup();
    await seedJob(f.store, START, { id: 'legacy' });
    f.clock.set(T1 - 30_000);
    const res = await f.fire(await bearer(), fireBody('legacy'));
    expect(res.statusCode).toBe(202);
    expect(res.json()).toMatchObject({ status: 'accepted', fire_at: '2026-03-08T07:00:00Z' });
    expect((await f.store.getLedgerEntry('legacy', T1))?.status).toBe('claimed');
  });

  it('matches a fire_at written with another offset against next_run_at as an instant', async () => {
    const { f, bearer } = await setup();
    await seedJob(f.store, START, { id: 'offset' });
    f.clock.set(T1);
    const res = await f.fire(await bearer(), { job_id: 'offset', fire_at: '2026-03-08T02:00:00-05:00' });
    expect(res.statusCode).toBe(202);
    expect(res.json()).toMatchObject({ fire_at: '2026-03-08T07:00:00Z' });
    expect((await f.store.getLedgerEntry('offset', T1))?.status).toBe('claimed');
  });

  it('accepts a pending retry occurrence with trigger retry, leaving the regular schedule alone', async () => {
    const { f, bearer } = await setup();
    const retryAt = T1 + 30_000;
    await seedJob(f.store, START, { id: 'flaky' }, { next_run_at: T2, retry_at: retryAt, retry_attempt: 2 });
    f.clock.set(retryAt);
    const res = await f.fire(await bearer(), fireBody('flaky', retryAt));
    expect(res.statusCode).toBe(202);
    const stored = await f.store.getJob('flaky');
    expect(stored).toMatchObject({ next_run_at: T2, retry_at: null, repeat: { times: null, completed: 0 } });
    expect((await f.store.getLedgerEntry('flaky', retryAt))?.trigger).toBe('retry');
    await flushMicrotasks();
    expect(f.accepted[0]).toMatchObject({ trigger: 'retry', attempt: 2, fire_at: retryAt });
  });

  it('recovers an occurrence claimed by a dead process, without counting it twice', async () => {
    const { f, bearer } = await setup();
    await seedJob(f.store, START, { id: 'orphan' });
    f.clock.set(T1);
    // The dead process made its claim durable (job advanced, repeat counted) and died before replying.
    const dead = await deadOwner();
    const theirs = await claimFire(f.store, {
      job_id: 'orphan',
      fire_at: T1,
      trigger: 'nas',
      now: T1,
      owner: dead,
    });
    expect(theirs.kind).toBe('accepted');

    f.clock.advance(10_000);
    const res = await f.fire(await bearer(), fireBody('orphan', T1));
    expect(res.statusCode).toBe(202);
    const row = await f.store.getLedgerEntry('orphan', T1);
    expect(row).toMatchObject({ status: 'claimed', owner: f.owner, run_id: res.json().run_id });
    expect(res.json().run_id).not.toBe(theirs.kind === 'accepted' ? theirs.accepted.run_id : '');
    const stored = await f.store.getJob('orphan');
    expect(stored?.next_run_at).toBe(T2);
    expect(stored?.repeat.completed).toBe(1);
    await flushMicrotasks();
    expect(f.accepted).toHaveLength(1);
    expect(f.accepted[0]?.recovered).toBe(true);
  });

  it('does not run again an occurrence whose run had started when its process died (duplicate)', async () => {
    const { f, bearer } = await setup();
    await seedJob(f.store, START, { id: 'once-only' });
    f.clock.set(T1);
    const dead = await deadOwner();
    const theirs = await claimFire(f.store, {
      job_id: 'once-only',
      fire_at: T1,
      trigger: 'nas',
      now: T1,
      owner: dead,
    });
    if (theirs.kind !== 'accepted') throw new Error(`setup claim was ${theirs.kind}`);
    // The dead process had started the run: its record exists (boot recovery books it interrupted).
    await f.store.appendRun({
      run_id: theirs.accepted.run_id,
      job_id: 'once-only',
      fire_at: T1,
      trigger: 'nas',
      status: 'running',
      attempt: 1,
      started_at: T1,
      finished_at: null,
      output: null,
      error: null,
    });

    const res = await f.fire(await bearer(), fireBody('once-only', T1));
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'duplicate' });
    await flushMicrotasks();
    expect(f.accepted).toHaveLength(0);
  });

  it('accepts a claim whose write reported an error after it became durable', async () => {
    // The directory fsync after the rename can fail: the row is there, so answering 503 would send NAS
    // into a duplicate that nobody runs.
    const inner = await FileStore.open({ dir: await tempDir() });
    const lateFailure = new Proxy(inner, {
      get(target, prop, receiver) {
        if (prop === 'transact') {
          return async (...args: Parameters<Store['transact']>) => {
            await target.transact(...args);
            throw new ChronosError('store_unavailable', 'EIO: fsync of the jobs directory failed');
          };
        }
        const value = Reflect.get(target, prop, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const { f, bearer } = await setup({ store: lateFailure });
    await seedJob(inner, START, { id: 'landed' });
    f.clock.set(T1);
    const res = await f.fire(await bearer(), fireBody('landed', T1));
    expect(res.statusCode).toBe(202);
    expect((await inner.getLedgerEntry('landed', T1))?.run_id).toBe(res.json().run_id);
    await flushMicrotasks();
    expect(f.accepted).toHaveLength(1);
    await inner.close();
  });

  it('with a FileStore, the claim is durable: a new store on the same directory sees the row and the advanced job', async () => {
    const dir = await tempDir();
    const store = await FileStore.open({ dir });
    const { f, bearer } = await setup({ store });
    await seedJob(store, START, { id: 'durable' });
    f.clock.set(T1);
    const res = await f.fire(await bearer(), fireBody('durable', T1));
    expect(res.statusCode).toBe(202);
    await store.close();

    const reopened = await FileStore.open({ dir });
    expect((await reopened.getJob('durable'))?.next_run_at).toBe(T2);
    expect((await reopened.getJob('durable'))?.repeat.completed).toBe(1);
    expect(await reopened.getLedgerEntry('durable', T1)).toMatchObject({
      status: 'claimed',
      run_id: res.json().run_id,
    });
    await reopened.close();
  });
});
