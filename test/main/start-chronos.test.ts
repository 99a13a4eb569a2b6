import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Emulator, startEmulator } from '../../src/emulator/index.js';
import { buildJob } from '../../src/jobs/build.js';
import { type RunningChronos, startChronos } from '../../src/main.js';
import { formatFireAt } from '../../src/nas/nas.js';
import { createHandlerRegistry } from '../../src/run/targets/handler.js';
import { FileStore } from '../../src/store/file-store.js';
import { ManualClock } from '../helpers/manual-clock.js';
import {
  type NasProxy,
  startFrozenEmulator,
  startNasProxy,
  waitUntil,
} from '../helpers/scheduler-fixtures.js';

let dir: string;
let running: RunningChronos | undefined;
let emulator: Emulator | undefined;
let proxy: NasProxy | undefined;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chronos-main-'));
});

afterEach(async () => {
  await running?.shutdown('test over');
  running = undefined;
  proxy?.release();
  await proxy?.close();
  proxy = undefined;
  await emulator?.close();
  emulator = undefined;
  await rm(dir, { recursive: true, force: true });
});

/** Put a job in the data directory before the service opens it, as a previous process would have. */
async function seedJob(spec: Parameters<typeof buildJob>[0]): Promise<number> {
  const store = await FileStore.open({ dir });
  try {
    const job = await store.createJob(
      buildJob(spec, { now: Date.now(), defaultTimezone: 'UTC', allowCommands: false, source: 'api' }),
    );
    return job.next_run_at!;
  } finally {
    await store.close();
  }
}

function chronosEnv(nas: Emulator, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PORT: '0',
    LOG_LEVEL: 'silent',
    CHRONOS_DATA_DIR: dir,
    CHRONOS_PROVIDER: 'chronos',
    CHRONOS_PORTAL_URL: nas.url,
    CHRONOS_CALLBACK_URL: 'http://127.0.0.1:9',
    CHRONOS_EXPECTED_AUDIENCE: nas.audience,
    CHRONOS_JWKS_URL: nas.jwksUrl,
    CHRONOS_ACCESS_TOKEN: nas.agentToken,
    ...extra,
  };
}

