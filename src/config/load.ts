import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import * as z from 'zod/mini';
import { ChronosError, errorMessage } from '../errors.js';
import { isValidTimeZone } from '../jobs/zone.js';
import { signingSecretProblem } from '../signing.js';
import { parseInlinePublicKey } from './inline-key.js';
import '../validation.js';
import { type Config, type ConfigVariable, DEFAULT_FIRE_TOKEN_MAX_LIFETIME_SECONDS } from './config.js';

type Env = Readonly<Record<string, string | undefined>>;

const text = z.optional(z.string().check(z.trim(), z.minLength(1)));
const httpUrl = (hint: string) =>
  z.optional(z.url({ protocol: /^https?$/, error: `must be an absolute http(s) URL, ${hint}` }));
const wholeNumber = (min: number, max: number, hint: string) =>
  z.optional(
    z
      .pipe(z.string().check(z.regex(/^\d+$/, `must be a whole number ${hint}`)), z.transform(Number))
      .check(z.refine((n) => n >= min && n <= max, `must be between ${min} and ${max} ${hint}`)),
  );
const flag = z.optional(
  z.pipe(
    z.enum(['true', 'false', '1', '0', 'yes', 'no'], 'must be true or false'),
    z.transform((v) => v === 'true' || v === '1' || v === 'yes'),
  ),
);

const ADMIN_TOKEN_MIN_LENGTH = 16;
const ADMIN_TOKEN_TOO_SHORT = `must be at least ${ADMIN_TOKEN_MIN_LENGTH} characters (use a random secret)`;

const EnvSchema = z.object({
  PORT: wholeNumber(0, 65535, '(TCP port, e.g. 8080)'),
  HOST: text,
  LOG_LEVEL: z.optional(
    z.enum(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      'must be one of fatal, error, warn, info, debug, trace, silent',
    ),
  ),
  LOG_FORMAT: z.optional(
    z.enum(
      ['json', 'pretty'],
      'must be "json" (one JSON object per line) or "pretty" (one readable line per event)',
    ),
  ),
  CHRONOS_PROVIDER: z.optional(
    z.enum(['chronos', 'builtin'], 'must be "chronos" (NAS-mediated) or "builtin" (in-process timer)'),
  ),
  CHRONOS_PORTAL_URL: httpUrl('e.g. https://portal.example.com'),
  CHRONOS_CALLBACK_URL: httpUrl("Chronos's public base URL, e.g. https://my-app.fly.dev"),
  CHRONOS_EXPECTED_AUDIENCE: text,
  CHRONOS_JWKS_URL: httpUrl('e.g. https://portal.example.com/.well-known/jwks.json'),
  CHRONOS_FIRE_PUBLIC_KEY: text,
  CHRONOS_ACCESS_TOKEN: text,
  CHRONOS_ACCESS_TOKEN_FILE: text,
  CHRONOS_DATA_DIR: text,
  CHRONOS_JOBS_FILE: text,
  CHRONOS_TIMEZONE: z.optional(
    z.string().check(z.refine(isValidTimeZone, 'must be an IANA time zone such as UTC or Europe/Paris')),
  ),
  CHRONOS_ADMIN_TOKEN: z.optional(
    z.string().check(z.minLength(ADMIN_TOKEN_MIN_LENGTH, ADMIN_TOKEN_TOO_SHORT)),
  ),
  CHRONOS_ADMIN_TOKEN_FILE: text,
  CHRONOS_IDLE_EXIT_SECONDS: wholeNumber(0, 86_400, '(seconds; 0 disables idle exit)'),
  CHRONOS_SHUTDOWN_GRACE_SECONDS: wholeNumber(0, 3_600, '(seconds)'),
  CHRONOS_ALLOW_COMMANDS: flag,
  CHRONOS_FIRE_RATE_LIMIT: wholeNumber(1, 1_000_000, '(fire requests per second per client address)'),
  CHRONOS_TRUST_PROXY: z.optional(
    z.pipe(
      z.string(),
      z.transform((value, ctx) => {
        const parsed = parseTrustProxy(value);
        if (typeof parsed === 'string') {
          ctx.issues.push({ code: 'custom', input: value, message: parsed });
          return z.NEVER;
        }
        return parsed;
      }),
    ),
  ),
  CHRONOS_FIRE_TOKEN_MAX_LIFETIME_SECONDS: wholeNumber(
    30,
    3_600,
    '(seconds a fire token may live, exp - iat; NAS mints 90-120 s tokens)',
  ),
  CHRONOS_DATABASE_URL: z.optional(
    z
      .string()
      .check(
        z.regex(
          /^postgres(ql)?:\/\/\S+$/,
          'must be a PostgreSQL URL, e.g. postgres://chronos:secret@db.internal:5432/chronos?sslmode=require',
        ),
      ),
  ),
  CHRONOS_DATABASE_URL_FILE: text,
  CHRONOS_DATABASE_POOL_SIZE: wholeNumber(1, 10, '(connections; 1-2 suit a process that sleeps)'),
  CHRONOS_DATABASE_STATEMENT_TIMEOUT_MS: wholeNumber(100, 600_000, '(milliseconds per statement)'),
  CHRONOS_NOTIFY_URL: httpUrl('the webhook that receives alerts, e.g. https://hooks.example.com/chronos'),
  CHRONOS_NOTIFY_FORMAT: z.optional(
    z.enum(['standard', 'slack'], 'must be "standard" (signed JSON webhook) or "slack" ({"text": …})'),
  ),
  CHRONOS_NOTIFY_SECRET: text,
  CHRONOS_NOTIFY_SECRET_FILE: text,
  CHRONOS_TARGET_SIGNING_SECRET: text,
  CHRONOS_TARGET_SIGNING_SECRET_FILE: text,
  CHRONOS_ARMING_ALERT_SECONDS: wholeNumber(
    0,
    86_400,
    '(seconds a job may stay unarmed at NAS before arming_failed is sent; 0 never sends it)',
  ),
});

