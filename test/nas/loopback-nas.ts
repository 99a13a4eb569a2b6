import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TimerHandle } from '../../src/clock.js';
import { ManualClock } from '../helpers/manual-clock.js';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** Client-side port of the connection: equal ports mean a reused keep-alive socket. */
  remotePort: number | undefined;
}

/** What the server does with one request: a canned reply, or full control (hang, rewrite a file first). */
export type Responder =
  | { status: number; json?: unknown; text?: string; headers?: Record<string, string> }
  | ((req: RecordedRequest, res: ServerResponse) => void | Promise<void>);

/**
 * A real HTTP server on a loopback port that records every request and answers from a queue of
 * responders (then from `fallback`). Stands in for NAS at the socket level, so headers, bodies,
 * keep-alive and connection errors are the real ones.
 */
export class LoopbackNas {
  readonly requests: RecordedRequest[] = [];
  fallback: Responder = { status: 200, json: {} };
  private readonly queue: Responder[] = [];
  private waiters: Array<{ n: number; resolve: (req: RecordedRequest) => void }> = [];

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(): Promise<LoopbackNas> {
    let nas: LoopbackNas | undefined;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        void nas?.handle(
          {
            method: req.method ?? '',
            url: req.url ?? '',
            headers: req.headers,
            body: Buffer.concat(chunks).toString(),
            remotePort: req.socket.remotePort,
          },
          res,
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    nas = new LoopbackNas(server, (server.address() as AddressInfo).port);
    return nas;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Answer the next requests with these, in order. */
  reply(...responders: Responder[]): this {
    this.queue.push(...responders);
    return this;
  }

  /** Resolves once the server has received its n-th request (0-based). */
  nthRequest(n: number): Promise<RecordedRequest> {
    const seen = this.requests[n];
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ n, resolve }));
  }

  bodies(): unknown[] {
    return this.requests.map((r) => (r.body === '' ? undefined : JSON.parse(r.body)));
  }

  private async handle(req: RecordedRequest, res: ServerResponse): Promise<void> {
    this.requests.push(req);
    const due = this.waiters.filter((w) => w.n < this.requests.length);
    this.waiters = this.waiters.filter((w) => w.n >= this.requests.length);
    for (const waiter of due) waiter.resolve(this.requests[waiter.n] ?? req);
    const responder = this.queue.shift() ?? this.fallback;
    if (typeof responder === 'function') {
      await responder(req, res);
      return;
    }
    const body = responder.json !== undefined ? JSON.stringify(responder.json) : (responder.text ?? '');
    res.writeHead(responder.status, {
      'content-type': responder.json !== undefined ? 'application/json' : 'text/plain',
      ...responder.headers,
    });
    res.end(body);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A port that was free a moment ago and now refuses connections. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * A ManualClock that reports every sleep requested of it. With `auto`, each timer is run as soon as
 * it is set (time jumps forward by its delay), so retries proceed without any real waiting while the
 * test still sees exactly which delays were asked for.
 */
export class ObservedClock extends ManualClock {
  readonly sleeps: number[] = [];
  private readonly sleepWaiters: Array<(ms: number) => void> = [];

  constructor(private readonly auto = false) {
    super('2026-03-08T06:00:00Z');
  }

  override setTimeout(fn: () => void, ms: number): TimerHandle {
    const handle = super.setTimeout(fn, ms);
    this.sleeps.push(ms);
    for (const waiter of this.sleepWaiters.splice(0)) waiter(ms);
    if (this.auto) setImmediate(() => void this.advance(ms));
    return handle;
  }

  /** Resolves with the delay of the next timer set. */
  nextSleep(): Promise<number> {
    return new Promise((resolve) => this.sleepWaiters.push(resolve));
  }
}