describe('startChronos (in-process composition root)', () => {
  it('serves healthz in builtin mode and shuts down cleanly', async () => {
    const exits: number[] = [];
    running = await startChronos({
      env: { PORT: '0', LOG_LEVEL: 'silent', CHRONOS_PROVIDER: 'builtin', CHRONOS_DATA_DIR: dir },
      exit: (code) => exits.push(code),
      handleSignals: false,
    });
    expect(running.provider().name).toBe('builtin');
    const res = await fetch(`${running.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });

    await running.shutdown('test');
    running = undefined;
    expect(exits).toEqual([]);
  });

  it('starts its provider even while a client stalls a request forever', async () => {
    running = await startChronos({
      env: { PORT: '0', LOG_LEVEL: 'silent', CHRONOS_PROVIDER: 'builtin', CHRONOS_DATA_DIR: dir },
      exit: () => {},
      handleSignals: false,
    });
    const url = new URL(running.url);
    // A fire whose body never arrives: the request stays in flight.
    const socket = connect(Number(url.port), url.hostname);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write('POST /api/cron/fire HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"job');
    const current = running;
    try {
      await waitUntil(() => current.provider().status().lastReconcile !== null, 5_000);
    } finally {
      socket.destroy();
    }
  });

  it('shutdown waits for a running handler and leaves no timer behind once it ended', async () => {
    const clock = new ManualClock(Date.now());
    const store = await FileStore.open({ dir });
    await store.createJob(
      buildJob(
        { id: 'tick', schedule: 'every 1m', target: { type: 'handler', name: 'slow' } },
        { now: clock.now(), defaultTimezone: 'UTC', allowCommands: false, source: 'api' },
      ),
    );
    await store.close();
    const handlers = createHandlerRegistry();
    let release: (() => void) | undefined;
    handlers.register('slow', () => new Promise<void>((resolve) => (release = resolve)));
    running = await startChronos({
      env: { PORT: '0', LOG_LEVEL: 'silent', CHRONOS_PROVIDER: 'builtin', CHRONOS_DATA_DIR: dir },
      clock,
      handlers,
      exit: () => {},
      handleSignals: false,
    });
    const current = running;
    await waitUntil(() => current.provider().status().nextWakeAt !== null);
    await clock.advanceTo(current.provider().status().nextWakeAt!);
    await waitUntil(() => release !== undefined);

    let stopped = false;
    const shutdown = current.shutdown('test').then(() => {
      stopped = true;
    });
    await clock.advance(1_000);
    expect(stopped).toBe(false);
    const refused = await fetch(`${current.url}/api/cron/fire`, { method: 'POST' }).catch(() => undefined);
    expect(refused?.status).toBe(401); // authentication (row 2) is checked before the drain (row 5)

    release?.();
    await shutdown;
    running = undefined;
    expect(clock.pending()).toBe(0);
    const reopened = await FileStore.open({ dir });
    const [run] = await reopened.listRuns('tick');
    await reopened.close();
    expect(run).toMatchObject({ status: 'succeeded', trigger: 'builtin' });
  });

  it('shutdown waits for an accepted fire that is still arming its next occurrence before it runs', async () => {
    // A real clock: the fire token's iat/exp must be current. Nothing is due at NAS within the test.
    emulator = await startEmulator();
    const nas = await startNasProxy(emulator.url);
    proxy = nas;
    const fireAt = await seedJob({
      id: 'tick',
      schedule: 'every 30s',
      target: { type: 'handler', name: 'mark' },
    });
    let ran = false;
    const handlers = createHandlerRegistry();
    handlers.register('mark', () => {
      ran = true;
    });
    running = await startChronos({
      env: chronosEnv(emulator, { CHRONOS_PORTAL_URL: nas.url }),
      handlers,
      exit: () => {},
      handleSignals: false,
    });
    const current = running;
    await waitUntil(() => current.provider().settled());

    nas.hold = true;
    const token = await emulator.mintFireToken({ iss: nas.url, sub: 'tick' });
    const reply = await fetch(`${current.url}/api/cron/fire`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ job_id: 'tick', fire_at: formatFireAt(fireAt) }),
    });
    expect(reply.status).toBe(202);
    await waitUntil(() => nas.held() > 0); // the next occurrence is being armed; the run has not started

    let stopped = false;
    const shutdown = current.shutdown('test').then(() => {
      stopped = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(stopped).toBe(false);
    expect(ran).toBe(false);

    nas.release();
    await shutdown;
    running = undefined;
    expect(ran).toBe(true);
    const reopened = await FileStore.open({ dir });
    const [run] = await reopened.listRuns('tick');
    await reopened.close();
    expect(run).toMatchObject({ status: 'succeeded', trigger: 'nas' });
  });

  it('with the chronos provider arms the stored jobs at NAS, then exits 0 when idle', async () => {
    emulator = await startFrozenEmulator();
    const fireAt = await seedJob({
      id: 'nightly',
      schedule: '0 3 * * *',
      target: { type: 'handler', name: 'x' },
    });
    let exited: (code: number) => void = () => {};
    const exit = new Promise<number>((resolve) => (exited = resolve));
    running = await startChronos({
      env: chronosEnv(emulator, { CHRONOS_IDLE_EXIT_SECONDS: '1' }),
      exit: (code) => exited(code),
      handleSignals: false,
    });
    expect(running.provider().name).toBe('chronos');

    expect(await exit).toBe(0);
    expect(emulator.armed().map((a) => [a.job_id, a.fire_at])).toEqual([['nightly', formatFireAt(fireAt)]]);
    expect(running.provider().status()).toMatchObject({ armedCount: 1, desiredCount: 1, nasReachable: true });
    running = undefined; // already shut down by the idle exit
  });

  it('falls back to the builtin timer when NAS rejects the agent (invalid_client)', async () => {
    emulator = await startFrozenEmulator();
    emulator.faults.rejectAgent = true;
    await seedJob({ id: 'nightly', schedule: '0 3 * * *', target: { type: 'handler', name: 'x' } });
    running = await startChronos({
      env: chronosEnv(emulator, { CHRONOS_IDLE_EXIT_SECONDS: '1' }),
      exit: () => {},
      handleSignals: false,
    });
    const current = running;
    await waitUntil(() => current.provider().name === 'builtin');
    await waitUntil(() => current.provider().status().lastReconcile !== null);

    const status = current.provider().status();
    expect(status.reason).toMatch(/invalid_client/);
    expect(status.nextWakeAt).not.toBeNull();
    expect(emulator.provisions().map((p) => [p.kind, p.status])).toEqual([['list', 403]]);
  });
});
