// Child processes and loopback helpers shared by the benchmarks that spawn the production build.
import { spawn } from 'node:child_process';
import { createServer, request } from 'node:http';

export function startRecorder() {
  const waiters = new Map();
  const server = createServer((req, res) => {
    const at = performance.now();
    req.resume();
    res.end('ok');
    waiters.get(req.url)?.(at);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        url: `http://127.0.0.1:${server.address().port}`,
        /** Resolves with the arrival time of the first request for `path`, or null after timeoutMs. */
        expect(path, timeoutMs) {
          return new Promise((done) => {
            const timer = setTimeout(() => {
              waiters.delete(path);
              done(null);
            }, timeoutMs);
            waiters.set(path, (at) => {
              clearTimeout(timer);
              waiters.delete(path);
              done(at);
            });
          });
        },
        close: () => new Promise((r) => server.close(r)),
      });
    });
  });
}

export function post(url, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'POST', agent: false, headers: { 'content-type': 'application/json', ...headers } },
      (res) => {
        const at = performance.now();
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode, at, text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Spawns `args`; `listening` resolves with the port the child announces on stdout (parsePort knows its
 * line format). Every stdout line is also offered to `onLine` with its arrival time.
 */
export function spawnServer(node, args, env, parsePort, onLine = () => {}) {
  const started = performance.now();
  const child = spawn(node, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (c) => {
    if (output.length < 64 * 1024) output += c;
  });
  const exited = new Promise((r) => child.once('exit', r));
  let announce;
  const listening = new Promise((resolve, reject) => {
    announce = resolve;
    exited.then((code) =>
      reject(new Error(`${args.join(' ')} exited (${code}) before listening: ${output}`)),
    );
  });
  let buffered = '';
  let port;
  child.stdout.setEncoding('utf8');
  // Always drained, so a chatty child never blocks on a full pipe.
  child.stdout.on('data', (chunk) => {
    const at = performance.now();
    buffered += chunk;
    let nl = buffered.indexOf('\n');
    while (nl >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (output.length < 64 * 1024) output += `${line}\n`;
      if (port === undefined) {
        port = parsePort(line);
        if (port !== undefined) announce({ port, at });
      }
      onLine(line, at);
      nl = buffered.indexOf('\n');
    }
  });
  return { child, started, listening, exited, output: () => output };
}

export async function stop(proc, signal = 'SIGKILL') {
  proc.child.kill(signal);
  await proc.exited;
}

/** Chronos announces its address in the pino line "chronos listening". */
export function chronosPort(line) {
  if (!line.includes('chronos listening')) return undefined;
  return /:(\d+)$/.exec(JSON.parse(line).url)?.[1];
}
