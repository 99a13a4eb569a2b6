/*
 * Configuration (the variables in src/config/config.ts and .env.example): loadConfig(env). Not a decision-table row. Defaults, every variable, one
 * message per bad value naming the variable and the fix, every problem listed at once, frozen result,
 * empty strings as unset, idle exit refused with the builtin provider.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES, type Config } from '../../src/config/config.js';
import { DEFAULT_FIRE_RATE_LIMIT, loadConfig } from '../../src/config/load.js';
import { ChronosError, errorMessage, isChronosError } from '../../src/errors.js';

// A real key: CHRONOS_FIRE_PUBLIC_KEY is parsed at configuration time.
const REAL_PUBLIC_PEM = generateKeyPairSync('ed25519')
  .publicKey.export({ type: 'spki', format: 'pem' })
  .toString()
  .trim();

function problemsOf(env: Record<string, string | undefined>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ChronosError);
    const e = err as ChronosError;
    expect(e.code).toBe('invalid_config');
    const problems = e.details?.['problems'] as string[];
    // The single message carries every problem, so the operator sees them all at once.
    for (const p of problems) expect(e.message).toContain(p);
    return problems;
  }
  throw new Error('expected loadConfig to throw');
}

const NOTIFY_SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const TARGET_SECRET = randomBytes(24).toString('base64');

const NAS = {
  CHRONOS_PORTAL_URL: 'https://portal.example.com',
  CHRONOS_CALLBACK_URL: 'https://my-app.fly.dev',
  CHRONOS_EXPECTED_AUDIENCE: 'agent:inst-1',
  CHRONOS_JWKS_URL: 'https://portal.example.com/.well-known/jwks.json',
  CHRONOS_ACCESS_TOKEN: 'agent-access-token',
};

describe('loadConfig defaults', () => {
  it('gives the documented defaults for an empty environment', () => {
    expect(loadConfig({})).toEqual({
      port: 8080,
      host: '127.0.0.1',
      logLevel: 'info',
      logFormat: undefined,
      provider: 'auto',
      portalUrl: undefined,
      callbackUrl: undefined,
      expectedAudience: undefined,
      jwksUrl: undefined,
      firePublicKey: undefined,
      accessToken: undefined,
      accessTokenFile: undefined,
      dataDir: '.chronos-data',
      jobsFile: undefined,
      timezone: 'UTC',
      adminToken: undefined,
      idleExitSeconds: 0,
      shutdownGraceSeconds: 30,
      allowCommands: false,
      fireRateLimit: DEFAULT_FIRE_RATE_LIMIT,
      trustProxy: false,
      fireTokenMaxLifetimeSeconds: 300,
      databaseUrl: undefined,
      databasePoolSize: 2,
      databaseStatementTimeoutMs: 5000,
      notifyUrl: undefined,
      notifyFormat: 'standard',
      notifySecret: undefined,
      targetSigningSecret: undefined,
      armingAlertSeconds: 600,
    } satisfies Config);
  });

  it('treats empty and blank strings as unset', () => {
    const env = Object.fromEntries(CONFIG_VARIABLES.map((name, i) => [name, i % 2 === 0 ? '' : '   ']));
    expect(loadConfig(env)).toEqual(loadConfig({}));
  });

  it('ignores variables it does not own', () => {
    expect(loadConfig({ PATH: '/usr/bin', NODE_ENV: 'production', CHRONOS_UNKNOWN: 'x' })).toEqual(
      loadConfig({}),
    );
  });

  it('returns a frozen object', () => {
    const config = loadConfig({ PORT: '9000' });
    expect(Object.isFrozen(config)).toBe(true);
    expect(() => {
      (config as Config).port = 1;
    }).toThrow(TypeError);
  });
});

describe('loadConfig parses every variable', () => {
  it('with a JWKS URL and a token file', () => {
    const env = {
      PORT: '9090',
      HOST: '0.0.0.0',
      LOG_LEVEL: 'debug',
      LOG_FORMAT: 'pretty',
      CHRONOS_PROVIDER: 'chronos',
      CHRONOS_PORTAL_URL: 'https://portal.example.com/',
      CHRONOS_CALLBACK_URL: 'https://my-app.fly.dev//',
      CHRONOS_EXPECTED_AUDIENCE: 'agent:inst-1',
      CHRONOS_JWKS_URL: 'https://portal.example.com/.well-known/jwks.json',
      CHRONOS_ACCESS_TOKEN_FILE: '/run/secrets/chronos-token',
      CHRONOS_DATA_DIR: '/data',
      CHRONOS_JOBS_FILE: '/app/chronos.jobs.json',
      CHRONOS_TIMEZONE: 'Europe/Paris',
      CHRONOS_ADMIN_TOKEN: 'a-very-long-admin-secret',
      CHRONOS_IDLE_EXIT_SECONDS: '120',
      CHRONOS_SHUTDOWN_GRACE_SECONDS: '15',
      CHRONOS_ALLOW_COMMANDS: 'true',
      CHRONOS_FIRE_RATE_LIMIT: '5000',
      CHRONOS_TRUST_PROXY: '10.0.0.0/8, fdaa::/16,127.0.0.1',
      CHRONOS_FIRE_TOKEN_MAX_LIFETIME_SECONDS: '120',
      CHRONOS_DATABASE_URL: 'postgresql://chronos:pw@db.internal:5432/chronos?sslmode=require',
      CHRONOS_DATABASE_POOL_SIZE: '1',
      CHRONOS_DATABASE_STATEMENT_TIMEOUT_MS: '2500',
      CHRONOS_NOTIFY_URL: 'https://hooks.example.com/chronos',
      CHRONOS_NOTIFY_FORMAT: 'slack',
      CHRONOS_NOTIFY_SECRET: NOTIFY_SECRET,
      CHRONOS_TARGET_SIGNING_SECRET: TARGET_SECRET,
      CHRONOS_ARMING_ALERT_SECONDS: '90',
    };
    // Every variable loadConfig owns is exercised here or, for the either-or alternatives, in the next tests.
    const alternatives = [
      'CHRONOS_FIRE_PUBLIC_KEY',
      'CHRONOS_ACCESS_TOKEN',
      'CHRONOS_ADMIN_TOKEN_FILE',
      'CHRONOS_DATABASE_URL_FILE',
      'CHRONOS_NOTIFY_SECRET_FILE',
      'CHRONOS_TARGET_SIGNING_SECRET_FILE',
    ];
    expect([...Object.keys(env), ...alternatives].sort()).toEqual([...CONFIG_VARIABLES].sort());
    expect(loadConfig(env)).toEqual({
      port: 9090,
      host: '0.0.0.0',
      logLevel: 'debug',
      logFormat: 'pretty',
      provider: 'chronos',
      portalUrl: 'https://portal.example.com',
      callbackUrl: 'https://my-app.fly.dev',
      expectedAudience: 'agent:inst-1',
      jwksUrl: 'https://portal.example.com/.well-known/jwks.json',
      firePublicKey: undefined,
      accessToken: undefined,
      accessTokenFile: '/run/secrets/chronos-token',
      dataDir: '/data',
      jobsFile: '/app/chronos.jobs.json',
      timezone: 'Europe/Paris',
      adminToken: 'a-very-long-admin-secret',
      idleExitSeconds: 120,
      shutdownGraceSeconds: 15,
      allowCommands: true,
      fireRateLimit: 5000,
      trustProxy: ['10.0.0.0/8', 'fdaa::/16', '127.0.0.1'],
      fireTokenMaxLifetimeSeconds: 120,
      databaseUrl: 'postgresql://chronos:pw@db.internal:5432/chronos?sslmode=require',
      databasePoolSize: 1,
      databaseStatementTimeoutMs: 2500,
      notifyUrl: 'https://hooks.example.com/chronos',
      notifyFormat: 'slack',
      notifySecret: NOTIFY_SECRET,
      targetSigningSecret: TARGET_SECRET,
      armingAlertSeconds: 90,
    } satisfies Config);
  });

  it('reads the signing secrets from files, and refuses ones no receiver could verify, without echoing them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'chronos-secrets-'));
    await writeFile(join(dir, 'notify'), `${NOTIFY_SECRET}\n`);
    await writeFile(join(dir, 'target'), `${TARGET_SECRET}\n`);
    expect(
      loadConfig({
        CHRONOS_NOTIFY_SECRET_FILE: join(dir, 'notify'),
        CHRONOS_TARGET_SIGNING_SECRET_FILE: join(dir, 'target'),
      }),
    ).toMatchObject({ notifySecret: NOTIFY_SECRET, targetSigningSecret: TARGET_SECRET });

    const short = 'whsec_c2hvcnQ=';
    const problems = (() => {
      try {
        loadConfig({
          CHRONOS_NOTIFY_SECRET: short,
          CHRONOS_TARGET_SIGNING_SECRET: 'not base64 at all!',
          CHRONOS_NOTIFY_SECRET_FILE: join(dir, 'missing'),
        });
      } catch (err) {
        return (err as ChronosError).details?.['problems'] as string[];
      }
      return [];
    })();
    expect(problems).toEqual([
      'set only one of CHRONOS_NOTIFY_SECRET and CHRONOS_NOTIFY_SECRET_FILE',
      expect.stringMatching(/^CHRONOS_NOTIFY_SECRET_FILE=".*missing": cannot be read \(ENOENT\)$/),
      expect.stringMatching(/^CHRONOS_TARGET_SIGNING_SECRET: must be a Standard Webhooks secret/),
    ]);
    expect(JSON.stringify(problems)).not.toContain('not base64');
    expect(() => loadConfig({ CHRONOS_NOTIFY_SECRET: short })).toThrow(
      /CHRONOS_NOTIFY_SECRET: decodes to 5 bytes; use at least 16/,
    );
  });

  it('with an inline public key and a literal token', () => {
    const pem = REAL_PUBLIC_PEM;
    const { CHRONOS_JWKS_URL: _unused, ...rest } = NAS;
    const config = loadConfig({ ...rest, CHRONOS_FIRE_PUBLIC_KEY: pem, CHRONOS_PROVIDER: 'builtin' });
    expect(config).toMatchObject({
      firePublicKey: pem,
      accessToken: 'agent-access-token',
      provider: 'builtin',
    });
  });

  it('reads the admin token from CHRONOS_ADMIN_TOKEN_FILE, keeping it out of the environment', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'chronos-config-'));
    try {
      const file = join(dir, 'admin-token');
      await writeFile(file, 'a-very-long-admin-secret-from-a-file\n');
      expect(loadConfig({ CHRONOS_ADMIN_TOKEN_FILE: file }).adminToken).toBe(
        'a-very-long-admin-secret-from-a-file',
      );
      await writeFile(file, 'short\n');
      const short = problemsOf({ CHRONOS_ADMIN_TOKEN_FILE: file });
      expect(short).toEqual([
        expect.stringMatching(/CHRONOS_ADMIN_TOKEN_FILE=.*must be at least 16 characters/),
      ]);
      expect(short.join('\n')).not.toContain('short\n');
      expect(problemsOf({ CHRONOS_ADMIN_TOKEN_FILE: join(dir, 'missing') })).toEqual([
        expect.stringMatching(/CHRONOS_ADMIN_TOKEN_FILE=.*cannot be read \(ENOENT\)/),
      ]);
      expect(
        problemsOf({ CHRONOS_ADMIN_TOKEN: 'a-very-long-admin-secret', CHRONOS_ADMIN_TOKEN_FILE: file }),
      ).toContain('set only one of CHRONOS_ADMIN_TOKEN and CHRONOS_ADMIN_TOKEN_FILE');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('selects PostgreSQL by CHRONOS_DATABASE_URL or its _FILE form, never echoing the URL', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'chronos-config-'));
    try {
      const file = join(dir, 'database-url');
      await writeFile(file, 'postgres://chronos:from-file@db:5432/chronos\n');
      expect(loadConfig({ CHRONOS_DATABASE_URL_FILE: file }).databaseUrl).toBe(
        'postgres://chronos:from-file@db:5432/chronos',
      );
      await writeFile(file, 'mysql://chronos:pw@db/chronos\n');
      const wrong = problemsOf({ CHRONOS_DATABASE_URL_FILE: file });
      expect(wrong).toEqual([
        expect.stringMatching(/CHRONOS_DATABASE_URL_FILE=.*must hold a PostgreSQL URL/),
      ]);
      expect(wrong.join('\n')).not.toContain('pw@');
      const bad = problemsOf({ CHRONOS_DATABASE_URL: 'http://user:hunter2@db/chronos' });
      expect(bad).toEqual([
        expect.stringMatching(/^CHRONOS_DATABASE_URL=\(value hidden\): must be a PostgreSQL URL/),
      ]);
      expect(
        problemsOf({ CHRONOS_DATABASE_URL: 'postgres://db/chronos', CHRONOS_DATABASE_URL_FILE: file }),
      ).toContain('set only one of CHRONOS_DATABASE_URL and CHRONOS_DATABASE_URL_FILE');
      expect(problemsOf({ CHRONOS_DATABASE_POOL_SIZE: '0' })).toEqual([
        expect.stringMatching(/CHRONOS_DATABASE_POOL_SIZE="0": must be between 1 and 10/),
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it.each([
    ['true', true],
    ['1', true],
    ['yes', true],
    ['false', false],
    ['0', false],
    ['no', false],
  ])('reads CHRONOS_ALLOW_COMMANDS=%s as %s', (value, expected) => {
    expect(loadConfig({ CHRONOS_ALLOW_COMMANDS: value }).allowCommands).toBe(expected);
  });

  it.each(['0', '65535'])('accepts PORT=%s', (port) => {
    expect(loadConfig({ PORT: port }).port).toBe(Number(port));
  });

  it('accepts CHRONOS_IDLE_EXIT_SECONDS with the chronos provider, and 0 with builtin', () => {
    expect(
      loadConfig({ ...NAS, CHRONOS_PROVIDER: 'chronos', CHRONOS_IDLE_EXIT_SECONDS: '300' }).idleExitSeconds,
    ).toBe(300);
    expect(loadConfig({ CHRONOS_PROVIDER: 'builtin', CHRONOS_IDLE_EXIT_SECONDS: '0' }).idleExitSeconds).toBe(
      0,
    );
  });
});

describe('loadConfig refuses bad values, naming the variable and the fix', () => {
  it.each([
    ['PORT', 'x', /PORT="x": must be a whole number .*8080/],
    ['PORT', '70000', /PORT="70000": must be between 0 and 65535/],
    ['PORT', '80.5', /PORT="80.5": must be a whole number/],
    ['LOG_LEVEL', 'loud', /LOG_LEVEL="loud": must be one of fatal, error, warn, info, debug, trace, silent/],
    ['LOG_FORMAT', 'text', /LOG_FORMAT="text": must be "json" .* or "pretty"/],
    ['CHRONOS_PROVIDER', 'nas', /CHRONOS_PROVIDER="nas": must be "chronos" .* or "builtin"/],
    ['CHRONOS_PORTAL_URL', 'portal.example.com', /CHRONOS_PORTAL_URL=.*: must be an absolute http\(s\) URL/],
    ['CHRONOS_CALLBACK_URL', 'ftp://my-app', /CHRONOS_CALLBACK_URL=.*: must be an absolute http\(s\) URL/],
    ['CHRONOS_JWKS_URL', 'jwks.json', /CHRONOS_JWKS_URL=.*: must be an absolute http\(s\) URL/],
    ['CHRONOS_TIMEZONE', 'Mars/Olympus', /CHRONOS_TIMEZONE="Mars\/Olympus": must be an IANA time zone/],
    ['CHRONOS_ADMIN_TOKEN', 'short', /CHRONOS_ADMIN_TOKEN=.*: must be at least 16 characters/],
    ['CHRONOS_IDLE_EXIT_SECONDS', '-1', /CHRONOS_IDLE_EXIT_SECONDS="-1": must be a whole number/],
    ['CHRONOS_IDLE_EXIT_SECONDS', '86401', /CHRONOS_IDLE_EXIT_SECONDS="86401": must be between 0 and 86400/],
    [
      'CHRONOS_SHUTDOWN_GRACE_SECONDS',
      'soon',
      /CHRONOS_SHUTDOWN_GRACE_SECONDS="soon": must be a whole number/,
    ],
    ['CHRONOS_ALLOW_COMMANDS', 'maybe', /CHRONOS_ALLOW_COMMANDS="maybe": must be true or false/],
    ['CHRONOS_FIRE_RATE_LIMIT', '0', /CHRONOS_FIRE_RATE_LIMIT="0": must be between 1 and 1000000/],
    ['CHRONOS_TRUST_PROXY', 'fly', /CHRONOS_TRUST_PROXY="fly": "fly" is not an IP address or CIDR; use true/],
    [
      'CHRONOS_TRUST_PROXY',
      '10.0.0.0/33',
      /CHRONOS_TRUST_PROXY=.*"10.0.0.0\/33" is not an IP address or CIDR/,
    ],
    ['CHRONOS_TRUST_PROXY', '64', /CHRONOS_TRUST_PROXY="64": a hop count must be between 1 and 32/],
    [
      'CHRONOS_FIRE_TOKEN_MAX_LIFETIME_SECONDS',
      '31536000',
      /CHRONOS_FIRE_TOKEN_MAX_LIFETIME_SECONDS="31536000": must be between 30 and 3600/,
    ],
  ])('%s=%s', (name, value, pattern) => {
    const problems = problemsOf({ [name]: value });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(pattern);
  });

  it.each([
    ['true', true],
    ['no', false],
    ['0', false],
    ['1', 1],
    ['2', 2],
    ['::1', ['::1']],
  ] as const)('CHRONOS_TRUST_PROXY=%s is read as %j', (value, expected) => {
    expect(loadConfig({ CHRONOS_TRUST_PROXY: value }).trustProxy).toEqual(expected);
  });

  it('never echoes a secret in the message', () => {
    const problems = problemsOf({ CHRONOS_ADMIN_TOKEN: 'hunter2' });
    expect(problems[0]).toContain('CHRONOS_ADMIN_TOKEN');
    expect(problems.join('\n')).not.toContain('hunter2');
  });

  it('refuses two sources for the same setting', () => {
    expect(
      problemsOf({ CHRONOS_JWKS_URL: NAS.CHRONOS_JWKS_URL, CHRONOS_FIRE_PUBLIC_KEY: REAL_PUBLIC_PEM }),
    ).toEqual(['set only one of CHRONOS_JWKS_URL and CHRONOS_FIRE_PUBLIC_KEY']);
    expect(problemsOf({ CHRONOS_ACCESS_TOKEN: 't', CHRONOS_ACCESS_TOKEN_FILE: '/run/t' })).toEqual([
      'set only one of CHRONOS_ACCESS_TOKEN and CHRONOS_ACCESS_TOKEN_FILE',
    ]);
  });

  it('refuses CHRONOS_IDLE_EXIT_SECONDS with the builtin provider, saying why', () => {
    const problems = problemsOf({ CHRONOS_PROVIDER: 'builtin', CHRONOS_IDLE_EXIT_SECONDS: '60' });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/CHRONOS_IDLE_EXIT_SECONDS needs the chronos provider.*set it to 0/);
  });

  it('lists every problem in one error: a bad PORT and each missing NAS setting', () => {
    const problems = problemsOf({ PORT: 'x', CHRONOS_PROVIDER: 'chronos' });
    expect(problems).toEqual([
      'PORT="x": must be a whole number (TCP port, e.g. 8080)',
      'CHRONOS_PROVIDER=chronos needs CHRONOS_PORTAL_URL; set it, or use CHRONOS_PROVIDER=builtin',
      'CHRONOS_PROVIDER=chronos needs CHRONOS_CALLBACK_URL; set it, or use CHRONOS_PROVIDER=builtin',
      'CHRONOS_PROVIDER=chronos needs CHRONOS_EXPECTED_AUDIENCE; set it, or use CHRONOS_PROVIDER=builtin',
      'CHRONOS_PROVIDER=chronos needs CHRONOS_JWKS_URL or CHRONOS_FIRE_PUBLIC_KEY; set it, or use CHRONOS_PROVIDER=builtin',
      'CHRONOS_PROVIDER=chronos needs CHRONOS_ACCESS_TOKEN or CHRONOS_ACCESS_TOKEN_FILE; set it, or use CHRONOS_PROVIDER=builtin',
    ]);
  });

  it('lists several bad values together with a cross-variable problem', () => {
    const problems = problemsOf({
      LOG_LEVEL: 'loud',
      CHRONOS_TIMEZONE: 'Nowhere/City',
      CHRONOS_ACCESS_TOKEN: 't',
      CHRONOS_ACCESS_TOKEN_FILE: '/run/t',
    });
    expect(problems).toHaveLength(3);
    expect(problems.some((p) => p.startsWith('LOG_LEVEL='))).toBe(true);
    expect(problems.some((p) => p.startsWith('CHRONOS_TIMEZONE='))).toBe(true);
    expect(problems).toContain('set only one of CHRONOS_ACCESS_TOKEN and CHRONOS_ACCESS_TOKEN_FILE');
  });

  it('with every NAS setting given, the chronos provider is accepted', () => {
    expect(loadConfig({ ...NAS, CHRONOS_PROVIDER: 'chronos' }).provider).toBe('chronos');
  });
});

describe('inline fire key', () => {
  it('lists an unusable CHRONOS_FIRE_PUBLIC_KEY among the other problems', () => {
    try {
      loadConfig({ CHRONOS_FIRE_PUBLIC_KEY: 'not a key', PORT: 'x' });
      expect.unreachable('loadConfig accepted a garbage key');
    } catch (err) {
      expect(isChronosError(err, 'invalid_config')).toBe(true);
      const message = errorMessage(err);
      expect(message).toContain('CHRONOS_FIRE_PUBLIC_KEY: not a PEM or JWK public key');
      expect(message).toContain('PORT="x"');
    }
  });

  it('refuses a symmetric JWK at configuration time', () => {
    expect(() => loadConfig({ CHRONOS_FIRE_PUBLIC_KEY: '{"kty":"oct","k":"c2VjcmV0"}' })).toThrow(
      /symmetric/,
    );
  });
});

describe('.env.example', () => {
  it('documents every variable loadConfig reads, and only those', async () => {
    const { readFile } = await import('node:fs/promises');
    const text = await readFile(new URL('../../.env.example', import.meta.url), 'utf8');
    // Lines like `NAME=value` or `# NAME=value` (an optional variable shown commented out).
    const documented = new Set([...text.matchAll(/^#?\s*([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]));
    expect([...documented].sort()).toEqual([...CONFIG_VARIABLES].sort());
  });

  it('shows each uncommented default as the value loadConfig uses when the variable is unset', async () => {
    const { readFile } = await import('node:fs/promises');
    const text = await readFile(new URL('../../.env.example', import.meta.url), 'utf8');
    const defaults = Object.fromEntries(
      [...text.matchAll(/^([A-Z][A-Z0-9_]*)=(.*)$/gm)].map((m) => [m[1]!, m[2]!.trim()]),
    );
    // Loading the example's own uncommented values must give exactly the defaults.
    expect(loadConfig(defaults)).toEqual(loadConfig({}));
  });
});
