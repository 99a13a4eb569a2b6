import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, type JWTHeaderParameters, type JWTPayload, jwtVerify } from 'jose';
import { errorMessage } from '../../src/errors.js';

export interface ReceivedFire {
  body: { job_id?: string; fire_at?: string };
  headers: IncomingHttpHeaders;
  payload?: JWTPayload;
  protectedHeader?: JWTHeaderParameters;
  verifyError?: string;
  receivedAt: number;
  path: string;
}

export interface AgentReply {
  status: number;
  headers?: Record<string, string>;
  body?: unknown;
}

export type AgentHandler = (fire: ReceivedFire, index: number) => AgentReply | Promise<AgentReply> | 'hang';

/**
 * A real loopback "Chronos" for the emulator to deliver to: it verifies every fire JWT against the
 * emulator's JWKS exactly as Chronos would (aud, iss, purpose) and records what arrived.
 */
export async function startAgent(issuer: { jwksUrl: string; url: string; audience: string }) {
  const jwks = createRemoteJWKSet(new URL(issuer.jwksUrl), { cooldownDuration: 0 });
  const fires: ReceivedFire[] = [];
  let handler: AgentHandler = () => ({ status: 202, body: { status: 'accepted' } });
  const hanging = new Set<() => void>();

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const fire: ReceivedFire = {
        body: JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'),
        headers: req.headers,
        receivedAt: Date.now(),
        path: req.url ?? '',
      };
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
      try {
        const verified = await jwtVerify(token, jwks, { audience: issuer.audience, issuer: issuer.url });
        if (verified.payload.purpose !== 'cron_fire') throw new Error('purpose is not cron_fire');
        fire.payload = verified.payload;
        fire.protectedHeader = verified.protectedHeader;
      } catch (err) {
        fire.verifyError = errorMessage(err);
      }
      fires.push(fire);
      const reply = fire.verifyError
        ? { status: 401, body: { error: 'invalid fire token' } }
        : await handler(fire, fires.length - 1);
      if (reply === 'hang') {
        hanging.add(() => res.destroy());
        return;
      }
      const payload = reply.body === undefined ? '' : JSON.stringify(reply.body);
      res.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers });
      res.end(payload);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    fires,
    setHandler(next: AgentHandler) {
      handler = next;
    },
    async close() {
      for (const release of hanging) release();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export type Agent = Awaited<ReturnType<typeof startAgent>>;

/** An ISO instant `ms` from now; millisecond precision keeps the real delays in these tests short. */
export function isoIn(ms: number): string {
  return new Date(Date.now() + ms).toISOString();
}

export async function hop1(
  emulatorUrl: string,
  call: 'provision' | 'cancel' | 'list',
  body?: unknown,
  token = 'dev-agent-token',
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(`${emulatorUrl}/api/agent-cron/${call}`, {
    method: call === 'list' ? 'GET' : 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      'user-agent': 'chronos-test',
    },
    ...(call === 'list' ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  // An empty reply (the emptyProvisionReply fault) reads as {}.
  const text = await res.text();
  const reply = (text === '' ? {} : JSON.parse(text)) as Record<string, unknown>;
  return { status: res.status, body: reply, headers: res.headers };
}

export function provisionBody(jobId: string, fireAt: string, callback: string) {
  return { job_id: jobId, fire_at: fireAt, agent_callback_url: callback, dedup_key: `${jobId}:${fireAt}` };
}
