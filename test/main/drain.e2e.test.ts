import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type CryptoKey, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildJob } from '../../src/jobs/build.js';
import { FileStore } from '../../src/store/file-store.js';

const SERVE = resolve('dist/serve.js');
const ISSUER = 'http://nas.test';
const AUDIENCE = 'agent:drain-test';

interface LogLine {
  msg?: string;
  url?: string;
  status?: string;
  time?: number;
  [field: string]: unknown;
}

interface Child {
  proc: ChildProcess;
  lines: LogLine[];
  /** Resolves with the exit code and the instant the test saw the exit. */
  exited: Promise<{ code: number | null; at: number }>;
  /** Resolves with the first log line that matches. */
  line(predicate: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
}

let dir: string;
let child: Child | undefined;
let signing: { privateKey: CryptoKey; publicJwk: string };

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chronos-drain-'));
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  signing = { privateKey, publicJwk: JSON.stringify(await exportJWK(publicKey)) };
});

afterEach(async () => {
  if (child && child.proc.exitCode === null && child.proc.signalCode === null) {
    child.proc.kill('SIGKILL');
    await child.exited;
  }
  child = undefined;
  await rm(dir, { recursive: true, force: true });
});

/** A one-shot command job due `dueInMs` from now, written before the service starts. */
async function seedCommandJob(id: string, script: string, dueInMs: number): Promise<void> {
  const store = await FileStore.open({ dir });
  try {
    const now = Date.now();
    await store.createJob(
      buildJob(
        {
          id,
          schedule: `at ${new Date(now + dueInMs).toISOString()}`,
          target: { type: 'command', argv: [process.execPath, '-e', script] },
        },
        // Declared as if from the jobs file: command targets need no CHRONOS_ALLOW_COMMANDS then.
        { now, defaultTimezone: 'UTC', allowCommands: false, source: 'file' },
      ),
    );
  } finally {
    await store.close();
  }
}

function startServe(graceSeconds: number): Child {
  // No NODE_EXTRA_CA_CERTS: it costs every node start (the service and its command run) ~55 ms.
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    PORT: '0',
    // 'run started' and 'run finished', waited for below, are the run's steps: logged at debug.
    LOG_LEVEL: 'debug',
    CHRONOS_PROVIDER: 'builtin',
    CHRONOS_DATA_DIR: dir,
    CHRONOS_SHUTDOWN_GRACE_SECONDS: String(graceSeconds),
    // A key source, so that a well-signed fire passes authentication and meets the drain check.
    CHRONOS_FIRE_PUBLIC_KEY: signing.publicJwk,
    CHRONOS_PORTAL_URL: ISSUER,
    CHRONOS_EXPECTED_AUDIENCE: AUDIENCE,
  };
  const proc = spawn(process.execPath, [SERVE], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: LogLine[] = [];
  const watchers = new Set<() => void>();
  let buffered = '';
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (chunk: string) => {
    buffered += chunk;
    let newline = buffered.indexOf('\n');
    while (newline >= 0) {
      const text = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      try {
        lines.push(JSON.parse(text) as LogLine);
      } catch {
        lines.push({ msg: text });
      }
      newline = buffered.indexOf('\n');
    }
    for (const w of [...watchers]) w();
  });
  let stderr = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<{ code: number | null; at: number }>((done) => {
    proc.once('exit', (code) => {
      for (const w of [...watchers]) w();
      done({ code, at: Date.now() });
    });
  });
  return {
    proc,
    lines,
    exited,
    line(predicate, timeoutMs = 8_000) {
      return new Promise((resolveLine, reject) => {
        const check = (): void => {
          const found = lines.find(predicate);
          if (found) {
            watchers.delete(check);
            clearTimeout(timer);
            resolveLine(found);
          } else if (proc.exitCode !== null) {
            watchers.delete(check);
            clearTimeout(timer);
            reject(new Error(`service exited before the expected log line; stderr: ${stderr}`));
          }
        };
        const timer = setTimeout(() => {
          watchers.delete(check);
          reject(new Error(`log line not seen within ${timeoutMs} ms; stderr: ${stderr}`));
        }, timeoutMs);
        watchers.add(check);
        check();
      });
    },
  };
}

/** POST a correctly signed fire; a fresh connection each time so nothing keeps the server open. */
async function postFire(
  url: string,
  jobId: string,
): Promise<{ status: number; retryAfter: string | undefined }> {
  const token = await new SignJWT({ purpose: 'cron_fire' })
    .setProtectedHeader({ alg: 'ES256' })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt()
    .setExpirationTime('90s')
    .sign(signing.privateKey);
  const body = JSON.stringify({ job_id: jobId, fire_at: new Date().toISOString() });
  return new Promise((done, reject) => {
    const req = request(
      `${url}/api/cron/fire`,
      {
        method: 'POST',
        agent: false,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      },
      (res) => {
        res.resume();
        res.on('end', () => {
          const header = res.headers['retry-after'];
          done({ status: res.statusCode ?? 0, retryAfter: Array.isArray(header) ? header[0] : header });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function runsOf(jobId: string) {
  const store = await FileStore.open({ dir });
  try {
    return await store.listRuns(jobId);
  } finally {
    await store.close();
  }
}

describe('SIGTERM drain of the production bundle (dist/serve.js)', () => {
  it('refuses fires while draining, lets the running job finish, then exits 0', async () => {
    await seedCommandJob('slow', 'setTimeout(() => {}, 1500)', 800);
    child = startServe(5);
    const { url } = await child.line((l) => l.msg === 'chronos listening');
    await child.line((l) => l.msg === 'run started' && l.job_id === 'slow');

    const signalledAt = Date.now();
    child.proc.kill('SIGTERM');
    await child.line((l) => l.msg === 'shutting down');
    const refused = await postFire(String(url), 'slow');
    expect(refused.status).toBe(503);
    expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);

    const { code, at } = await child.exited;
    expect(code).toBe(0);
    const messages = child.lines.map((l) => l.msg);
    expect(messages.indexOf('shutting down')).toBeLessThan(messages.indexOf('run finished'));
    expect(messages.indexOf('run finished')).toBeLessThan(messages.indexOf('stopped'));
    expect(child.lines.find((l) => l.msg === 'run finished')?.status).toBe('succeeded');

    const [run] = await runsOf('slow');
    expect(run).toMatchObject({ status: 'succeeded', trigger: 'builtin' });
    expect(run!.finished_at!).toBeLessThanOrEqual(at);
    expect(at - signalledAt).toBeLessThan(5_000);
  });

  it('aborts a run that outlasts the grace period, records it failed, and exits 0', async () => {
    await seedCommandJob('stuck', 'setTimeout(() => {}, 20000)', 800);
    child = startServe(1);
    await child.line((l) => l.msg === 'run started' && l.job_id === 'stuck');

    const signalledAt = Date.now();
    child.proc.kill('SIGTERM');
    const { code, at } = await child.exited;

    expect(code).toBe(0);
    expect(at - signalledAt).toBeGreaterThanOrEqual(1_000);
    expect(at - signalledAt).toBeLessThan(4_000);
    expect(child.lines.some((l) => l.msg === 'grace period over; aborting runs still going')).toBe(true);
    const [run] = await runsOf('stuck');
    expect(run?.status).toBe('failed');
    expect(run?.error).toMatch(/aborted/);
    expect(run!.finished_at!).toBeLessThanOrEqual(at);
  });
});
