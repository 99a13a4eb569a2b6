import type { JobView } from '../jobs/view.js';
import { adminClient, describeError } from './api.js';
import { type CliIo, EXIT_FAILURE, EXIT_OK, parseCommandArgs, table, UsageError } from './common.js';

export const STATUS_USAGE = `Usage: chronos status [--url URL] [--json]

The state of a running Chronos in words, from its admin API (GET /api/status and /api/jobs): the
trigger provider, whether NAS answers, the last reconcile, arms not yet confirmed, the next fires,
failing jobs and damaged records. The token is read from CHRONOS_ADMIN_TOKEN, or from the file named
by CHRONOS_ADMIN_TOKEN_FILE.

Options:
  --url URL    Chronos base URL (default http://127.0.0.1:$PORT, PORT defaulting to 8080)
  --json       print {"status": <GET /api/status>, "jobs": <GET /api/jobs>} as is
  -h, --help   this text`;

/** The fields of GET /api/status this command reads (docs/operations.md, Reading /api/status). */
interface StatusReply {
  version: string;
  uptime_seconds: number;
  provider: string;
  provider_configured: string;
  provider_reason: string | null;
  nas_reachable: boolean | null;
  last_reconcile: {
    at: string;
    armed: number;
    cancelled: number;
    unchanged: number;
    failed: number;
    misfires: number;
    trusted: boolean;
  } | null;
  startup_reconcile: 'done' | 'running';
  warning?: string;
  jobs: number;
  damaged: Array<{ job_id: string; kind: string; file: string; error: string }>;
  desired: number;
  armed: number;
  unconfirmed: Array<{ job_id: string; fire_at: string; reason: string }>;
  last_fire_at: string | null;
  jwks_cache_age_seconds: number | null;
  jobs_file: string | null;
  /** Absent from servers older than the field. */
  wake?: {
    cause: string;
    awake_seconds: number;
    awake_because: string | null;
    exit_at: string | null;
  };
}

/** How many upcoming fires are listed. */
const NEXT_FIRES = 10;

