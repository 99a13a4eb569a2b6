/*
 * Floods and slow clients against the production bundle (docs/operations.md, "What Chronos does when…"):
 *   - junk fires from the address NAS delivers from, while the emulator delivers with a bounded retry
 *     budget: every occurrence still runs, exactly once;
 *   - a client that stalls its headers or its body: closed within seconds, and idle exit still happens;
 *   - a Chronos with a low descriptor limit under a connection flood: no accepted occurrence is lost.
 * Each flood is bounded in time and count and aimed only at 127.0.0.1.
 */
import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { type ChronosLog, e2eStacks, idleExits, type Stack } from '../helpers/e2e.js';

const startStack = e2eStacks();

/** Bytes Chronos wrote to stdout for these lines (pino writes one JSON line each). */
function logBytes(lines: ChronosLog[]): number {
  return lines.reduce((sum, line) => sum + Buffer.byteLength(JSON.stringify(line)) + 1, 0);
}

/** Sends junk fires (no token, garbage tokens) with `workers` concurrent loops until `until`. */
async function junkFlood(url: string, until: number, workers: number): Promise<number> {
  let sent = 0;
  const junk = ['', 'Bearer garbage', 'Bearer a.b.c', 'Basic Zm9vOmJhcg=='];
  const loop = async (w: number) => {
    while (Date.now() < until) {
      const authorization = junk[(sent + w) % junk.length]!;
      try {
        const res = await fetch(`${url}/api/cron/fire`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
          body: JSON.stringify({ job_id: 'a', fire_at: new Date().toISOString() }),
        });
        await res.arrayBuffer();
      } catch {
        // A refused or reset connection is part of a flood.
      }
      sent += 1;
    }
  };
  await Promise.all(Array.from({ length: workers }, (_, w) => loop(w)));
  return sent;
}

/** Runs per occurrence of a job, from its history on disk. */
async function runsPerOccurrence(s: Stack, jobId: string): Promise<Map<number, string[]>> {
  const byOccurrence = new Map<number, string[]>();
  for (const run of await s.runs(jobId)) {
    byOccurrence.set(run.fire_at, [...(byOccurrence.get(run.fire_at) ?? []), run.status]);
  }
  return byOccurrence;
}

