import { createServer, request as httpRequest, type Server } from 'node:http';

/*
 * A loopback HTTP load balancer for tests with several Chronos replicas: each request goes to the next
 * backend in turn (per request, not per connection: NAS keeps its connections open, so a TCP-level
 * balancer would pin every delivery to one replica). A backend that refuses the connection (a killed
 * replica) is skipped for that request, as a platform's proxy would; when every backend refuses, the
 * client gets 502 and NAS retries.
 */

export interface Backend {
  host: string;
  port: number;
}

export interface RoundRobinProxy {
  url: string;
  /** Which backend (index) answered each request, in order. */
  routed(): Array<{ backend: number; method: string; path: string; status: number }>;
  close(): Promise<void>;
}

/**
 * `order`: the backend indices to cycle through (default each once, in turn). NAS delivering every
 * occurrence twice with a strict alternation over two backends would send every first delivery to one and
 * every duplicate to the other; a cycle of odd length (e.g. [0, 1, 1]) spreads both over both.
 */
export async function startRoundRobinProxy(
  backends: Backend[],
  order: number[] = backends.map((_, i) => i),
): Promise<RoundRobinProxy> {
  let next = 0;
  const routed: Array<{ backend: number; method: string; path: string; status: number }> = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const first = order[next % order.length]!;
      next += 1;
      const attempt = (tried: number): void => {
        if (tried === backends.length) {
          routed.push({ backend: -1, method: req.method ?? '', path: req.url ?? '', status: 502 });
          res.writeHead(502, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: 'no backend reachable' }));
          return;
        }
        const index = (first + tried) % backends.length;
        const backend = backends[index]!;
        const out = httpRequest(
          {
            host: backend.host,
            port: backend.port,
            method: req.method,
            path: req.url,
            headers: { ...req.headers, connection: 'close' },
          },
          (up) => {
            routed.push({
              backend: index,
              method: req.method ?? '',
              path: req.url ?? '',
              status: up.statusCode ?? 0,
            });
            res.writeHead(up.statusCode ?? 502, up.headers);
            up.pipe(res);
          },
        );
        out.on('error', (err: NodeJS.ErrnoException) => {
          // Only a refused (or reset before any reply) connection moves on: the request never reached it.
          if (!res.headersSent && (err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET'))
            attempt(tried + 1);
          else res.destroy();
        });
        out.end(body);
      };
      attempt(0);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    routed: () => [...routed],
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