export async function runStatus(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    url: { type: 'string' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (positionals.length > 0) throw new UsageError(`takes no arguments, got "${positionals.join(' ')}"`);
  if (values.help) {
    io.out(STATUS_USAGE);
    return EXIT_OK;
  }
  const api = await adminClient(io, 'status', values.url);
  if (typeof api === 'string') {
    io.err(api);
    return EXIT_FAILURE;
  }
  const [statusReply, jobsReply] = await Promise.all([
    api.call('GET', '/api/status'),
    api.call('GET', '/api/jobs'),
  ]);
  for (const reply of [statusReply, jobsReply]) {
    if (reply.status >= 400) {
      io.err(`chronos status: ${describeError(reply)}`);
      return EXIT_FAILURE;
    }
  }
  if (values.json) {
    io.out(`{"status":${statusReply.text},"jobs":${jobsReply.text}}`);
    return EXIT_OK;
  }
  const status = statusReply.body as StatusReply;
  const jobs = (jobsReply.body as { jobs: JobView[] }).jobs;
  if (status.warning) io.err(`warning: ${status.warning}`);
  io.out(describeStatus(status, jobs, api.baseUrl, Date.now()));
  return EXIT_OK;
}

/** The status in words; `now` only words the distance to the next fires. */
export function describeStatus(status: StatusReply, jobs: JobView[], url: string, now: number): string {
  const rows: Array<[string, string]> = [];
  const provider =
    status.provider === status.provider_configured
      ? status.provider
      : `${status.provider} (configured: ${status.provider_configured})`;
  rows.push(['provider', `${provider}${status.provider_reason ? `: ${status.provider_reason}` : ''}`]);
  if (status.provider === 'chronos' || status.nas_reachable !== null) {
    rows.push([
      'NAS',
      status.nas_reachable === null
        ? 'not called yet by this process'
        : status.nas_reachable
          ? 'reachable'
          : 'NOT reachable (the last call failed; arms are retried while awake)',
    ]);
  }
  const last = status.last_reconcile;
  rows.push([
    'last reconcile',
    last === null
      ? status.startup_reconcile === 'running'
        ? 'running (start-up)'
        : 'none yet'
      : `${last.at}: armed ${last.armed}, cancelled ${last.cancelled}, unchanged ${last.unchanged}, failed ${last.failed}, misfires ${last.misfires}${last.trusted ? '' : " (NAS's list could not be read)"}`,
  ]);
  rows.push([
    'arms',
    `${status.armed} of ${status.desired} wanted${status.unconfirmed.length > 0 ? `, ${status.unconfirmed.length} not confirmed by NAS yet` : ''}`,
  ]);
  const counts = new Map<string, number>();
  for (const job of jobs) counts.set(job.state, (counts.get(job.state) ?? 0) + 1);
  const byState = [...counts].map(([state, n]) => `${n} ${state}`).join(', ');
  rows.push(['jobs', `${status.jobs}${byState ? ` (${byState})` : ''}`]);
  if (status.provider === 'chronos' || status.last_fire_at !== null)
    rows.push(['last NAS fire', status.last_fire_at ?? 'none recorded']);
  if (status.jwks_cache_age_seconds !== null)
    rows.push(['fire key set', `cached ${words(status.jwks_cache_age_seconds * 1000)} ago`]);
  if (status.jobs_file) rows.push(['jobs file', status.jobs_file]);
  if (status.wake) {
    const { cause, awake_seconds, awake_because, exit_at } = status.wake;
    rows.push([
      'awake',
      `${words(awake_seconds * 1000)}, woken by ${cause}` +
        (awake_because ? `; ${awake_because}` : '') +
        (exit_at ? `; stops at ${exit_at} if nothing else happens` : ''),
    ]);
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  const sections = [
    `Chronos ${status.version} at ${url}, up ${words(status.uptime_seconds * 1000)}`,
    rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join('\n'),
  ];

  const upcoming = jobs
    .filter((j) => j.next_run_at !== null && j.enabled && j.state === 'scheduled')
    .sort((a, b) => Date.parse(a.next_run_at!) - Date.parse(b.next_run_at!));
  if (upcoming.length > 0) {
    const shown = upcoming.slice(0, NEXT_FIRES);
    sections.push(
      `NEXT FIRES${upcoming.length > shown.length ? ` (first ${shown.length} of ${upcoming.length})` : ''}\n${table(
        ['ID', 'AT (UTC)', 'IN', 'ARMED', 'SCHEDULE'],
        shown.map((j) => [
          j.id,
          j.next_run_at!,
          words(Date.parse(j.next_run_at!) - now),
          j.armed ? 'yes' : 'no',
          j.schedule,
        ]),
      )}`,
    );
  } else {
    sections.push('NEXT FIRES\nnone: no enabled, scheduled job has a next run');
  }

  const failing = jobs
    .filter((j) => j.failure_streak > 0)
    .sort((a, b) => b.failure_streak - a.failure_streak);
  if (failing.length > 0) {
    sections.push(
      `FAILING (${failing.length}): the last run of each failed; "chronos jobs logs <id>" shows what it printed\n${table(
        ['ID', 'FAILURES IN A ROW', 'LAST RUN', 'LAST ERROR'],
        failing.map((j) => [
          j.id,
          String(j.failure_streak),
          j.last_run_at ?? '-',
          (j.last_error ?? '-').split('\n')[0]!.slice(0, 100),
        ]),
      )}`,
    );
  }
  if (status.unconfirmed.length > 0) {
    sections.push(
      `NOT CONFIRMED BY NAS (${status.unconfirmed.length})\n${table(
        ['ID', 'FIRE AT (UTC)', 'WHY'],
        status.unconfirmed.map((u) => [u.job_id, u.fire_at, u.reason]),
      )}`,
    );
  }
  if (status.damaged.length > 0) {
    sections.push(
      `DAMAGED (${status.damaged.length}): not armed or run until restored, or deleted with "chronos jobs rm <id>"\n${table(
        ['ID', 'KIND', 'FILE', 'ERROR'],
        status.damaged.map((d) => [d.job_id, d.kind, d.file, d.error.split('\n')[0]!.slice(0, 100)]),
      )}`,
    );
  }
  return sections.join('\n\n');
}

/** 42 s, 5 min, 3 h 10 min, 2 d 4 h; a past instant is "due". */
function words(ms: number): string {
  if (ms < 0) return 'due';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h${m % 60 ? ` ${m % 60} min` : ''}`;
  return `${Math.floor(h / 24)} d${h % 24 ? ` ${h % 24} h` : ''}`;
}
