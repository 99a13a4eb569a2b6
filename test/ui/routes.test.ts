import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type RunningChronos, startChronos } from '../../src/main.js';
import { UI_FILES, UI_VENDOR_FILES } from '../../src/ui/assets.js';

const TOKEN = 'admin-token-0123456789abcdef';

let dir: string;
let running: RunningChronos | undefined;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chronos-ui-'));
});

afterEach(async () => {
  await running?.shutdown('test over');
  running = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function start(env: Record<string, string> = {}): Promise<RunningChronos> {
  running = await startChronos({
    env: { PORT: '0', LOG_LEVEL: 'silent', CHRONOS_DATA_DIR: dir, CHRONOS_PROVIDER: 'builtin', ...env },
    handleSignals: false,
    exit: () => {},
  });
  return running;
}

const get = (url: string, headers: Record<string, string> = {}) =>
  running!.app.inject({ method: 'GET', url, headers });

describe('GET /ui with the admin API on', () => {
  beforeEach(async () => {
    await start({ CHRONOS_ADMIN_TOKEN: TOKEN });
  });

  it('serves the page without a token, with a policy that allows no inline or foreign script', async () => {
    for (const path of ['/ui', '/ui/']) {
      const res = await get(path);
      expect(res.statusCode, path).toBe(200);
      expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(res.body).toContain('<title>Chronos status</title>');
      const csp = String(res.headers['content-security-policy']);
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toContain('unsafe-inline');
      expect(csp).toContain("frame-ancestors 'none'");
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['referrer-policy']).toBe('no-referrer');
      expect(res.headers['set-cookie']).toBeUndefined();
    }
  });

  it('serves every file the page refers to, with its content type', async () => {
    const page = (await get('/ui')).body;
    const referenced = [...page.matchAll(/(?:src|href)="(\/ui\/assets\/[^"]+)"/g)].map((m) => m[1]!);
    expect(referenced.sort()).toEqual(
      [...Object.keys(UI_FILES), ...Object.keys(UI_VENDOR_FILES)]
        .filter((name) => name !== 'index.html')
        .map((name) => `/ui/assets/${name}`)
        .sort(),
    );
    for (const path of referenced) {
      const res = await get(path);
      expect(res.statusCode, path).toBe(200);
      expect(res.headers['content-type'], path).toBe(
        path.endsWith('.css') ? 'text/css; charset=utf-8' : 'text/javascript; charset=utf-8',
      );
      expect(res.body.length, path).toBeGreaterThan(100);
    }
  });

  it('serves the cron-to-words script as its package ships it', async () => {
    const shipped = await readFile(
      createRequire(import.meta.url).resolve(UI_VENDOR_FILES['cronstrue.min.js']!),
      'utf8',
    );
    expect((await get('/ui/assets/cronstrue.min.js')).body).toBe(shipped);
  });

  it('serves nothing else: unknown names and paths out of the folder are 404', async () => {
    for (const path of [
      '/ui/assets/nope.js',
      '/ui/assets/..%2F..%2Fpackage.json',
      '/ui/assets/%2E%2E%2Froutes.ts',
      '/ui/assets/routes.ts',
      '/ui/other',
    ]) {
      const res = await get(path);
      expect(res.statusCode, path).toBe(404);
      expect(res.json().error, path).toBe('not_found');
    }
  });

  it('leaves the admin API behind its token', async () => {
    await get('/ui');
    const res = await get('/api/jobs');
    expect(res.statusCode).toBe(401);
    expect(res.json().error).toBe('unauthorized');
    expect((await get('/api/jobs', { authorization: `Bearer ${TOKEN}` })).statusCode).toBe(200);
  });
});

describe('GET /ui with the admin API off', () => {
  it('answers 404 admin_disabled, saying how to turn it on', async () => {
    await start();
    for (const path of ['/ui', '/ui/assets/app.js']) {
      const res = await get(path);
      expect(res.statusCode, path).toBe(404);
      expect(res.json().error, path).toBe('admin_disabled');
      expect(res.json().message, path).toContain('CHRONOS_ADMIN_TOKEN');
    }
  });
});
