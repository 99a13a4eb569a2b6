import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES } from '../../src/config/config.js';
import { loadConfig } from '../../src/config/load.js';
import { HEALTH_PATH } from '../../src/http/server.js';
import {
  durationSeconds,
  REPO_ROOT,
  readDockerfile,
  readFlyToml,
  SECRET_NAME,
  stageEnv,
  type Toml,
} from './deploy-files.js';

const fly = readFlyToml();
const table = (value: unknown): Toml => {
  expect(value, 'expected a TOML table').toBeTypeOf('object');
  return value as Toml;
};
const env = table(fly['env']) as Record<string, unknown>;
const http = table(fly['http_service']);
const DEFAULT_GRACE_SECONDS = 30;

describe('fly.toml: scale to zero with the self-exit pattern', () => {
  it('names an app and a primary region', () => {
    expect(fly['app']).toBeTypeOf('string');
    expect(fly['primary_region']).toBeTypeOf('string');
  });

  it('leaves stopping to the process: autostop off, autostart on, no minimum', () => {
    expect(http['auto_stop_machines']).toBe('off');
    expect(http['auto_start_machines']).toBe(true);
    expect(http['min_machines_running']).toBe(0);
  });

  it('uses the chronos provider with a positive idle exit', () => {
    expect(env['CHRONOS_PROVIDER']).toBe('chronos');
    expect(Number(env['CHRONOS_IDLE_EXIT_SECONDS'])).toBeGreaterThan(0);
  });

  it('leaves an exit 0 stopped and restarts only failures', () => {
    const restarts = fly['restart'] as Toml[];
    expect(Array.isArray(restarts)).toBe(true);
    expect(restarts).toHaveLength(1);
    expect(restarts[0]?.['policy']).toBe('on-failure');
  });
});

describe('fly.toml: shutdown, service and storage', () => {
  it('stops with SIGTERM and waits longer than the drain grace period', () => {
    expect(fly['kill_signal']).toBe('SIGTERM');
    const grace = Number(env['CHRONOS_SHUTDOWN_GRACE_SECONDS'] ?? DEFAULT_GRACE_SECONDS);
    // A few seconds beyond the grace: closing the server and persisting follow the drain.
    expect(durationSeconds(fly['kill_timeout'])).toBeGreaterThanOrEqual(grace + 5);
    // Fly's ceiling for kill_timeout.
    expect(durationSeconds(fly['kill_timeout'])).toBeLessThanOrEqual(300);
  });

  it('serves HTTPS on the port the image listens on, counting requests', () => {
    const dockerEnv = stageEnv(readDockerfile().stages.at(-1)!);
    expect(http['internal_port']).toBe(Number(dockerEnv['PORT']));
    expect(http['force_https']).toBe(true);
    const concurrency = table(http['concurrency']);
    expect(concurrency['type']).toBe('requests');
    expect(concurrency['soft_limit']).toBeTypeOf('number');
    expect(concurrency['hard_limit']).toBeGreaterThanOrEqual(concurrency['soft_limit'] as number);
  });

  it('checks exactly the path the server leaves out of the idle countdown, so checks cannot keep the Machine awake', () => {
    const checks = http['checks'] as Toml[];
    // The exemption compares the whole request URL: `/healthz?from=fly` would count as activity.
    const check = checks.find((c) => c['path'] === HEALTH_PATH);
    expect(check, `an HTTP check on ${HEALTH_PATH}`).toBeDefined();
    expect(String(check?.['method'] ?? 'GET').toUpperCase()).toBe('GET');
    expect(durationSeconds(check?.['timeout'])).toBeLessThan(durationSeconds(check?.['interval']));
  });

  it('mounts a volume at the data directory', () => {
    const mounts = table(fly['mounts']);
    expect(mounts['source']).toBeTypeOf('string');
    const dockerEnv = stageEnv(readDockerfile().stages.at(-1)!);
    const dataDir = env['CHRONOS_DATA_DIR'] ?? dockerEnv['CHRONOS_DATA_DIR'];
    expect(mounts['destination']).toBe(dataDir);
  });
});

