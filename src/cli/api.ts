import { readFile } from 'node:fs/promises';
import { errorMessage } from '../errors.js';
import type { CliIo } from './common.js';

/** One reply of the admin API: its status, its body parsed when it is JSON, and its text. */
export interface ApiReply {
  status: number;
  body: unknown;
  text: string;
}

/** The admin API of a running Chronos, as `chronos jobs` and `chronos status` call it. */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string,
  ) {}

  async call(method: string, path: string, body?: unknown): Promise<ApiReply> {
    const url = `${this.baseUrl}${path}`;
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new Error(
        `cannot reach Chronos at ${this.baseUrl}: ${cause?.code ?? cause?.message ?? errorMessage(err)}`,
      );
    }
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text === '' ? null : JSON.parse(text);
    } catch {
      // Not JSON (a proxy's error page): shown as text.
    }
    return { status: response.status, body: parsed, text };
  }
}

/**
 * The client for `--url` (default http://127.0.0.1:$PORT) with the token from CHRONOS_ADMIN_TOKEN or the
 * file CHRONOS_ADMIN_TOKEN_FILE names; a string is the message to print when there is no usable token.
 */
export async function adminClient(
  io: CliIo,
  command: string,
  url: string | undefined,
): Promise<ApiClient | string> {
  let token = io.env['CHRONOS_ADMIN_TOKEN'];
  const tokenFile = io.env['CHRONOS_ADMIN_TOKEN_FILE'];
  if (!token && tokenFile) {
    try {
      token = (await readFile(tokenFile, 'utf8')).trim();
    } catch (err) {
      return `chronos ${command}: cannot read CHRONOS_ADMIN_TOKEN_FILE ${tokenFile}: ${errorMessage(err)}`;
    }
    if (!token) return `chronos ${command}: CHRONOS_ADMIN_TOKEN_FILE ${tokenFile} is empty`;
  }
  if (!token)
    return `chronos ${command}: set CHRONOS_ADMIN_TOKEN (or CHRONOS_ADMIN_TOKEN_FILE) to the admin token of the server`;
  const baseUrl = (url ?? `http://127.0.0.1:${io.env['PORT'] || '8080'}`).replace(/\/+$/, '');
  return new ApiClient(baseUrl, token);
}

/** An error reply in words: its code and message, and each field path a rejected spec names. */
export function describeError(reply: ApiReply): string {
  const body = reply.body as {
    error?: string;
    message?: string;
    problems?: Array<{ path: string; message: string }>;
  };
  if (typeof body !== 'object' || body === null) return `HTTP ${reply.status}: ${reply.text.slice(0, 500)}`;
  const lines = [`${body.error ?? `HTTP ${reply.status}`}: ${body.message ?? ''}`];
  if (reply.status === 404 && body.error === 'not_found') {
    lines.push('  (the admin API answers 404 when the server has no CHRONOS_ADMIN_TOKEN set)');
  }
  for (const p of body.problems ?? []) lines.push(`  ${p.path || '(body)'}: ${p.message}`);
  return lines.join('\n');
}
