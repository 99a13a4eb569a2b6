import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { type Emulator, type FireAlg, startEmulator } from '../../src/emulator/index.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { hop1, provisionBody, startAgent } from './agent.js';

const open: Emulator[] = [];
afterEach(async () => {
  for (const emu of open.splice(0)) await emu.close();
});

async function start(opts: Parameters<typeof startEmulator>[0] = {}): Promise<Emulator> {
  const emu = await startEmulator(opts);
  open.push(emu);
  return emu;
}

async function fetchJwks(emu: Emulator): Promise<{ keys: Array<Record<string, unknown>> }> {
  const res = await fetch(emu.jwksUrl);
  expect(res.status).toBe(200);
  return (await res.json()) as { keys: Array<Record<string, unknown>> };
}

describe('JWKS and signing keys', () => {
  it('publishes public keys only, each with kid, alg and use=sig', async () => {
    const emu = await start();
    const { keys } = await fetchJwks(emu);
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatchObject({
      kty: 'EC',
      crv: 'P-256',
      alg: 'ES256',
      use: 'sig',
      kid: emu.currentKid(),
    });
    expect(keys[0]).not.toHaveProperty('d');
  });

  it('rotateKey signs with a new kid and keeps the old public key so earlier tokens still verify', async () => {
    const emu = await start();
    const oldKid = emu.currentKid();
    const oldToken = await emu.mintFireToken();
    const newKid = await emu.rotateKey();
    expect(newKid).not.toBe(oldKid);
    expect(emu.currentKid()).toBe(newKid);
    const jwks = await fetchJwks(emu);
    expect(jwks.keys.map((k) => k.kid)).toEqual([oldKid, newKid]);
    const newToken = await emu.mintFireToken();
    expect(decodeProtectedHeader(newToken).kid).toBe(newKid);
    const keySet = createLocalJWKSet(jwks as never);
    for (const token of [oldToken, newToken]) {
      const { payload } = await jwtVerify(token, keySet, { audience: emu.audience, issuer: emu.url });
      expect(payload.purpose).toBe('cron_fire');
    }
  });

  it('rotateKey({ keepKid: true }) replaces the key under the same kid: old tokens stop verifying', async () => {
    const emu = await start();
    const kid = emu.currentKid();
    const oldToken = await emu.mintFireToken();
    expect(await emu.rotateKey({ keepKid: true })).toBe(kid);
    expect(emu.currentKid()).toBe(kid);
    const jwks = await fetchJwks(emu);
    expect(jwks.keys.map((k) => k.kid)).toEqual([kid]);
    const keySet = createLocalJWKSet(jwks as never);
    const newToken = await emu.mintFireToken();
    expect(decodeProtectedHeader(newToken).kid).toBe(kid);
    await expect(
      jwtVerify(newToken, keySet, { audience: emu.audience, issuer: emu.url }),
    ).resolves.toBeDefined();
    await expect(jwtVerify(oldToken, keySet, { audience: emu.audience, issuer: emu.url })).rejects.toThrow(
      /signature verification failed/,
    );
  });

  it('fires after a rotation carry the new kid and verify against the live JWKS', async () => {
    const emu = await start();
    const agent = await startAgent(emu);
    try {
      await hop1(emu.url, 'provision', provisionBody('a', '2020-01-01T00:00:00Z', agent.url));
      await emu.waitFor(() => agent.fires.length === 1);
      const kid = await emu.rotateKey();
      await hop1(emu.url, 'provision', provisionBody('a', '2020-01-01T00:01:00Z', agent.url));
      await emu.waitFor(() => agent.fires.length === 2);
      expect(agent.fires.map((f) => f.verifyError)).toEqual([undefined, undefined]);
      expect(agent.fires[1]!.protectedHeader!.kid).toBe(kid);
    } finally {
      await agent.close();
    }
  });

  it('a rotated-out key leaves the JWKS after retiredKeyTtlMs', async () => {
    const clock = new ManualClock(Date.now());
    const emu = await start({ clock, retiredKeyTtlMs: 600_000 });
    const oldKid = emu.currentKid();
    const newKid = await emu.rotateKey();
    await clock.advance(599_000);
    expect((await fetchJwks(emu)).keys.map((k) => k.kid)).toEqual([oldKid, newKid]);
    await clock.advance(1_000);
    expect((await fetchJwks(emu)).keys.map((k) => k.kid)).toEqual([newKid]);
  });

  it.each<[FireAlg, Record<string, unknown>]>([
    ['ES256', { kty: 'EC', crv: 'P-256' }],
    ['RS256', { kty: 'RSA' }],
    ['EdDSA', { kty: 'OKP', crv: 'Ed25519' }],
  ])('%s mode: JWKS key type and delivered fires verify', async (alg, shape) => {
    const emu = await start({ alg, audience: 'agent:i-123' });
    const { keys } = await fetchJwks(emu);
    expect(keys[0]).toMatchObject({ ...shape, alg });
    const agent = await startAgent(emu);
    try {
      await hop1(emu.url, 'provision', provisionBody('a', '2020-01-01T00:00:00Z', agent.url));
      await emu.waitFor(() => emu.deliveries().length === 1);
      expect(agent.fires[0]!.verifyError).toBeUndefined();
      expect(agent.fires[0]!.protectedHeader!.alg).toBe(alg);
      expect(agent.fires[0]!.payload!.aud).toBe('agent:i-123');
      expect(emu.deliveries()[0]!.status).toBe(202);
    } finally {
      await agent.close();
    }
  });
});
