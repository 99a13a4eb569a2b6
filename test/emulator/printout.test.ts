import { describe, expect, it } from 'vitest';
import { missingNasSettings } from '../../src/config/config.js';
import { loadConfig } from '../../src/config/load.js';
import { runEmulatorCli } from '../../src/emulator/index.js';

describe('chronos emulator printout', () => {
  it('is a complete chronos-provider configuration when followed as printed', async () => {
    const lines: string[] = [];
    const stop = new AbortController();
    let ready!: () => void;
    const listening = new Promise<void>((resolve) => {
      ready = resolve;
    });
    const done = runEmulatorCli(['--port', '0', '--quiet'], {
      out: (line) => lines.push(line),
      signal: stop.signal,
      onReady: () => ready(),
    });
    await listening;
    stop.abort();
    await done;
    const env: Record<string, string> = {};
    for (const line of lines) {
      const match = /^ {2}(CHRONOS_[A-Z_]+)=(\S+)$/.exec(line);
      if (match) env[match[1]!] = match[2]!;
    }
    expect(env).toMatchObject({ CHRONOS_PROVIDER: 'chronos', CHRONOS_CALLBACK_URL: 'http://127.0.0.1:8080' });
    const config = loadConfig(env);
    expect(config.provider).toBe('chronos');
    expect(missingNasSettings(config)).toEqual([]);
  });
});
