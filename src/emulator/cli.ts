import { parseArgs } from 'node:util';
import { ChronosError } from '../errors.js';
import { type EmulatorOptions, type FireAlg, startEmulator } from './emulator.js';
import { startWakeProxy, type WakeProxy } from './wake-proxy.js';

export const EMULATOR_USAGE = `Usage: chronos emulator [options]

Runs a local NAS emulator (hop 1 provision/cancel/list, JWKS, signed fire delivery).

Options:
  --port N              listen port (default 4100; 0 = ephemeral)
  --host H              listen address (default 127.0.0.1)
  --agent-token T       bearer token agents must present (default dev-agent-token)
  --audience A          aud claim of fire tokens (default agent:dev)
  --alg ALG             ES256 | RS256 | EdDSA (default ES256)
  --clock-offset-ms N   skew the emulator's clock by N ms
  --wake "<command>"    start this command on demand when a fire arrives and nothing listens
  --target-port N       port the woken command listens on (required with --wake)
  --target-host H       host the woken command listens on (default 127.0.0.1)
  --strict              the strictest NAS the contract allows: remembers consumed dedup keys, removes
                        a job's row after each delivery, gives up after 4 attempts, answers provision
                        with an empty body, quirky lists with junk items (docs/emulator.md)
  --quiet               no event log
  -h, --help            this text

Never expose the emulator beyond localhost: its /_emulator/* control endpoints have no auth.`;

export interface EmulatorCliIo {
  /** Where lines go (default console.log). */
  out?: (line: string) => void;
  /** Stops the emulator like SIGINT/SIGTERM would (tests). */
  signal?: AbortSignal;
  /** Called once everything listens. */
  onReady?: (info: { url: string; wakeUrl?: string }) => void;
}

export async function runEmulatorCli(argv: string[], io: EmulatorCliIo = {}): Promise<void> {
  const out = io.out ?? ((line: string) => console.log(line));
  const { values } = parseArgs({
    args: argv,
    allowPositionals: false,
    strict: true,
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      'agent-token': { type: 'string' },
      audience: { type: 'string' },
      alg: { type: 'string' },
      'clock-offset-ms': { type: 'string' },
      wake: { type: 'string' },
      'target-port': { type: 'string' },
      'target-host': { type: 'string' },
      strict: { type: 'boolean' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    out(EMULATOR_USAGE);
    return;
  }

  const problems: string[] = [];
  const port = parseInteger(values.port ?? '4100', '--port', problems, 0, 65535);
  const clockOffsetMs = parseInteger(values['clock-offset-ms'] ?? '0', '--clock-offset-ms', problems);
  const alg = values.alg ?? 'ES256';
  if (alg !== 'ES256' && alg !== 'RS256' && alg !== 'EdDSA')
    problems.push('--alg must be ES256, RS256 or EdDSA');
  let wakeCommand: string[] | undefined;
  let targetPort: number | undefined;
  if (values.wake !== undefined) {
    wakeCommand = splitCommand(values.wake);
    if (wakeCommand.length === 0) problems.push('--wake needs a command');
    if (values['target-port'] === undefined) problems.push('--target-port is required with --wake');
    else targetPort = parseInteger(values['target-port'], '--target-port', problems, 1, 65535);
  }
  if (problems.length > 0) {
    // `usage`: the CLI prints it as a wrong command line (exit 2) under its "chronos emulator:" prefix.
    throw new ChronosError('invalid_config', problems.join('; '), { problems, usage: true });
  }

  const log = values.quiet ? undefined : (line: string) => out(`[nas] ${line}`);
  let proxy: WakeProxy | undefined;
  if (wakeCommand && targetPort !== undefined) {
    proxy = await startWakeProxy({
      target: { host: values['target-host'] ?? '127.0.0.1', port: targetPort },
      command: wakeCommand,
      stdio: 'inherit',
      ...(log ? { log } : {}),
    });
  }
  const options: EmulatorOptions = {
    port,
    host: values.host ?? '127.0.0.1',
    alg: alg as FireAlg,
    clockOffsetMs,
    strict: values.strict === true,
    ...(values['agent-token'] === undefined ? {} : { agentToken: values['agent-token'] }),
    ...(values.audience === undefined ? {} : { audience: values.audience }),
    ...(log ? { log } : {}),
  };
  const wakeUrl = proxy?.url;
  if (wakeUrl) options.deliverVia = (fireUrl) => rewriteOrigin(fireUrl, wakeUrl);

  let emulator: Awaited<ReturnType<typeof startEmulator>>;
  try {
    emulator = await startEmulator(options);
  } catch (err) {
    await proxy?.close();
    throw err;
  }

  out(`NAS emulator listening on ${emulator.url}${emulator.strict ? '  (strict)' : ''}`);
  out('Chronos settings for this emulator (set them all):');
  out('  CHRONOS_PROVIDER=chronos');
  out(`  CHRONOS_PORTAL_URL=${emulator.url}`);
  // Where fires are delivered: Chronos's own base URL (the wake proxy's when there is one).
  out(`  CHRONOS_CALLBACK_URL=${wakeUrl ?? 'http://127.0.0.1:8080'}`);
  out(`  CHRONOS_JWKS_URL=${emulator.jwksUrl}`);
  out(`  CHRONOS_EXPECTED_AUDIENCE=${emulator.audience}`);
  out(`  CHRONOS_ACCESS_TOKEN=${emulator.agentToken}`);
  if (wakeUrl) out(`  fires go through the wake proxy ${wakeUrl} → port ${targetPort}`);
  else out('  (CHRONOS_CALLBACK_URL is where Chronos listens: change it if PORT is not 8080)');
  out(`  state: GET ${emulator.url}/_emulator/state  (local use only: no auth)`);
  io.onReady?.(wakeUrl ? { url: emulator.url, wakeUrl } : { url: emulator.url });

  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      io.signal?.removeEventListener('abort', stop);
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    if (io.signal?.aborted) stop();
    else io.signal?.addEventListener('abort', stop, { once: true });
  });
  await emulator.close();
  await proxy?.close();
}

/** Keeps path and query of `url` and replaces its origin with `origin`. */
export function rewriteOrigin(url: string, origin: string): string {
  const parsed = new URL(url);
  return origin.replace(/\/+$/, '') + parsed.pathname + parsed.search;
}

/**
 * Splits a command line into argv the way a POSIX shell would for plain words, quotes and
 * backslashes, without running a shell (no globbing, variables or operators).
 */
export function splitCommand(line: string): string[] {
  const args: string[] = [];
  let current = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quote) {
      if (ch === quote) quote = undefined;
      else if (ch === '\\' && quote === '"' && (line[i + 1] === '"' || line[i + 1] === '\\'))
        current += line[++i];
      else current += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      inWord = true;
    } else if (ch === '\\' && i + 1 < line.length) {
      current += line[++i];
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) args.push(current);
      current = '';
      inWord = false;
    } else {
      current += ch;
      inWord = true;
    }
  }
  if (quote) throw new ChronosError('invalid_config', `unterminated ${quote} in command: ${line}`);
  if (inWord) args.push(current);
  return args;
}

function parseInteger(raw: string, flag: string, problems: string[], min?: number, max?: number): number {
  const value = Number(raw);
  if (
    !/^-?\d+$/.test(raw.trim()) ||
    (min !== undefined && value < min) ||
    (max !== undefined && value > max)
  ) {
    const range = min !== undefined && max !== undefined ? ` between ${min} and ${max}` : '';
    problems.push(`${flag} must be an integer${range}`);
    return 0;
  }
  return value;
}
