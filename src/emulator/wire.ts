import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

// The emulator's wire helpers: what a valid provision is, instants with offsets, and plain HTTP I/O.

const ISO_WITH_OFFSET = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const MAX_BODY_BYTES = 1024 * 1024;

export const NOT_JSON: unique symbol = Symbol('not-json');

/** Returns the reason a provision body is invalid, or undefined. */
export function validateProvision(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'body must be a JSON object';
  const b = body as Record<string, unknown>;
  if (typeof b.job_id !== 'string' || b.job_id.length === 0) return 'job_id is required';
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  if (b.job_id.length > 256 || /[\s\u0000-\u001f]/.test(b.job_id)) {
    return 'job_id must be at most 256 characters without whitespace';
  }
  if (typeof b.fire_at !== 'string' || b.fire_at.length === 0) return 'fire_at is required';
  if (!isIsoWithOffset(b.fire_at)) {
    return 'fire_at must be an ISO-8601 instant with an explicit offset, e.g. 2026-03-08T07:00:00Z';
  }
  if (typeof b.agent_callback_url !== 'string' || b.agent_callback_url.length === 0) {
    return 'agent_callback_url is required';
  }
  let callback: URL | undefined;
  try {
    callback = new URL(b.agent_callback_url);
  } catch {
    callback = undefined;
  }
  if (!callback || (callback.protocol !== 'http:' && callback.protocol !== 'https:')) {
    return 'agent_callback_url must be an http(s) URL';
  }
  if (typeof b.dedup_key !== 'string' || b.dedup_key.length === 0) return 'dedup_key is required';
  if (b.dedup_key !== `${b.job_id}:${b.fire_at}`) return 'dedup_key must equal "<job_id>:<fire_at>"';
  return undefined;
}

export function isIsoWithOffset(value: string): boolean {
  const m = ISO_WITH_OFFSET.exec(value);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const offset = m[8]!;
  if (offset !== 'Z' && (Number(offset.slice(1, 3)) > 23 || Number(offset.slice(4, 6)) > 59)) return false;
  if (month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59) return false;
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  return day >= 1 && day <= daysInMonth && Number.isFinite(Date.parse(value));
}

export function parseRetryAfter(header: string | string[] | undefined, nowMs: number): number | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined || value.trim() === '') return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const date = Date.parse(trimmed);
  return Number.isFinite(date) ? Math.max(0, date - nowMs) : undefined;
}

/** The same instant in UTC with a `+00:00` offset instead of `Z` (milliseconds only when not zero). */
export function formatUtcPlusZero(ms: number): string {
  const iso = new Date(ms).toISOString();
  return `${iso.endsWith('.000Z') ? iso.slice(0, -5) : iso.slice(0, -1)}+00:00`;
}

export function tryParseJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return NOT_JSON;
  }
}

export function readBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) tooBig = true;
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(tooBig ? undefined : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(payload),
    ...headers,
  });
  res.end(payload);
}

export function sendEmpty(res: ServerResponse, status: number): void {
  res.writeHead(status, { 'content-length': 0 });
  res.end();
}

export function urlHost(address: AddressInfo): string {
  if (address.address === '0.0.0.0' || address.address === '::') return '127.0.0.1';
  return address.family === 'IPv6' ? `[${address.address}]` : address.address;
}
