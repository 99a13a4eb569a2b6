import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { executeHttp } from '../../src/run/targets/http.js';
import { makeCtx, makeJob } from '../run/fixtures.js';
import { type Receiver, startReceiver } from './receiver.js';

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
let receiver: Receiver | undefined;
afterEach(async () => {
  await receiver?.close();
  receiver = undefined;
});

describe('http targets signed with CHRONOS_TARGET_SIGNING_SECRET', () => {
  it('carry Standard Webhooks headers a receiver verifies with the standardwebhooks package', async () => {
    receiver = await startReceiver(SECRET);
    const target = {
      type: 'http' as const,
      url: `${receiver.url}/hook`,
      method: 'POST' as const,
      // A job's own headers cannot stand in for the signature.
      headers: { 'webhook-signature': 'v1,forged', 'webhook-id': 'forged' },
      body: { hello: 'world' },
    };
    const result = await executeHttp(
      target,
      makeCtx({ job: makeJob({ target }), run_id: 'run-42', clock: undefined }),
      SECRET,
    );
    expect(result.ok).toBe(true);
    const [hit] = receiver.received();
    expect(hit?.refusal).toBeUndefined();
    expect(hit?.payload).toEqual({ hello: 'world' });
    expect(hit?.headers['webhook-id']).toBe('run-42');
    expect(hit?.headers['x-chronos-run']).toBe('run-42');
  });

  it('sign an empty body too (GET), and a receiver with another secret refuses them', async () => {
    receiver = await startReceiver(`whsec_${randomBytes(32).toString('base64')}`);
    const target = { type: 'http' as const, url: `${receiver.url}/get`, method: 'GET' as const, headers: {} };
    await executeHttp(target, makeCtx({ job: makeJob({ target }) }), SECRET);
    expect(receiver.received()[0]?.refusal).toBe('No matching signature found');
  });

  it('are not signed without a secret', async () => {
    receiver = await startReceiver(SECRET);
    const target = {
      type: 'http' as const,
      url: `${receiver.url}/plain`,
      method: 'POST' as const,
      headers: {},
    };
    await executeHttp(target, makeCtx({ job: makeJob({ target }) }));
    const [hit] = receiver.received();
    expect(hit?.headers['webhook-signature']).toBeUndefined();
    expect(hit?.headers['webhook-id']).toBeUndefined();
  });
});

describe('the receiver code in docs/jobs.md', () => {
  it('accepts what Chronos signs and refuses a changed body, another secret, an old timestamp', async () => {
    const { readFile } = await import('node:fs/promises');
    const { createHmac, timingSafeEqual } = await import('node:crypto');
    const { signingKey, webhookHeaders } = await import('../../src/signing.js');
    const doc = await readFile(new URL('../../docs/jobs.md', import.meta.url), 'utf8');
    const block = /```js\n(import \{ createHmac[\s\S]*?)```/.exec(doc)?.[1];
    expect(block).toBeDefined();
    const body = block!.replace(/^import .*\n/, '');
    type Check = (
      raw: string,
      headers: Record<string, string>,
      secret: string,
      tolerance?: number,
    ) => boolean;
    const fromChronos = new Function('createHmac', 'timingSafeEqual', `${body}\nreturn fromChronos;`)(
      createHmac,
      timingSafeEqual,
    ) as Check;
    const now = Math.floor(Date.now() / 1000);
    const raw = '{"type":"job.failed"}';
    const headers = webhookHeaders(signingKey(SECRET), 'msg_1', now, raw);
    expect(fromChronos(raw, headers, SECRET)).toBe(true);
    expect(fromChronos(`${raw} `, headers, SECRET)).toBe(false);
    expect(fromChronos(raw, headers, `whsec_${randomBytes(32).toString('base64')}`)).toBe(false);
    const old = webhookHeaders(signingKey(SECRET), 'msg_1', now - 3_600, raw);
    expect(fromChronos(raw, old, SECRET)).toBe(false);
    const unsigned = webhookHeaders(undefined, 'msg_1', now, raw);
    expect(fromChronos(raw, unsigned, SECRET)).toBe(false);
  });
});
