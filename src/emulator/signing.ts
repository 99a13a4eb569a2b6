import { randomBytes } from 'node:crypto';
import { type CryptoKey, calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import type { EmulatorContext } from './context.js';
import type { FireAlg, FireTokenClaims } from './types.js';

interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
  /** Emulator-clock ms after which a rotated-out key leaves the JWKS. */
  retireAfter?: number;
}

/** The emulator's fire-token keys: the newest signs, rotated-out ones stay published for a while. */
export class SigningKeys {
  private constructor(
    private readonly ctx: EmulatorContext,
    readonly alg: FireAlg,
    private readonly retiredKeyTtlMs: number,
    private readonly keys: SigningKey[],
  ) {}

  static async create(ctx: EmulatorContext, alg: FireAlg, retiredKeyTtlMs: number): Promise<SigningKeys> {
    return new SigningKeys(ctx, alg, retiredKeyTtlMs, [await newSigningKey(alg)]);
  }

  currentKid(): string {
    return this.keys[this.keys.length - 1]!.kid;
  }

  /** Signs a fire token; overrides replace default claims and `undefined` removes one. */
  async sign(base: { aud: string; iss: string }, overrides: Partial<FireTokenClaims> = {}): Promise<string> {
    const key = this.keys[this.keys.length - 1]!;
    const iat = Math.floor(this.ctx.now() / 1000);
    const claims: Record<string, unknown> = {
      aud: base.aud,
      iss: base.iss,
      purpose: 'cron_fire',
      iat,
      exp: iat + 90,
      jti: randomBytes(16).toString('base64url'),
      sub: '',
      ...overrides,
    };
    for (const name of Object.keys(claims)) if (claims[name] === undefined) delete claims[name];
    return new SignJWT(claims)
      .setProtectedHeader({ alg: this.alg, kid: key.kid, typ: 'JWT' })
      .sign(key.privateKey);
  }

  /**
   * Make a new key the signing key; the old public key stays in the JWKS for retiredKeyTtlMs. With
   * `keepKid`, the new key takes the current key's kid and replaces it in the JWKS at once (a NAS that
   * rotates key material under a stable kid): tokens signed with the old key stop verifying.
   */
  async rotate(options: { keepKid?: boolean } = {}): Promise<string> {
    if (options.keepKid) {
      const current = this.keys[this.keys.length - 1]!;
      const replacement = await newSigningKey(this.alg, current.kid);
      this.keys[this.keys.length - 1] = replacement;
      this.ctx.log(`rotate   signing key replaced under the same kid ${replacement.kid}`);
      this.ctx.notify();
      return replacement.kid;
    }
    const next = await newSigningKey(this.alg);
    const retireAfter = this.ctx.now() + this.retiredKeyTtlMs;
    for (const key of this.keys) key.retireAfter ??= retireAfter;
    this.keys.push(next);
    this.ctx.log(`rotate   signing key is now ${next.kid}`);
    this.ctx.notify();
    return next.kid;
  }

  /** The published key set; retired keys past their time are dropped here. */
  jwks(): { keys: JWK[] } {
    const t = this.ctx.now();
    for (let i = this.keys.length - 2; i >= 0; i--) {
      const key = this.keys[i]!;
      if (key.retireAfter !== undefined && key.retireAfter <= t) this.keys.splice(i, 1);
    }
    return { keys: this.keys.map((k) => ({ ...k.publicJwk })) };
  }
}

async function newSigningKey(alg: FireAlg, keepKid?: string): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  const kid = keepKid ?? (await calculateJwkThumbprint(jwk));
  return { kid, privateKey, publicJwk: { ...jwk, kid, alg, use: 'sig' } };
}
