import { describe, expect, it } from 'vitest';
import { rewriteOrigin, runEmulatorCli, splitCommand } from '../../src/emulator/index.js';
import { errorMessage, isChronosError } from '../../src/errors.js';
import { hop1, provisionBody } from './agent.js';

describe('chronos emulator CLI', () => {
  it('prints the base URL and the Chronos settings once listening, and stops on abort', async () => {
    const lines: string[] = [];
    const stop = new AbortController();
    let ready!: (info: { url: string }) => void;
    const listening = new Promise<{ url: string }>((resolve) => {
      ready = resolve;
    });
    const done = runEmulatorCli(
      ['--port', '0', '--audience', 'agent:cli', '--agent-token', 'tok', '--alg', 'EdDSA'],
      {
        out: (line) => lines.push(line),
        signal: stop.signal,
        onReady: ready,
      },
    );
    const { url } = await listening;
    expect(lines).toContain(`NAS emulator listening on ${url}`);
    expect(lines).toContain(`  CHRONOS_EXPECTED_AUDIENCE=agent:cli`);
    expect(lines).toContain(`  CHRONOS_ACCESS_TOKEN=tok`);
    expect(lines).toContain(`  CHRONOS_JWKS_URL=${url}/.well-known/jwks.json`);
    const res = await hop1(
      url,
      'provision',
      provisionBody('a', '2030-01-01T00:00:00Z', 'http://127.0.0.1:9'),
      'tok',
    );
    expect(res.status).toBe(200);
    expect(lines.some((l) => /^\[nas\] armed\s+a\s+at 2030/.test(l))).toBe(true);
    stop.abort();
    await done;
    await expect(fetch(`${url}/_emulator/state`)).rejects.toThrow();
  });

  it('--strict starts the strict emulator and says so', async () => {
    const lines: string[] = [];
    const stop = new AbortController();
    let ready!: (info: { url: string }) => void;
    const listening = new Promise<{ url: string }>((resolve) => {
      ready = resolve;
    });
    const done = runEmulatorCli(['--port', '0', '--strict'], {
      out: (line) => lines.push(line),
      signal: stop.signal,
      onReady: ready,
    });
    const { url } = await listening;
    expect(lines).toContain(`NAS emulator listening on ${url}  (strict)`);
    const state = (await (await fetch(`${url}/_emulator/state`)).json()) as Record<string, unknown>;
    expect(state).toMatchObject({
      strict: true,
      faults: { rememberKeys: true, removeRowOnDelivery: true, deliveryAttempts: 4, junkListItems: true },
    });
    const res = await fetch(`${url}/api/agent-cron/provision`, {
      method: 'POST',
      headers: { authorization: 'Bearer dev-agent-token', 'content-type': 'application/json' },
      body: JSON.stringify(provisionBody('a', '2030-01-01T00:00:00Z', 'http://127.0.0.1:9')),
    });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('');
    stop.abort();
    await done;
  });

  it('lists every bad option in one invalid_config error', async () => {
    const err = await runEmulatorCli(['--port', 'x', '--alg', 'HS256', '--wake', 'node app.js']).catch(
      (e: unknown) => e,
    );
    expect(isChronosError(err, 'invalid_config')).toBe(true);
    expect(errorMessage(err)).toMatch(/--port must be an integer/);
    expect(errorMessage(err)).toMatch(/--alg must be ES256, RS256 or EdDSA/);
    expect(errorMessage(err)).toMatch(/--target-port is required with --wake/);
  });

  it('--help prints usage', async () => {
    const lines: string[] = [];
    await runEmulatorCli(['--help'], { out: (l) => lines.push(l) });
    expect(lines.join('\n')).toMatch(/Usage: chronos emulator/);
  });

  it.each<[string, string[]]>([
    ['node dist/cli.js serve', ['node', 'dist/cli.js', 'serve']],
    ['  node   "my app.js" ', ['node', 'my app.js']],
    [`sh -c 'echo "hi there"'`, ['sh', '-c', 'echo "hi there"']],
    ['a\\ b "c\\"d" ""', ['a b', 'c"d', '']],
  ])('splitCommand(%j)', (line, argv) => {
    expect(splitCommand(line)).toEqual(argv);
  });

  it('splitCommand rejects an unterminated quote', () => {
    expect(() => splitCommand('node "app.js')).toThrow(/unterminated/);
  });

  it('rewriteOrigin keeps path and query', () => {
    expect(rewriteOrigin('https://app.example/api/cron/fire?x=1', 'http://127.0.0.1:5000/')).toBe(
      'http://127.0.0.1:5000/api/cron/fire?x=1',
    );
  });
});
