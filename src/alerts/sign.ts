import { createHmac } from 'node:crypto';

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
