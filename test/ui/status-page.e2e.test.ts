import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type Locator, type Page } from 'playwright-core';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { e2eStacks, type Stack } from '../helpers/e2e.js';

/*
 * The status page in a real browser (Debian's chromium, driven by playwright-core) against a real Chronos:
 * the production bundle behind the wake proxy, the NAS emulator as NAS, a command job that really fails.
 */

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
];
const TOKEN = 'status-page-admin-token-0123456789';
const ARTIFACTS = resolve(dirname(fileURLToPath(import.meta.url)), '../../test-artifacts');
/** What the failing job prints: markup that must be shown as text, never parsed. */
const HOSTILE_OUTPUT = '<img src=x onerror="document.title=1"><b>boom</b> & friends';

const startStack = e2eStacks();
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

// One Chromium per file (a launch is the file's largest CPU cost); each test gets a new context of it,
// which shares no storage, cookies or cache with another context, as a fresh profile did.
let browser: Promise<Browser> | undefined;
afterAll(async () => {
  const launched = browser;
  browser = undefined;
  if (launched) await (await launched).close();
});

async function launchBrowser(): Promise<BrowserContext> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run installs it when absent)`);
  }
  browser ??= chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  const context = await (await browser).newContext({
    viewport: { width: 1280, height: 900 },
    timezoneId: 'UTC',
  });
  cleanups.push(() => context.close());
  return context;
}

/** Every request the page makes, with its Authorization header, to check what leaves the browser. */
function recordRequests(page: Page): Array<{ url: string; authorization: string | undefined }> {
  const seen: Array<{ url: string; authorization: string | undefined }> = [];
  page.on('request', (request) => {
    seen.push({ url: request.url(), authorization: request.headers()['authorization'] });
  });
  return seen;
}

/** The page answers after real requests to a real process: waits get the harness's deadline, not 1 s. */
const eventually = <T>(read: () => Promise<T> | T) => expect.poll(read, { timeout: 15_000 });
const card = (page: Page, id: string): Locator => page.locator(`article.job[data-job-id="${id}"]`);
const armedAtNas = (s: Stack, id: string) => s.nas.armed().some((arm) => arm.job_id === id);

async function stackWithJobs(): Promise<Stack> {
  const s = await startStack({
    idleExitSeconds: 120,
    env: { CHRONOS_ADMIN_TOKEN: TOKEN, CHRONOS_ALLOW_COMMANDS: 'true' },
    jobs: (recorder) => [
      {
        id: 'nightly-report',
        schedule: '0 3 * * *',
        timezone: 'Europe/Paris',
        target: { type: 'http', url: `${recorder}/hit/nightly-report` },
      },
      {
        id: 'tokyo-cleanup',
        schedule: 'CRON_TZ=Asia/Tokyo 30 6 * * 1-5',
        target: { type: 'http', url: `${recorder}/hit/tokyo-cleanup` },
      },
      {
        id: 'broken',
        schedule: 'every 1h',
        target: { type: 'command', argv: ['sh', '-c', `printf '%s\\n' '${HOSTILE_OUTPUT}'; exit 3`] },
      },
    ],
  });
  await s.wake();
  await s.waitFor('every job armed at NAS', () =>
    ['nightly-report', 'tokyo-cleanup', 'broken'].every((id) => armedAtNas(s, id)),
  );
  return s;
}

describe('e2e: the status page in headless Chromium', () => {
  it('lists the jobs, shows a failed run with its error, and pauses and resumes a job at NAS', async () => {
    const s = await stackWithJobs();
    const context = await launchBrowser();
    const page = await context.newPage();
    const requests = recordRequests(page);

    await page.goto(`${s.url}/ui#token=${TOKEN}`);
    const report = card(page, 'nightly-report');
    const broken = card(page, 'broken');
    await eventually(() => report.count()).toBe(1);
    await eventually(() => broken.count()).toBe(1);
    // The token left the address bar and history; it reached the server only as a header, never in a URL.
    expect(page.url()).toBe(`${s.url}/ui`);
    expect(requests.some((r) => r.url.includes(TOKEN))).toBe(false);
    const apiCalls = requests.filter((r) => new URL(r.url).pathname.startsWith('/api/'));
    expect(apiCalls.length).toBeGreaterThan(0);
    for (const call of apiCalls) expect(call.authorization, call.url).toBe(`Bearer ${TOKEN}`);
    expect(await context.cookies()).toEqual([]);

    // The job as the API has it, in words and in two zones.
    const job = (await (await s.store()).getJob('nightly-report'))!;
    const nextUtc = new Date(job.next_run_at!).toISOString().replace('T', ' ').replace('.000Z', 'Z');
    expect(await report.locator('.schedule').textContent()).toBe('0 3 * * *');
    expect(await report.locator('.schedule-words').textContent()).toContain('At 03:00');
    const nextFire = (await report.locator('.next-fire').textContent()) ?? '';
    expect(nextFire).toContain(nextUtc);
    // 03:00 on the Paris wall clock, whatever the offset of that day.
    expect(nextFire).toMatch(/^\d{4}-\d{2}-\d{2} 03:00:00 GMT\+[12] · /);
    expect(await broken.locator('.schedule-words').textContent()).toContain('Every 1 hour');
    // A CRON_TZ prefix: read, and shown, in its own zone rather than the job's (UTC).
    const tokyo = card(page, 'tokyo-cleanup');
    expect(await tokyo.locator('.schedule-words').textContent()).toContain(
      'At 06:30, Monday through Friday (Asia/Tokyo time)',
    );
    expect(await tokyo.locator('.next-fire').textContent()).toMatch(/^\d{4}-\d{2}-\d{2} 06:30:00 GMT\+9 · /);
    expect(await report.locator('.armed').textContent()).toBe('armed at NAS');
    expect(await page.locator('#health-list dt:has-text("NAS reachable") + dd').textContent()).toBe('yes');
    // The page's own requests are a person's: the process keeps its idle window for them.
    expect(await page.locator('#health-list dt:has-text("Awake") + dd').textContent()).toMatch(
      /^woken by (admin|start|fire); /,
    );

    // Run now: the page follows the run until it ends, then shows it failed with the runner's own error.
    await broken.locator('button.action-run').click();
    const failedRow = broken.locator('tr.run[data-status="failed"]');
    await failedRow.waitFor({ timeout: 20_000 });
    const [run] = await s.runs('broken');
    expect(run?.status).toBe('failed');
    expect(run?.error).toBeTruthy();
    expect(await failedRow.locator('.run-error').textContent()).toBe(run!.error);
    expect(await failedRow.locator('.run-output').textContent()).toBe(`${HOSTILE_OUTPUT}\n`);
    // Shown as text: the markup in the output created no element, and its handler never ran.
    expect(await failedRow.locator('.run-output img, .run-output b').count()).toBe(0);
    expect(await page.title()).toBe('Chronos status');
    await eventually(() => broken.locator('.failure-streak').textContent()).toBe('1');
    expect(await broken.locator('.last-error').textContent()).toBe(run!.error);

    // Pause: the page shows it, and NAS no longer holds an arm for the job.
    await report.locator('button.action-pause').click();
    await eventually(() => report.getAttribute('data-state')).toBe('paused');
    await s.waitFor('the paused job disarmed at NAS', () => !armedAtNas(s, 'nightly-report'));
    expect(armedAtNas(s, 'broken')).toBe(true);
    expect(await report.locator('.armed').textContent()).toContain('not armed at NAS');
    expect(await report.locator('button.action-pause').isDisabled()).toBe(true);

    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'ui-paused.png'), fullPage: true });

    // Resume: armed again at NAS.
    await report.locator('button.action-resume').click();
    await eventually(() => report.getAttribute('data-state')).toBe('scheduled');
    await s.waitFor('the resumed job armed at NAS again', () => armedAtNas(s, 'nightly-report'));
    expect(await report.locator('.armed .yes').textContent()).toBe('armed at NAS');

    await page.screenshot({ path: join(ARTIFACTS, 'ui.png'), fullPage: true });
  }, 90_000);

  it('signs in with a typed token, refuses a wrong one with a clear error, and forgets it on sign-out', async () => {
    const s = await stackWithJobs();
    const context = await launchBrowser();
    const page = await context.newPage();

    await page.goto(`${s.url}/ui`);
    await page.locator('#sign-in').waitFor();
    expect(await page.locator('#jobs').isVisible()).toBe(false);

    // Refused before sending: no header could carry it as the server reads it.
    await page.locator('#token-input').fill('two words');
    await page.locator('#sign-in-form button[type="submit"]').click();
    await eventually(() => page.locator('#sign-in-error').textContent()).toContain('not an admin token');

    await page.locator('#token-input').fill('not-the-admin-token-at-all');
    await page.locator('#sign-in-form button[type="submit"]').click();
    const error = page.locator('#sign-in-error');
    await eventually(() => error.textContent()).toContain('HTTP 401');
    expect(await error.textContent()).toContain('CHRONOS_ADMIN_TOKEN');
    expect(await page.locator('#jobs').isVisible()).toBe(false);
    expect(await page.evaluate('sessionStorage.length')).toBe(0);

    await page.locator('#token-input').fill(TOKEN);
    await page.locator('#sign-in-form button[type="submit"]').click();
    await eventually(() => card(page, 'broken').count()).toBe(1);
    expect(await page.locator('#sign-in').isVisible()).toBe(false);
    expect(await error.textContent()).toBe('');

    // The token lives in this tab's session storage only: a new tab must sign in again.
    const other = await context.newPage();
    await other.goto(`${s.url}/ui`);
    await other.locator('#sign-in').waitFor();

    await page.locator('#sign-out').click();
    await page.locator('#sign-in').waitFor();
    expect(await page.evaluate('sessionStorage.length')).toBe(0);
    expect(await context.cookies()).toEqual([]);
  }, 60_000);

  it('shows the error when a token given in the fragment is wrong', async () => {
    const s = await stackWithJobs();
    const context = await launchBrowser();
    const page = await context.newPage();
    await page.goto(`${s.url}/ui#token=wrong-token-0123456789`);
    await eventually(() => page.locator('#sign-in-error').textContent()).toContain('HTTP 401');
    expect(page.url()).toBe(`${s.url}/ui`);
    expect(await page.locator('article.job').count()).toBe(0);

    await page.goto(`${s.url}/ui#token=t%C3%B6ken-with-umlaut-0123456789`);
    await eventually(() => page.locator('#sign-in-error').textContent()).toContain('not an admin token');
    expect(page.url()).toBe(`${s.url}/ui`);
  }, 60_000);
});