/**
 * true/false, a hop count, or comma-separated proxy addresses and CIDRs (what Fastify's trustProxy takes).
 * Returns the setting, or a message saying what is wrong.
 */
export function parseTrustProxy(value: string): boolean | number | string[] | string {
  const v = value.trim().toLowerCase();
  // "1" is a hop count here, not a boolean: Fastify reads a number as hops.
  if (v === 'true' || v === 'yes') return true;
  if (v === 'false' || v === 'no' || v === '0') return false;
  if (/^\d+$/.test(v)) {
    const hops = Number(v);
    return hops >= 1 && hops <= 32 ? hops : 'a hop count must be between 1 and 32';
  }
  const entries = value.split(',').map((e) => e.trim());
  for (const entry of entries) {
    const [address, prefix, extra] = entry.split('/');
    const family = isIP(address ?? '');
    const max = family === 4 ? 32 : 128;
    const prefixOk = prefix === undefined || (/^\d+$/.test(prefix) && Number(prefix) <= max);
    if (family === 0 || !prefixOk || extra !== undefined)
      return `"${entry}" is not an IP address or CIDR; use true, false, a hop count, or comma-separated addresses/CIDRs (e.g. 10.0.0.0/8,fdaa::/16)`;
  }
  return entries;
}

export const DEFAULT_DATA_DIR = '.chronos-data';
/** Generous because NAS is one client that may burst. */
export const DEFAULT_FIRE_RATE_LIMIT = 1_200;
const SECRET_VARIABLES: ReadonlySet<string> = new Set([
  'CHRONOS_ADMIN_TOKEN',
  'CHRONOS_ACCESS_TOKEN',
  // Its password.
  'CHRONOS_DATABASE_URL',
  'CHRONOS_NOTIFY_SECRET',
  'CHRONOS_TARGET_SIGNING_SECRET',
]);
export const DEFAULT_DATABASE_POOL_SIZE = 2;
export const DEFAULT_DATABASE_STATEMENT_TIMEOUT_MS = 5_000;
/** A job that cannot be armed for this long raises `arming_failed` (CHRONOS_ARMING_ALERT_SECONDS). */
export const DEFAULT_ARMING_ALERT_SECONDS = 600;

/**
 * Parse the environment into a frozen Config, or throw one `invalid_config` error listing every problem
 * (the process prints it and exits at start). Empty strings count as unset, as in most .env tooling.
 */