describe('fly.toml: [env] agrees with the configuration schema', () => {
  it('sets only variables loadConfig reads', () => {
    const known = new Set<string>(CONFIG_VARIABLES);
    expect(Object.keys(env).filter((name) => !known.has(name))).toEqual([]);
  });

  it('holds no secrets (they are set with `fly secrets set`)', () => {
    expect(Object.keys(env).filter((name) => SECRET_NAME.test(name))).toEqual([]);
    expect(env).not.toHaveProperty('CHRONOS_ACCESS_TOKEN');
    expect(env).not.toHaveProperty('CHRONOS_ADMIN_TOKEN');
  });

  it('is a valid configuration once the secrets are added', () => {
    const dockerEnv = stageEnv(readDockerfile().stages.at(-1)!);
    const config = loadConfig({
      ...dockerEnv,
      ...(env as Record<string, string>),
      CHRONOS_ACCESS_TOKEN: 'set-with-fly-secrets',
    });
    expect(config.provider).toBe('chronos');
    expect(config.host).toBe('0.0.0.0');
    expect(config.idleExitSeconds).toBeGreaterThan(0);
    expect(config.callbackUrl).toMatch(/^https:\/\//);
  });

  it('has a callback URL on the app’s own fly.dev host', () => {
    expect(env['CHRONOS_CALLBACK_URL']).toBe(`https://${fly['app']}.fly.dev`);
  });

  it('keeps every value a string, as Fly passes them to the process', () => {
    for (const [name, value] of Object.entries(env)) expect(typeof value, name).toBe('string');
  });
});

describe('fly.builtin.toml: always on, without NAS', () => {
  const builtin = readFlyToml(`${REPO_ROOT}fly.builtin.toml`);
  const builtinEnv = table(builtin['env']) as Record<string, string>;
  const builtinHttp = table(builtin['http_service']);

  it('keeps one Machine running and never lets the proxy stop it', () => {
    expect(builtinHttp['auto_stop_machines']).toBe('off');
    expect(builtinHttp['auto_start_machines']).toBe(true);
    expect(builtinHttp['min_machines_running']).toBe(1);
  });

  it('asks for the builtin provider and sets no NAS variable and no secret', () => {
    expect(builtinEnv['CHRONOS_PROVIDER']).toBe('builtin');
    const nas = Object.keys(builtinEnv).filter((name) =>
      /^CHRONOS_(PORTAL|CALLBACK|JWKS|EXPECTED_AUDIENCE|FIRE_PUBLIC_KEY|ACCESS_TOKEN)/.test(name),
    );
    expect(nas).toEqual([]);
    expect(Object.keys(builtinEnv).filter((name) => SECRET_NAME.test(name))).toEqual([]);
    const known = new Set<string>(CONFIG_VARIABLES);
    expect(Object.keys(builtinEnv).filter((name) => !known.has(name))).toEqual([]);
  });

  it('is a valid configuration on its own, with the builtin provider and no idle exit', () => {
    const dockerEnv = stageEnv(readDockerfile().stages.at(-1)!);
    const config = loadConfig({ ...dockerEnv, ...builtinEnv });
    expect(config.provider).toBe('builtin');
    expect(config.host).toBe('0.0.0.0');
    expect(config.idleExitSeconds).toBe(0);
  });

  it('shares the image, the port, the volume, the health check and the shutdown timing with fly.toml', () => {
    expect(table(builtin['build'])['dockerfile']).toBe(table(fly['build'])['dockerfile']);
    expect(builtinHttp['internal_port']).toBe(http['internal_port']);
    expect(builtin['mounts']).toEqual(fly['mounts']);
    expect((builtinHttp['checks'] as Toml[]).map((c) => c['path'])).toEqual([HEALTH_PATH]);
    expect(builtin['kill_signal']).toBe('SIGTERM');
    const grace = Number(builtinEnv['CHRONOS_SHUTDOWN_GRACE_SECONDS'] ?? DEFAULT_GRACE_SECONDS);
    expect(durationSeconds(builtin['kill_timeout'])).toBeGreaterThanOrEqual(grace + 5);
    expect(builtin['restart']).toEqual(fly['restart']);
  });
});
