import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, startWakeProxy, type WakeProxy } from '../../src/emulator/index.js';
import { freePort } from '../helpers/ports.js';
import { hop1, provisionBody } from './agent.js';

// A stand-in for Chronos: listens after an optional delay, echoes the request, and exits by itself
// after answering a request whose query has exit=1.
const CHILD = `
import http from 'node:http';
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = JSON.stringify({
      pid: process.pid,
      method: req.method,
      url: req.url,
      body: Buffer.concat(chunks).toString('utf8'),
      auth: req.headers.authorization ?? null,
    });
    const status = req.url.includes('status=202') ? 202 : 200;
    res.writeHead(status, { 'content-type': 'application/json', 'x-child': 'yes' });
    res.end(body, () => {
      if (req.url.includes('exit=1')) server.close(() => process.exit(0));
    });
  });
});
if (process.env.EXIT_BEFORE_LISTEN) process.exit(3);
if (!process.env.NEVER_LISTEN) {
  setTimeout(() => server.listen(Number(process.env.PORT), '127.0.0.1'), Number(process.env.LISTEN_DELAY_MS ?? 0));
} else {
  setInterval(() => {}, 1000);
}
process.on('SIGTERM', () => process.exit(143));
`;

let dir: string;
let script: string;
const proxies: WakeProxy[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chronos-wake-'));
  script = join(dir, 'child.mjs');
  await writeFile(script, CHILD);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
afterEach(async () => {
  for (const proxy of proxies.splice(0)) await proxy.close();
});

function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  // NODE_EXTRA_CA_CERTS adds ~55 ms to every node start on this machine.
  const { NODE_EXTRA_CA_CERTS: _ignored, ...env } = process.env;
  return { ...env, ...extra };
}

async function start(extraEnv: Record<string, string> = {}, readyTimeoutMs = 5000) {
  const port = await freePort();
  const output: string[] = [];
  const proxy = await startWakeProxy({
    target: { host: '127.0.0.1', port },
    command: [process.execPath, script],
    env: childEnv({ PORT: String(port), ...extraEnv }),
    readyTimeoutMs,
    stdio: 'pipe',
    onOutput: (_stream, text) => output.push(text),
  });
  proxies.push(proxy);
  return proxy;
}

async function until(predicate: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('wake proxy', () => {
  it('starts the process on the first request, holds it until the port accepts, then forwards it', async () => {
    const proxy = await start({ LISTEN_DELAY_MS: '100' });
    expect(proxy.running()).toBe(false);
    expect(proxy.starts()).toEqual([]);
    const res = await fetch(`${proxy.url}/api/cron/fire?x=1`, {
      method: 'POST',
      headers: { authorization: 'Bearer abc', 'content-type': 'application/json' },
      body: '{"job_id":"a"}',
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-child')).toBe('yes');
    const echoed = (await res.json()) as Record<string, unknown>;
    expect(echoed).toMatchObject({
      method: 'POST',
      url: '/api/cron/fire?x=1',
      body: '{"job_id":"a"}',
      auth: 'Bearer abc',
    });
    expect(proxy.running()).toBe(true);
    const [first] = proxy.starts();
    expect(first).toMatchObject({
      pid: echoed.pid,
      startedAt: expect.any(Number),
      readyAt: expect.any(Number),
    });
    expect(first!.readyAt! - first!.startedAt).toBeGreaterThanOrEqual(100);
  });

  it('concurrent requests share one start', async () => {
    const proxy = await start({ LISTEN_DELAY_MS: '50' });
    const replies = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        fetch(`${proxy.url}/r${i}`).then((r) => r.json() as Promise<{ pid: number }>),
      ),
    );
    expect(new Set(replies.map((r) => r.pid)).size).toBe(1);
    expect(proxy.starts()).toHaveLength(1);
  });

  it('when the process exits by itself, the next request starts it again; starts() records both', async () => {
    const proxy = await start();
    const first = (await (await fetch(`${proxy.url}/a?exit=1`)).json()) as { pid: number };
    await until(() => !proxy.running());
    expect(proxy.starts()[0]).toMatchObject({ pid: first.pid, exitCode: 0, exitedAt: expect.any(Number) });
    const second = (await (await fetch(`${proxy.url}/b?status=202`)).json()) as { pid: number };
    expect(second.pid).not.toBe(first.pid);
    expect(proxy.starts()).toHaveLength(2);
    expect(proxy.starts()[1]).toMatchObject({ pid: second.pid });
    expect(proxy.starts()[1]!.exitedAt).toBeUndefined();
    expect(proxy.running()).toBe(true);
  });

  it('answers 502 when the process exits before it listens', async () => {
    const proxy = await start({ EXIT_BEFORE_LISTEN: '1' });
    const res = await fetch(`${proxy.url}/x`);
    expect(res.status).toBe(502);
    expect(((await res.json()) as { message: string }).message).toMatch(/exited before listening/);
    await until(() => proxy.starts()[0]?.exitCode === 3);
  });

  it('answers 502 when the process is not listening within readyTimeoutMs, and stops it', async () => {
    const proxy = await start({ NEVER_LISTEN: '1' }, 200);
    const res = await fetch(`${proxy.url}/x`);
    expect(res.status).toBe(502);
    expect(((await res.json()) as { message: string }).message).toMatch(/not listening after 200 ms/);
    await until(() => !proxy.running());
    const record = proxy.starts()[0]!;
    expect(record.error).toBe('not listening after 200 ms');
    // On a loaded machine SIGTERM can land before the child has installed its handler.
    expect(record.exitCode === 143 || record.signal === 'SIGTERM').toBe(true);
  });

  it('answers 502 when the command cannot be spawned', async () => {
    const proxy = await startWakeProxy({
      target: { host: '127.0.0.1', port: await freePort() },
      command: [join(dir, 'does-not-exist')],
      log: () => {},
    });
    proxies.push(proxy);
    const res = await fetch(`${proxy.url}/x`);
    expect(res.status).toBe(502);
    expect(proxy.starts()[0]!.error).toMatch(/ENOENT/);
  });

  it('close() stops a running process with SIGTERM', async () => {
    const proxy = await start();
    await fetch(`${proxy.url}/x`);
    expect(proxy.running()).toBe(true);
    await proxy.close();
    expect(proxy.running()).toBe(false);
    expect(proxy.starts()[0]!.exitCode).toBe(143);
  });

  it('the emulator delivers a fire to a stopped process through the proxy (deliverVia)', async () => {
    const proxy = await start();
    const emu = await startEmulator({
      deliverVia: (fireUrl) => proxy.url + new URL(fireUrl).pathname + '?status=202&exit=1',
    });
    try {
      await hop1(emu.url, 'provision', provisionBody('a', '2020-01-01T00:00:00Z', 'https://chronos.example'));
      await emu.waitFor(() => emu.armed().length === 0);
      expect(emu.deliveries()[0]).toMatchObject({
        status: 202,
        body: { method: 'POST', url: '/api/cron/fire?status=202&exit=1' },
      });
      await until(() => !proxy.running());
      expect(proxy.starts()).toHaveLength(1);
      expect(proxy.starts()[0]!.exitCode).toBe(0);
    } finally {
      await emu.close();
    }
  });
});