export function loadConfig(env: Env): Readonly<Config> {
  const cleaned: Record<string, string> = {};
  for (const [key, value] of Object.entries(env))
    if (value !== undefined && value.trim() !== '') cleaned[key] = value;

  const parsed = z.safeParse(EnvSchema, cleaned);
  const problems: string[] = [];
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const name = String(issue.path[0] ?? '');
      // The message is printed at start and lands in logs: never echo a credential.
      const shown = SECRET_VARIABLES.has(name) ? '(value hidden)' : JSON.stringify(cleaned[name] ?? '');
      problems.push(`${name}=${shown}: ${issue.message}`);
    }
  }
  // Cross-variable rules are checked on what is present, even when a value failed to parse, so the
  // message lists every problem at once.
  const has = (name: ConfigVariable) => cleaned[name] !== undefined;
  const both = (a: ConfigVariable, b: ConfigVariable) => {
    if (has(a) && has(b)) problems.push(`set only one of ${a} and ${b}`);
  };
  both('CHRONOS_JWKS_URL', 'CHRONOS_FIRE_PUBLIC_KEY');
  both('CHRONOS_ACCESS_TOKEN', 'CHRONOS_ACCESS_TOKEN_FILE');
  both('CHRONOS_ADMIN_TOKEN', 'CHRONOS_ADMIN_TOKEN_FILE');
  both('CHRONOS_DATABASE_URL', 'CHRONOS_DATABASE_URL_FILE');
  const databaseUrlFile = cleaned['CHRONOS_DATABASE_URL_FILE'];
  const databaseUrlFromFile = databaseUrlFile === undefined ? undefined : readSecretFile(databaseUrlFile);
  if (typeof databaseUrlFromFile === 'object') {
    problems.push(
      `CHRONOS_DATABASE_URL_FILE=${JSON.stringify(databaseUrlFile)}: ${databaseUrlFromFile.problem}`,
    );
  } else if (databaseUrlFromFile !== undefined && !/^postgres(ql)?:\/\/\S+$/.test(databaseUrlFromFile)) {
    problems.push(
      `CHRONOS_DATABASE_URL_FILE=${JSON.stringify(databaseUrlFile)}: the file must hold a PostgreSQL URL (postgres://...)`,
    );
  }
  const adminTokenFile = cleaned['CHRONOS_ADMIN_TOKEN_FILE'];
  const adminTokenFromFile = adminTokenFile === undefined ? undefined : readSecretFile(adminTokenFile);
  if (typeof adminTokenFromFile === 'object') {
    problems.push(
      `CHRONOS_ADMIN_TOKEN_FILE=${JSON.stringify(adminTokenFile)}: ${adminTokenFromFile.problem}`,
    );
  } else if (adminTokenFromFile !== undefined && adminTokenFromFile.length < ADMIN_TOKEN_MIN_LENGTH) {
    problems.push(
      `CHRONOS_ADMIN_TOKEN_FILE=${JSON.stringify(adminTokenFile)}: the token ${ADMIN_TOKEN_TOO_SHORT}`,
    );
  }
  if (cleaned['CHRONOS_PROVIDER'] === 'chronos') {
    const missing: string[] = [];
    if (!has('CHRONOS_PORTAL_URL')) missing.push('CHRONOS_PORTAL_URL');
    if (!has('CHRONOS_CALLBACK_URL')) missing.push('CHRONOS_CALLBACK_URL');
    if (!has('CHRONOS_EXPECTED_AUDIENCE')) missing.push('CHRONOS_EXPECTED_AUDIENCE');
    if (!has('CHRONOS_JWKS_URL') && !has('CHRONOS_FIRE_PUBLIC_KEY'))
      missing.push('CHRONOS_JWKS_URL or CHRONOS_FIRE_PUBLIC_KEY');
    if (!has('CHRONOS_ACCESS_TOKEN') && !has('CHRONOS_ACCESS_TOKEN_FILE'))
      missing.push('CHRONOS_ACCESS_TOKEN or CHRONOS_ACCESS_TOKEN_FILE');
    for (const name of missing)
      problems.push(`CHRONOS_PROVIDER=chronos needs ${name}; set it, or use CHRONOS_PROVIDER=builtin`);
  }
  if (
    cleaned['CHRONOS_PROVIDER'] === 'builtin' &&
    /^[1-9]\d*$/.test(cleaned['CHRONOS_IDLE_EXIT_SECONDS'] ?? '')
  ) {
    problems.push(
      'CHRONOS_IDLE_EXIT_SECONDS needs the chronos provider: with CHRONOS_PROVIDER=builtin nothing would wake the process; set it to 0',
    );
  }
  both('CHRONOS_NOTIFY_SECRET', 'CHRONOS_NOTIFY_SECRET_FILE');
  both('CHRONOS_TARGET_SIGNING_SECRET', 'CHRONOS_TARGET_SIGNING_SECRET_FILE');
  const notifySecret = signingSecret(cleaned, 'CHRONOS_NOTIFY_SECRET', problems);
  const targetSigningSecret = signingSecret(cleaned, 'CHRONOS_TARGET_SIGNING_SECRET', problems);
  const inlineKey = cleaned['CHRONOS_FIRE_PUBLIC_KEY'];
  if (inlineKey !== undefined) {
    try {
      parseInlinePublicKey(inlineKey);
    } catch (err) {
      problems.push(`CHRONOS_FIRE_PUBLIC_KEY: ${errorMessage(err)} (give NAS's public key as PEM or JWK)`);
    }
  }
  if (!parsed.success || problems.length > 0) throw configError(problems);
  const e = parsed.data;
  const config: Config = {
    port: e.PORT ?? 8080,
    host: e.HOST ?? '127.0.0.1',
    logLevel: e.LOG_LEVEL ?? 'info',
    logFormat: e.LOG_FORMAT,
    provider: e.CHRONOS_PROVIDER ?? 'auto',
    portalUrl: e.CHRONOS_PORTAL_URL?.replace(/\/+$/, ''),
    callbackUrl: e.CHRONOS_CALLBACK_URL?.replace(/\/+$/, ''),
    expectedAudience: e.CHRONOS_EXPECTED_AUDIENCE,
    jwksUrl: e.CHRONOS_JWKS_URL,
    firePublicKey: e.CHRONOS_FIRE_PUBLIC_KEY,
    accessToken: e.CHRONOS_ACCESS_TOKEN,
    accessTokenFile: e.CHRONOS_ACCESS_TOKEN_FILE,
    dataDir: e.CHRONOS_DATA_DIR ?? DEFAULT_DATA_DIR,
    jobsFile: e.CHRONOS_JOBS_FILE,
    timezone: e.CHRONOS_TIMEZONE ?? 'UTC',
    adminToken: e.CHRONOS_ADMIN_TOKEN ?? (adminTokenFromFile as string | undefined),
    idleExitSeconds: e.CHRONOS_IDLE_EXIT_SECONDS ?? 0,
    shutdownGraceSeconds: e.CHRONOS_SHUTDOWN_GRACE_SECONDS ?? 30,
    allowCommands: e.CHRONOS_ALLOW_COMMANDS ?? false,
    fireRateLimit: e.CHRONOS_FIRE_RATE_LIMIT ?? DEFAULT_FIRE_RATE_LIMIT,
    trustProxy: e.CHRONOS_TRUST_PROXY ?? false,
    fireTokenMaxLifetimeSeconds:
      e.CHRONOS_FIRE_TOKEN_MAX_LIFETIME_SECONDS ?? DEFAULT_FIRE_TOKEN_MAX_LIFETIME_SECONDS,
    databaseUrl: e.CHRONOS_DATABASE_URL ?? (databaseUrlFromFile as string | undefined),
    databasePoolSize: e.CHRONOS_DATABASE_POOL_SIZE ?? DEFAULT_DATABASE_POOL_SIZE,
    databaseStatementTimeoutMs:
      e.CHRONOS_DATABASE_STATEMENT_TIMEOUT_MS ?? DEFAULT_DATABASE_STATEMENT_TIMEOUT_MS,
    notifyUrl: e.CHRONOS_NOTIFY_URL,
    notifyFormat: e.CHRONOS_NOTIFY_FORMAT ?? 'standard',
    notifySecret,
    targetSigningSecret,
    armingAlertSeconds: e.CHRONOS_ARMING_ALERT_SECONDS ?? DEFAULT_ARMING_ALERT_SECONDS,
  };

  return Object.freeze(config);
}

