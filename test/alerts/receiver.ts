import { createServer, type IncomingMessage, type Server } from 'node:http';
import { Webhook } from 'standardwebhooks';

/** One request the receiver got, checked as a Standard Webhooks receiver checks it. */
export interface Received {
  path: string;
  headers: Record<string, string>;
  body: string;
  /** The parsed payload when the signature verified; undefined when it did not (see `refusal`). */
  payload: unknown;
  refusal: string | undefined;
  status: number;
}

export interface Receiver {
  url: string;
  received(): Received[];
  /** Statuses to answer with, in order; 200 once they run out. */
  answer(...statuses: number[]): void;
  /** Resolves once `count` requests arrived (real time, bounded by `timeoutMs`). */
  waitFor(count: number, timeoutMs?: number): Promise<Received[]>;
  close(): Promise<void>;
}

/** A loopback webhook receiver that verifies every request with the `standardwebhooks` package. */
export async function startReceiver(secret: string | undefined): Promise<Receiver> {
  const received: Received[] = [];
  const statuses: number[] = [];
  const waiters = new Set<() => void>();
  const verifier = secret === undefined ? undefined : new Webhook(secret);
  const server: Server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(req.headers)) headers[name] = String(value);
      let payload: unknown;
      let refusal: string | undefined;
      if (verifier === undefined) refusal = 'no secret to verify with';
      else {
        try {
          payload = verifier.verify(body, headers);
        } catch (err) {
          refusal = err instanceof Error ? err.message : String(err);
        }
      }
      const status = statuses.shift() ?? 200;
      received.push({ path: req.url ?? '/', headers, body, payload, refusal, status });
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(status < 300 ? 'ok' : 'no');
      for (const wake of [...waiters]) wake();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    received: () => [...received],
    answer: (...list) => statuses.push(...list),
    waitFor(count, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (received.length < count) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve([...received]);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`receiver: ${received.length} of ${count} requests within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    async close() {
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
    },
  };
}
