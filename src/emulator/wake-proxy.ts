import { type ChildProcess, spawn } from 'node:child_process';
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { type AddressInfo, connect } from 'node:net';

export interface WakeProxyOptions {
  /** Where the started process listens. */
  target: { host: string; port: number };
  /** argv of the process to start on demand; spawned without a shell. */
  command: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Port of the proxy itself (default 0 = ephemeral). */
  listenPort?: number;
  /** Default 127.0.0.1. */
  listenHost?: string;
  /** How long a held request waits for the target port to accept connections (default 10 000 ms). */
  readyTimeoutMs?: number;
  /** TCP connect poll interval while waiting for readiness (default 10 ms). */
  pollIntervalMs?: number;
  /** Delay between SIGTERM and SIGKILL in close() (default 5 000 ms). */
  killGraceMs?: number;
  /**
   * 'inherit' passes the child's stdout/stderr straight through; 'pipe' hands them to onOutput
   * (or to log, one prefixed line each). Default: 'pipe' when onOutput or log is given, else 'inherit'.
   */
  stdio?: 'inherit' | 'pipe';
  onOutput?: (stream: 'stdout' | 'stderr', text: string) => void;
  log?: (line: string) => void;
}

export interface WakeStart {
  pid?: number;
  /** Epoch ms when the process was spawned. */
  startedAt: number;
  /** Epoch ms when the target port first accepted a TCP connection. */
  readyAt?: number;
  exitedAt?: number;
  exitCode?: number | null;
  signal?: NodeJS.Signals | null;
  /** Spawn failure or readiness timeout. */
  error?: string;
}

export interface WakeProxy {
  url: string;
  starts(): WakeStart[];
  running(): boolean;
  close(): Promise<void>;
}

interface Child {
  proc: ChildProcess;
  record: WakeStart;
  alive: boolean;
  ready: Promise<void>;
  exited: Promise<void>;
}

// Hop-by-hop headers describe one connection and must not be relayed to the next one.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'upgrade',
  'te',
]);

export async function startWakeProxy(opts: WakeProxyOptions): Promise<WakeProxy> {
  if (opts.command.length === 0) throw new Error('startWakeProxy: command must not be empty');
  const log = opts.log ?? (() => {});
  const readyTimeoutMs = opts.readyTimeoutMs ?? 10_000;
  const pollIntervalMs = opts.pollIntervalMs ?? 10;
  const killGraceMs = opts.killGraceMs ?? 5_000;
  const stdioMode = opts.stdio ?? (opts.onOutput || opts.log ? 'pipe' : 'inherit');
  const name = opts.command.join(' ');
  const starts: WakeStart[] = [];
  let current: Child | undefined;
  let closing = false;

  function output(stream: 'stdout' | 'stderr', chunk: Buffer): void {
    const text = chunk.toString('utf8');
    if (opts.onOutput) {
      opts.onOutput(stream, text);
      return;
    }
    for (const line of text.split('\n')) if (line.length > 0) log(`[child ${stream}] ${line}`);
  }

  function ensureStarted(): Child {
    if (current?.alive) return current;
    const record: WakeStart = { startedAt: Date.now() };
    starts.push(record);
    log(`wake     starting: ${name}`);
    const proc = spawn(opts.command[0]!, opts.command.slice(1), {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', stdioMode, stdioMode],
      shell: false,
    });
    if (proc.pid !== undefined) record.pid = proc.pid;
    proc.stdout?.on('data', (chunk: Buffer) => output('stdout', chunk));
    proc.stderr?.on('data', (chunk: Buffer) => output('stderr', chunk));
    let markExited!: () => void;
    const exited = new Promise<void>((resolve) => {
      markExited = resolve;
    });
    const child: Child = { proc, record, alive: true, ready: Promise.resolve(), exited };
    const onGone = (code: number | null, signal: NodeJS.Signals | null, error?: string): void => {
      if (!child.alive) return;
      child.alive = false;
      record.exitedAt = Date.now();
      record.exitCode = code;
      record.signal = signal;
      if (error) record.error = error;
      const how = error ? `failed: ${error}` : signal ? `killed by ${signal}` : `exited with code ${code}`;
      log(`wake     process ${how} after ${record.exitedAt - record.startedAt} ms`);
      markExited();
    };
    proc.once('exit', (code, signal) => onGone(code, signal));
    proc.once('error', (err) => onGone(null, null, err.message));
    child.ready = waitUntilListening(child);
    // Every waiter handles the rejection; this only stops an unobserved rejection from surfacing.
    child.ready.catch(() => {});
    current = child;
    return child;
  }

  async function waitUntilListening(child: Child): Promise<void> {
    const deadline = child.record.startedAt + readyTimeoutMs;
    for (;;) {
      if (!child.alive) throw new Error(`process exited before listening on port ${opts.target.port}`);
      if (await canConnect(opts.target.host, opts.target.port)) {
        child.record.readyAt = Date.now();
        log(`wake     ready in ${child.record.readyAt - child.record.startedAt} ms`);
        return;
      }
      if (Date.now() >= deadline) {
        child.record.error = `not listening after ${readyTimeoutMs} ms`;
        child.proc.kill('SIGTERM');
        throw new Error(child.record.error);
      }
      await new Promise((resolve) => setTimeout(resolve, pollIntervalMs));
    }
  }

  function forward(req: IncomingMessage, res: ServerResponse): void {
    const upstream = httpRequest(
      {
        host: opts.target.host,
        port: opts.target.port,
        method: req.method,
        path: req.url,
        headers: stripHopByHop(req.headers),
        // A pooled socket to a process that has since exited would fail the next request.
        agent: false,
      },
      (reply) => {
        res.writeHead(reply.statusCode ?? 502, stripHopByHop(reply.headers));
        reply.pipe(res);
        reply.on('error', () => res.destroy());
      },
    );
    upstream.on('error', (err) => {
      if (!res.headersSent) badGateway(res, `upstream error: ${err.message}`);
      else res.destroy(err);
    });
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  }

  const server = createServer((req, res) => {
    if (closing) return badGateway(res, 'wake proxy is closing');
    const child = ensureStarted();
    child.ready.then(
      () => forward(req, res),
      (err: Error) => badGateway(res, err.message),
    );
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.listenPort ?? 0, opts.listenHost ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  log(`wake     proxy ${url} → ${opts.target.host}:${opts.target.port} (starts: ${name})`);

  let closed: Promise<void> | undefined;
  return {
    url,
    starts: () => starts.map((s) => ({ ...s })),
    running: () => current?.alive ?? false,
    close() {
      closed ??= (async () => {
        closing = true;
        const child = current;
        if (child?.alive) {
          child.proc.kill('SIGTERM');
          const killer = setTimeout(() => {
            if (child.alive) child.proc.kill('SIGKILL');
          }, killGraceMs);
          await child.exited;
          clearTimeout(killer);
        }
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
      })();
      return closed;
    },
  };
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

function stripHopByHop(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const [key, value] of Object.entries(headers)) {
    if (!HOP_BY_HOP.has(key.toLowerCase())) out[key] = value;
  }
  return out;
}

function badGateway(res: ServerResponse, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: 'bad_gateway', message });
  res.writeHead(502, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}
