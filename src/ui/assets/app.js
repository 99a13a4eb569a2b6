// The Chronos status page (docs/operations.md, "The status page"). Plain browser JavaScript, served as
// written: no build step. Every value from the API is user data (job ids, output, errors) and reaches the
// page only through textContent and DOM properties, never as HTML.

(() => {
  const TOKEN_KEY = 'chronos.adminToken';
  /** Runs shown per job. */
  const RUNS_PER_JOB = 5;
  /** Characters of a run's output shown before "more". */
  const OUTPUT_EXCERPT = 400;
  /** After "Run now", the page follows the run this long (at most) so its result shows without a reload. */
  const FOLLOW_RUN_MS = 60_000;
  const FOLLOW_RUN_EVERY_MS = 1_000;
  const FAILED = new Set(['failed', 'timed_out', 'interrupted']);

  const $ = (id) => document.getElementById(id);

  class Unauthorized extends Error {}
  class ApiError extends Error {
    constructor(status, body) {
      super(body && typeof body.message === 'string' ? body.message : `HTTP ${status}`);
      this.status = status;
      this.code = body && typeof body.error === 'string' ? body.error : null;
    }
  }

  /** Builds an element; strings among the children become text nodes, never markup. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props ?? {})) {
      if (value === undefined || value === null) continue;
      if (key === 'dataset') Object.assign(node.dataset, value);
      else if (key === 'onclick') node.addEventListener('click', value);
      else node[key] = value;
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === 'string' || typeof child === 'number' ? String(child) : child);
    }
    return node;
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  /**
   * `/ui#token=…`: the fragment never reaches the server. It is taken into session storage and removed from
   * the address bar and history, so it is not left on screen or in a bookmark.
   */
  function takeTokenFromFragment() {
    if (location.hash === '') return null;
    const params = new URLSearchParams(location.hash.replace(/^#/, ''));
    const given = params.get('token');
    if (given === null) return null;
    history.replaceState(null, '', location.pathname + location.search);
    const problem = tokenProblem(given.trim());
    if (problem !== null) return problem;
    sessionStorage.setItem(TOKEN_KEY, given.trim());
    return null;
  }

  // Why a string cannot be the admin token, or null: a header carries only visible ASCII here, and the
  // server reads the token up to the first space.
  function tokenProblem(candidate) {
    if (/^[\x21-\x7e]+$/.test(candidate)) return null;
    return 'That is not an admin token: it must be printable ASCII without spaces (the value of CHRONOS_ADMIN_TOKEN).';
  }

  async function api(method, path) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: { authorization: `Bearer ${token() ?? ''}`, accept: 'application/json' },
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (err) {
      throw new Error(`cannot reach Chronos (${err instanceof Error ? err.message : String(err)})`);
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      // Not JSON (a proxy's error page): the status says enough.
    }
    if (response.status === 401) throw new Unauthorized(body?.message ?? 'unauthorized');
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  // ---- formatting -------------------------------------------------------------------------------------

  const UNITS = { s: 'second', m: 'minute', h: 'hour', d: 'day', w: 'week' };

  function durationInWords(text) {
    const parts = [...text.matchAll(/(\d+)\s*([smhdw])/gi)].map(([, n, unit]) => {
      const name = UNITS[unit.toLowerCase()];
      return `${n} ${name}${n === '1' ? '' : 's'}`;
    });
    return parts.length > 0 ? parts.join(' ') : text;
  }

  /** The schedule forms of docs/schedules.md in words; null when there is nothing better than the text. */
  function scheduleInWords(schedule) {
    let text = schedule.trim();
    let zone = null;
    const prefixed = /^CRON_TZ=(\S+)\s+(.+)$/i.exec(text);
    if (prefixed) {
      zone = prefixed[1];
      text = prefixed[2];
    }
    const every = /^every\s+(.+)$/i.exec(text);
    const at = /^at\s+(.+)$/i.exec(text);
    const after = /^(?:in\s+|\+)(.+)$/i.exec(text);
    let words = null;
    if (every) words = `Every ${durationInWords(every[1])}`;
    else if (at) words = `Once, at ${at[1]}`;
    else if (after) words = `Once, ${durationInWords(after[1])} after the job was created`;
    else if (window.cronstrue) {
      try {
        words = window.cronstrue.toString(text, {
          use24HourTimeFormat: true,
          dayOfWeekStartIndexZero: true,
          throwExceptionOnParseError: true,
        });
      } catch {
        words = null;
      }
    }
    if (words !== null && zone !== null) words += ` (${zone} time)`;
    return words;
  }

  /** `2026-11-28 10:00:00 CET` in the given zone; the zone name itself if the browser does not know it. */
  function inZone(iso, zone) {
    try {
      const parts = new Intl.DateTimeFormat('en-US', {
        timeZone: zone,
        year: 'numeric',
        month: '2-digit',
        day: '2-digit',
        hour: '2-digit',
        minute: '2-digit',
        second: '2-digit',
        hourCycle: 'h23',
        timeZoneName: 'short',
      }).formatToParts(new Date(iso));
      const part = (type) => parts.find((p) => p.type === type)?.value ?? '';
      return `${part('year')}-${part('month')}-${part('day')} ${part('hour')}:${part('minute')}:${part('second')} ${part('timeZoneName')}`;
    } catch {
      return `${iso} (zone ${zone} unknown to this browser)`;
    }
  }

  /** The zone the schedule is read in: a CRON_TZ= prefix wins over the job's own zone. */
  function scheduleZone(job) {
    return /^\s*CRON_TZ=(\S+)\s/i.exec(job.schedule)?.[1] ?? job.timezone;
  }

  function utc(iso) {
    return iso.replace('T', ' ').replace(/\.\d{3}Z$/, 'Z');
  }

  function relative(iso) {
    const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
    const size = Math.abs(seconds);
    // The browser's clock and the server's differ a little; a few seconds either way is "now".
    if (size < 5) return 'just now';
    const amount =
      size < 90
        ? `${size} s`
        : size < 90 * 60
          ? `${Math.round(size / 60)} min`
          : size < 36 * 3600
            ? `${Math.round(size / 3600)} h`
            : `${Math.round(size / 86400)} d`;
    return seconds >= 0 ? `in ${amount}` : `${amount} ago`;
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return '—';
    if (ms < 1000) return `${ms} ms`;
    if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
    return `${Math.round(ms / 60_000)} min`;
  }

  function badge(text, kind) {
    return el('span', { className: `badge status-${kind ?? text}` }, text);
  }

  function yesNo(value, yes, no, unknown) {
    if (value === null || value === undefined) return el('span', { className: 'unknown' }, unknown);
    return value ? el('span', { className: 'yes' }, yes) : el('span', { className: 'no' }, no);
  }

  function facts(pairs) {
    return pairs.filter(Boolean).flatMap(([term, ...value]) => [el('dt', {}, term), el('dd', {}, ...value)]);
  }

  /** Where an alert went, without the secret a webhook URL often carries in its path. */
  function destinationHost(destination) {
    try {
      return new URL(destination).host;
    } catch {
      return String(destination);
    }
  }

  /** The job's own counter when the API has one, else the failed runs at the top of its history. */
  function failureStreak(job, runs) {
    if (typeof job.failure_streak === 'number') return job.failure_streak;
    if (!Array.isArray(runs)) return null;
    let streak = 0;
    for (const run of runs) {
      if (run.status === 'running') continue;
      if (!FAILED.has(run.status)) break;
      streak += 1;
    }
    return streak;
  }

  // ---- rendering --------------------------------------------------------------------------------------

  function renderHealth(status) {
    const last = status.last_reconcile;
    const usingNas = status.provider === 'chronos';
    $('version').textContent = `version ${status.version}`;
    $('health-list').replaceChildren(
      ...facts([
        [
          'Provider',
          el('code', {}, status.provider),
          status.provider_configured !== status.provider
            ? ` (configured: ${status.provider_configured})`
            : '',
          status.provider_reason ? el('div', { className: 'warning' }, status.provider_reason) : null,
        ],
        [
          'NAS reachable',
          usingNas
            ? yesNo(status.nas_reachable, 'yes', 'no', 'not called yet')
            : el('span', { className: 'muted' }, 'not used (builtin timer)'),
        ],
        [
          'Last reconcile',
          last === null
            ? el('span', { className: 'unknown' }, 'none yet')
            : `${utc(last.at)} (${relative(last.at)}): ${last.armed} armed, ${last.cancelled} cancelled, ${last.unchanged} unchanged, ${last.failed} failed${last.trusted ? '' : ', NAS list not readable'}`,
        ],
        ['Start-up reconcile', status.startup_reconcile],
        [
          'Arms',
          `${status.armed} of ${status.desired} wanted`,
          status.unconfirmed.length > 0 ? `, ${status.unconfirmed.length} unconfirmed` : '',
        ],
        [
          'Key set age',
          status.jwks_cache_age_seconds === null
            ? el('span', { className: 'muted' }, 'no key set loaded')
            : duration(status.jwks_cache_age_seconds * 1000),
        ],
        [
          'Last fire',
          status.last_fire_at === null
            ? '—'
            : `${utc(status.last_fire_at)} (${relative(status.last_fire_at)})`,
        ],
        [
          'Damaged records',
          status.damaged.length === 0
            ? el('span', { className: 'yes' }, 'none')
            : el('span', { className: 'no' }, `${status.damaged.length} (listed below)`),
        ],
        ['Uptime', duration(status.uptime_seconds * 1000)],
        status.wake
          ? [
              'Awake',
              `woken by ${status.wake.cause}${status.wake.awake_because ? `; ${status.wake.awake_because}` : ''}`,
            ]
          : null,
        status.warning ? ['Warning', el('span', { className: 'warning' }, status.warning)] : null,
      ]),
    );
    const damaged = $('damaged');
    damaged.replaceChildren();
    if (status.damaged.length > 0) {
      damaged.append(
        el('h3', {}, 'Damaged records'),
        el(
          'ul',
          { className: 'damaged' },
          status.damaged.map((d) =>
            el(
              'li',
              {},
              el('code', {}, d.job_id),
              ` (${d.kind}) `,
              el('code', {}, d.file),
              ': ',
              el('span', { className: 'error' }, d.error),
            ),
          ),
        ),
      );
    }
    $('health').hidden = false;
  }

  function armedCell(job, status) {
    const unconfirmed = status.unconfirmed.find((u) => u.job_id === job.id);
    const where = status.provider === 'chronos' ? 'at NAS' : 'in the builtin timer';
    if (job.armed) {
      return [
        yesNo(true, `armed ${where}`, '', ''),
        unconfirmed ? el('div', { className: 'warning' }, `unconfirmed: ${unconfirmed.reason}`) : null,
      ];
    }
    const why =
      job.state !== 'scheduled' ? ` (${job.state})` : job.next_run_at === null ? ' (no next run)' : '';
    return [
      el(
        'span',
        { className: job.state === 'scheduled' && job.next_run_at ? 'no' : 'muted' },
        `not armed ${where}${why}`,
      ),
    ];
  }

  /** A job's alerting state, when the server tracks one (absent on servers without alerts). */
  function alertStateCell(state) {
    const line = [
      state.failing
        ? el(
            'span',
            { className: 'no' },
            `failing${state.failing_since ? ` since ${utc(state.failing_since)}` : ''}`,
          )
        : el('span', { className: 'yes' }, 'not failing'),
      typeof state.unsent === 'number' && state.unsent > 0
        ? el(
            'span',
            { className: 'warning' },
            `, ${state.unsent} alert${state.unsent === 1 ? '' : 's'} not sent yet`,
          )
        : null,
    ];
    // Alerts raised without a run (a job that could not be armed) are kept on the job itself.
    const outbox = Array.isArray(state.outbox) && state.outbox.length > 0 ? alertList(state.outbox) : null;
    return el('span', { className: 'alert-state' }, ...line, outbox);
  }

  function alertsCell(run) {
    if (!Array.isArray(run.alerts) || run.alerts.length === 0) return el('span', { className: 'muted' }, '—');
    return alertList(run.alerts);
  }

  function alertList(alerts) {
    return el(
      'ul',
      { className: 'alerts' },
      alerts.map((alert) =>
        el(
          'li',
          { dataset: { alertState: String(alert.state) } },
          `${alert.event} → ${destinationHost(alert.destination)}: `,
          badge(
            String(alert.state),
            alert.state === 'sent' ? 'succeeded' : alert.state === 'gave_up' ? 'failed' : 'running',
          ),
          ` (${alert.attempts} attempt${alert.attempts === 1 ? '' : 's'}${alert.reminder ? ', reminder' : ''})`,
          alert.last_error ? el('div', { className: 'error' }, alert.last_error) : null,
        ),
      ),
    );
  }

  function outputCell(run) {
    const cell = [];
    if (run.error) cell.push(el('div', { className: 'error run-error' }, run.error));
    if (run.output) {
      const excerpt =
        run.output.length > OUTPUT_EXCERPT ? `${run.output.slice(0, OUTPUT_EXCERPT)}…` : run.output;
      cell.push(el('pre', { className: 'run-output', title: run.output }, excerpt));
    }
    if (cell.length === 0) cell.push(el('span', { className: 'muted' }, '—'));
    return cell;
  }

  function runsTable(runs) {
    if (runs instanceof Error)
      return el('p', { className: 'error' }, `run history unavailable: ${runs.message}`);
    if (runs.length === 0) return el('p', { className: 'muted' }, 'No runs yet.');
    return el(
      'table',
      { className: 'runs' },
      el(
        'thead',
        {},
        el(
          'tr',
          {},
          ['Started (UTC)', 'Trigger', 'Status', 'Duration', 'Output / error', 'Alerts'].map((h) =>
            el('th', {}, h),
          ),
        ),
      ),
      el(
        'tbody',
        {},
        runs.map((run) =>
          el(
            'tr',
            { className: 'run', dataset: { runId: run.run_id, status: run.status } },
            el('td', {}, utc(run.started_at)),
            el('td', {}, run.trigger, run.attempt > 1 ? ` #${run.attempt}` : ''),
            el('td', {}, badge(run.status)),
            el('td', {}, duration(run.duration_ms)),
            el('td', {}, outputCell(run)),
            el('td', {}, alertsCell(run)),
          ),
        ),
      ),
    );
  }

  function jobCard(job, runs, status) {
    const words = scheduleInWords(job.schedule);
    const streak = failureStreak(job, runs instanceof Error ? null : runs);
    const action = (label, path, enabled) =>
      el(
        'button',
        {
          type: 'button',
          className: `action-${path}`,
          disabled: !enabled,
          onclick: (event) => act(job.id, path, event.currentTarget),
        },
        label,
      );
    return el(
      'article',
      { className: 'job', dataset: { jobId: job.id, state: job.state } },
      el(
        'div',
        { className: 'job-head' },
        el('h3', { className: 'job-id' }, job.id),
        job.name && job.name !== job.id ? el('span', { className: 'muted' }, job.name) : null,
        badge(job.state),
        el('span', { className: 'spacer' }),
        action('Pause', 'pause', job.state === 'scheduled' || job.state === 'error'),
        action('Resume', 'resume', job.state === 'paused' || job.state === 'error'),
        action('Run now', 'run', true),
      ),
      el(
        'dl',
        { className: 'facts' },
        ...facts([
          [
            'Schedule',
            words === null ? '' : el('span', { className: 'schedule-words' }, words, ' — '),
            el('code', { className: 'schedule' }, job.schedule),
          ],
          [
            'Zone',
            job.timezone,
            scheduleZone(job) !== job.timezone ? ` (the schedule's CRON_TZ: ${scheduleZone(job)})` : '',
          ],
          [
            'Next fire',
            job.next_run_at === null
              ? el('span', { className: 'muted' }, 'none')
              : el(
                  'span',
                  { className: 'next-fire' },
                  `${inZone(job.next_run_at, scheduleZone(job))} · ${utc(job.next_run_at)} (${relative(job.next_run_at)})`,
                ),
          ],
          job.retry_at ? ['Retry', `${utc(job.retry_at)} (${relative(job.retry_at)})`] : null,
          ['Armed', el('span', { className: 'armed' }, ...armedCell(job, status))],
          [
            'Last status',
            job.last_status ? badge(job.last_status) : el('span', { className: 'muted' }, 'never ran'),
            job.last_run_at ? ` at ${utc(job.last_run_at)}` : '',
          ],
          [
            'Failure streak',
            el(
              'span',
              { className: `failure-streak ${streak ? 'no' : ''}` },
              streak === null ? '—' : String(streak),
            ),
          ],
          job.last_error
            ? ['Last error', el('span', { className: 'error last-error' }, job.last_error)]
            : null,
          job.alert_state ? ['Alerts', alertStateCell(job.alert_state)] : null,
        ]),
      ),
      runsTable(runs),
    );
  }

  function render(status, list, runsByJob) {
    renderHealth(status);
    const cards = list.jobs.map((job, i) => jobCard(job, runsByJob[i], status));
    if (cards.length === 0) cards.push(el('p', { className: 'muted' }, 'No jobs yet.'));
    $('job-list').replaceChildren(...cards);
    $('jobs').hidden = false;
    $('loaded-at').textContent = `loaded ${new Date().toLocaleTimeString()}`;
  }

  // ---- flow -------------------------------------------------------------------------------------------

  function say(text, kind) {
    const message = $('message');
    message.className = kind ?? '';
    message.textContent = text;
  }

  function showSignIn(error) {
    $('sign-in').hidden = false;
    $('health').hidden = true;
    $('jobs').hidden = true;
    $('refresh').hidden = true;
    $('sign-out').hidden = true;
    $('sign-in-error').textContent = error ?? '';
    say('');
    $('token-input').focus();
  }

  function signedOut(err) {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(
      `The admin token was refused (HTTP 401: ${err.message}). Check it against CHRONOS_ADMIN_TOKEN on the server and sign in again.`,
    );
  }

  let loading = null;
  let reloading = null;
  /**
   * Loads and renders everything. A call made while a load is under way gets one more load after it: the
   * load under way may have read the state before the caller's change (a pause, a resume), and showing
   * that would undo the change on the page. Calls made meanwhile share that next load.
   */
  function refresh() {
    if (loading) {
      reloading ??= loading.then(() => {
        reloading = null;
        return refresh();
      });
      return reloading;
    }
    loading = (async () => {
      try {
        const [status, list] = await Promise.all([api('GET', '/api/status'), api('GET', '/api/jobs')]);
        // One job's unreadable history does not keep the others from showing.
        const runsByJob = await Promise.all(
          list.jobs.map((job) =>
            api('GET', `/api/jobs/${encodeURIComponent(job.id)}/runs?limit=${RUNS_PER_JOB}`).then(
              (reply) => reply.runs,
              (err) => {
                if (err instanceof Unauthorized) throw err;
                return err instanceof Error ? err : new Error(String(err));
              },
            ),
          ),
        );
        $('sign-in').hidden = true;
        $('refresh').hidden = false;
        $('sign-out').hidden = false;
        render(status, list, runsByJob);
        if (list.warning) say(list.warning, 'warning');
      } catch (err) {
        if (err instanceof Unauthorized) return signedOut(err);
        say(`Could not load the status: ${err instanceof Error ? err.message : String(err)}`, 'error');
      } finally {
        loading = null;
      }
    })();
    return loading;
  }

  /**
   * Polls until the run has ended and the job's summary (last status, failure streak) includes it: Chronos
   * writes the run's end first and the job's summary just after.
   */
  async function followRun(jobId, runId) {
    const until = Date.now() + FOLLOW_RUN_MS;
    const path = `/api/jobs/${encodeURIComponent(jobId)}`;
    while (Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, FOLLOW_RUN_EVERY_MS));
      let run;
      let job;
      try {
        const [history, current] = await Promise.all([
          api('GET', `${path}/runs?limit=${RUNS_PER_JOB}`),
          api('GET', path),
        ]);
        run = history.runs.find((r) => r.run_id === runId);
        job = current;
      } catch {
        return;
      }
      if (run === undefined || run.status === 'running') continue;
      const summarised =
        job.last_run_at !== null && Date.parse(job.last_run_at) >= Date.parse(run.started_at);
      if (!summarised) continue;
      say(
        `${jobId}: run ${runId} ${run.status}${run.error ? `: ${run.error}` : ''}`,
        FAILED.has(run.status) ? 'error' : '',
      );
      await refresh();
      return;
    }
  }

  async function act(jobId, action, button) {
    button.disabled = true;
    try {
      const reply = await api('POST', `/api/jobs/${encodeURIComponent(jobId)}/${action}`);
      if (action === 'run') {
        say(`${jobId}: run ${reply.run_id} started`);
        await refresh();
        void followRun(jobId, reply.run_id);
        return;
      }
      const done = action === 'pause' ? 'paused' : 'resumed';
      say(
        `${jobId}: ${done}${reply.armed ? ', armed' : ', not armed'}${reply.warning ? ` (${reply.warning})` : ''}`,
        reply.warning ? 'warning' : '',
      );
      await refresh();
    } catch (err) {
      if (err instanceof Unauthorized) return signedOut(err);
      say(`${jobId}: ${action} failed: ${err instanceof Error ? err.message : String(err)}`, 'error');
      button.disabled = false;
    }
  }

  function start() {
    takeTokenFromFragment();
    $('sign-in-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const typed = $('token-input').value.trim();
      if (typed === '') return;
      const problem = tokenProblem(typed);
      if (problem !== null) {
        $('sign-in-error').textContent = problem;
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, typed);
      $('token-input').value = '';
      $('sign-in-error').textContent = '';
      void refresh();
    });
    $('refresh').addEventListener('click', () => void refresh());
    $('sign-out').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      showSignIn();
    });
    const fromFragment = () => {
      const problem = takeTokenFromFragment();
      if (problem) showSignIn(problem);
      else if (token()) void refresh();
      else showSignIn();
    };
    window.addEventListener('hashchange', fromFragment);
    fromFragment();
  }

  start();
})();