describe('e2e: floods and slow clients', () => {
  it('junk from the address NAS delivers from never starves NAS: every occurrence runs exactly once', async () => {
    const jobs = ['a', 'b', 'c'];
    const s = await startStack({
      // `allow`: under the flood's load a run may outlast the 2 s period; a skip is not what is tested here.
      jobs: (recorder) =>
        jobs.map((id) => ({
          id,
          schedule: 'every 2s',
          concurrency: 'allow' as const,
          target: { type: 'http' as const, url: `${recorder}/hit/${id}` },
        })),
      idleExitSeconds: 0,
      // A small verified-fire budget, so that the bounded flood below is far past it.
      env: { CHRONOS_FIRE_RATE_LIMIT: '10' },
      emulator: { retry: { maxAttempts: 5, baseDelayMs: 250, maxDelayMs: 1_000 } },
    });
    await s.wake();
    await s.waitFor('every job armed', () => jobs.every((id) => s.nas.armed().some((a) => a.job_id === id)));

    const floodStart = Date.now();
    const floodEnd = floodStart + 7_000;
    // Straight at the process (as a proxy in front of it would deliver): the same 127.0.0.1 the wake proxy,
    // and so the emulator, reaches it from.
    const sent = await junkFlood(`http://${s.direct.host}:${s.direct.port}`, floodEnd, 16);
    const floodLogs = s
      .logs()
      .filter((l) => typeof l['time'] === 'string' && Date.parse(l['time']) <= floodEnd);

    // Deliveries of occurrences due during the flood have settled (or been given up) once the last is in.
    await s.waitFor(
      'each job fired after the flood',
      () =>
        jobs.every((id) =>
          s.nas.deliveries().some((d) => d.job_id === id && Date.parse(d.at) > floodEnd + 500),
        ),
      20_000,
    );
    const during = s.nas.deliveries().filter((d) => {
      const at = Date.parse(d.at);
      return at >= floodStart && at <= floodEnd;
    });
    const figures = {
      junk_sent: sent,
      deliveries_during_flood: during.length,
      answered_429: during.filter((d) => d.status === 429).length,
      given_up: (s.transcript().match(/\] give up /g) ?? []).length,
      refusal_log_lines: floodLogs.filter((l) => l.msg.startsWith('fire refus')).length,
      refusal_log_bytes: logBytes(floodLogs.filter((l) => l.msg.startsWith('fire refus'))),
      log_bytes_during_flood: logBytes(floodLogs),
    };
    console.log('junk flood figures', JSON.stringify(figures));
    expect(sent).toBeGreaterThan(200);
    expect(during.length).toBeGreaterThan(0);
    expect(figures.answered_429).toBe(0);
    expect(figures.given_up).toBe(0);
    // A few lines per 10 s interval, not one per request.
    expect(figures.refusal_log_lines).toBeLessThan(20);

    // Every occurrence NAS delivered during the flood was accepted and ran exactly once.
    for (const id of jobs) {
      const delivered = new Set(during.filter((d) => d.job_id === id).map((d) => Date.parse(d.fire_at)));
      expect(delivered.size).toBeGreaterThanOrEqual(2);
      await s.waitFor(`${id}: every delivered occurrence ran`, async () => {
        const runs = await runsPerOccurrence(s, id);
        return [...delivered].every((at) => runs.get(at)?.[0] === 'succeeded');
      });
      const runs = await runsPerOccurrence(s, id);
      for (const at of delivered) expect(runs.get(at)).toEqual(['succeeded']);
      const hits = s.recorder.hitsFor(id).map((h) => h.fireAt);
      expect(new Set(hits).size).toBe(hits.length);
    }
  }, 60_000);

  it('closes a stalled body and stalled headers within seconds, and still exits when idle', async () => {
    const s = await startStack({
      jobs: [{ id: 'hourly', schedule: 'every 1h', target: { type: 'handler', name: 'noop' } }],
      idleExitSeconds: 1,
    });
    await s.wake();
    await s.waitFor('armed', () => s.nas.armed().some((a) => a.job_id === 'hourly'));

    const stalled = (request: string) =>
      new Promise<{ socket: Socket; closed: Promise<number> }>((resolve, reject) => {
        const socket = connect(s.direct, () => {
          socket.write(request);
          const opened = Date.now();
          resolve({ socket, closed: new Promise((r) => socket.once('close', () => r(Date.now() - opened))) });
        });
        socket.on('error', () => {});
        socket.once('error', reject);
      });
    const started = Date.now();
    const body = await stalled(
      'POST /api/cron/fire HTTP/1.1\r\nHost: chronos\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"job_id":',
    );
    const headers = await stalled('POST /api/cron/fire HTTP/1.1\r\nHost: chronos\r\nContent-Le');
    try {
      const [bodyClosedMs, headersClosedMs] = await Promise.race([
        Promise.all([body.closed, headers.closed]),
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error('a stalled connection was still open after 20 s')), 20_000),
        ),
      ]);
      await s.waitFor('idle exit', () => idleExits(s.proxy) >= 1, 20_000);
      const exitedAfterMs = (s.proxy.starts()[0]?.exitedAt ?? Number.NaN) - started;
      console.log(
        'stalled client figures',
        JSON.stringify({
          body_closed_ms: bodyClosedMs,
          headers_closed_ms: headersClosedMs,
          exited_after_ms: exitedAfterMs,
        }),
      );
      expect(bodyClosedMs).toBeLessThan(8_000);
      expect(headersClosedMs).toBeLessThan(8_000);
      expect(exitedAfterMs).toBeLessThan(10_000);
    } finally {
      body.socket.destroy();
      headers.socket.destroy();
    }
  }, 60_000);

  it('under a connection flood with a low descriptor limit, loses no accepted occurrence', async () => {
    const s = await startStack({
      jobs: [
        {
          id: 'spawner',
          schedule: 'every 2s',
          concurrency: 'allow' as const,
          target: { type: 'command', argv: ['sh', '-c', 'echo ran'] },
        },
      ],
      idleExitSeconds: 0,
      command: (node, bundle) => ['sh', '-c', 'ulimit -n 256 && exec "$0" "$@"', node, bundle],
      emulator: { retry: { maxAttempts: 8, baseDelayMs: 250, maxDelayMs: 2_000 } },
    });
    await s.wake();
    await s.waitFor('armed', () => s.nas.armed().some((a) => a.job_id === 'spawner'));
    const listening = s.logsWith('chronos listening')[0];

    // Hold up to 400 idle connections open (more than the descriptor limit), reopening any that close.
    const floodEnd = Date.now() + 8_000;
    const open = new Set<Socket>();
    let opened = 0;
    let stopped = false;
    const openOne = () => {
      if (stopped || Date.now() > floodEnd) return;
      opened += 1;
      const socket = connect(s.direct);
      open.add(socket);
      socket.on('error', () => {});
      socket.once('close', () => {
        open.delete(socket);
        setTimeout(openOne, 20);
      });
    };
    for (let i = 0; i < 400; i++) openOne();
    await new Promise((r) => setTimeout(r, floodEnd - Date.now()));
    stopped = true;
    for (const socket of open) socket.destroy();

    await s.waitFor(
      'a delivery accepted after the flood',
      () =>
        s.nas
          .deliveries()
          .some((d) => d.job_id === 'spawner' && d.status === 202 && Date.parse(d.at) > floodEnd),
      30_000,
    );
    const accepted = new Set(
      s.nas
        .deliveries()
        .filter((d) => d.job_id === 'spawner' && d.status === 202)
        .map((d) => Date.parse(d.fire_at)),
    );
    await s.waitFor('every accepted occurrence recorded', async () => {
      const runs = await runsPerOccurrence(s, 'spawner');
      return [...accepted].every((at) => (runs.get(at) ?? []).some((st) => st !== 'running'));
    });
    const runs = await runsPerOccurrence(s, 'spawner');
    const lost = [...accepted].filter((at) => runs.get(at)?.join() !== 'succeeded');
    // Every record but a success is a failure, except a run still going: the job fires every 2 s, so a
    // later occurrence may be `running` (error null) when the records are read.
    const records = await s.runs('spawner');
    const failures = records
      .filter((r) => r.status !== 'succeeded' && r.status !== 'running')
      .map((r) => ({ status: r.status, error: r.error }));
    console.log(
      'fd flood figures',
      JSON.stringify({
        max_connections: listening?.['max_connections'],
        connections_opened: opened,
        accepted: accepted.size,
        lost: lost.length,
        failures,
        running: records.filter((r) => r.status === 'running').length,
        local_retries: s.logsWith('run could not start for a reason inside Chronos; retrying').length,
      }),
    );
    expect(listening?.['max_connections']).toBe(192);
    expect(s.proxy.starts()).toHaveLength(1);
    expect(accepted.size).toBeGreaterThanOrEqual(1);
    expect(lost).toEqual([]);
    expect(failures).toEqual([]);
  }, 90_000);
});