/**
 * A Standard Webhooks signing secret, given as `NAME` or read from `NAME_FILE`; its form is checked here so a
 * typo stops the start instead of producing signatures no receiver accepts.
 */
function signingSecret(
  cleaned: Record<string, string>,
  name: 'CHRONOS_NOTIFY_SECRET' | 'CHRONOS_TARGET_SIGNING_SECRET',
  problems: string[],
): string | undefined {
  const file = cleaned[`${name}_FILE`];
  const value = file === undefined ? cleaned[name]?.trim() : readSecretFile(file);
  if (value === undefined) return undefined;
  if (typeof value === 'object') {
    problems.push(`${name}_FILE=${JSON.stringify(file)}: ${value.problem}`);
    return undefined;
  }
  const problem = signingSecretProblem(value);
  if (problem !== null) {
    problems.push(`${file === undefined ? name : `${name}_FILE=${JSON.stringify(file)}`}: ${problem}`);
    return undefined;
  }
  return value;
}

/**
 * A secret kept in a file (a mounted secret) rather than in the environment, which child processes and
 * anyone who can read /proc/<pid>/environ see. Surrounding whitespace (a trailing newline) is dropped.
 */
function readSecretFile(path: string): string | { problem: string } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch (err) {
    return { problem: `cannot be read (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})` };
  }
  return text === '' ? { problem: 'the file is empty' } : text;
}

function configError(problems: string[]): ChronosError {
  const list = problems.map((p) => `  - ${p}`).join('\n');
  return new ChronosError(
    'invalid_config',
    `Chronos cannot start: ${problems.length} configuration problem${problems.length === 1 ? '' : 's'}:\n${list}\nSee .env.example for every variable and its default.`,
    { problems },
  );
}
