import { createHmac } from 'node:crypto';

// Standard Webhooks signing (https://www.standardwebhooks.com), shared by alerts and http targets, and the
// form of its secrets: `whsec_` followed by the base64 of the key bytes (what the `standardwebhooks`
// package and most receivers take); loadConfig checks the form at start.

const PREFIX = 'whsec_';
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
/** The Standard Webhooks recommendation is 24 to 64 random bytes; fewer than 16 is refused outright. */
export const MIN_SECRET_BYTES = 16;

/** The key bytes of a `whsec_…` (or bare base64) secret. */
export function signingKey(secret: string): Buffer {
  const encoded = secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret;
  return Buffer.from(encoded, 'base64');
}

/** What is wrong with a signing secret, or null. Never echoes the value. */
export function signingSecretProblem(secret: string): string | null {
  const encoded = secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret;
  if (!BASE64.test(encoded) || encoded.length % 4 !== 0) {
    return 'must be a Standard Webhooks secret: whsec_ followed by base64 (e.g. whsec_$(openssl rand -base64 32))';
  }
  const bytes = Buffer.from(encoded, 'base64').length;
  if (bytes < MIN_SECRET_BYTES) {
    return `decodes to ${bytes} bytes; use at least ${MIN_SECRET_BYTES} random bytes (e.g. whsec_$(openssl rand -base64 32))`;
  }
  return null;
}

/**
 * Standard Webhooks signing (https://www.standardwebhooks.com): `webhook-signature` is
 * `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`. About fifteen lines, so no dependency; the tests
 * check it against the `standardwebhooks` package, as a receiver would verify it.
 */
export function webhookHeaders(
  key: Buffer | undefined,
  id: string,
  timestampSeconds: number,
  body: string,
): Record<string, string> {
  const headers: Record<string, string> = {
    'webhook-id': id,
    'webhook-timestamp': String(timestampSeconds),
  };
  if (key !== undefined) {
    const mac = createHmac('sha256', key).update(`${id}.${timestampSeconds}.${body}`).digest('base64');
    headers['webhook-signature'] = `v1,${mac}`;
  }
  return headers;
}
