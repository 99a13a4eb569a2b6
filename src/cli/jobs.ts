import { readFile } from 'node:fs/promises';
import { errorMessage } from '../errors.js';
import type { JobView, RunView } from '../jobs/view.js';
import { type ApiReply, adminClient, describeError } from './api.js';
import {
  type CliIo,
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  parseCommandArgs,
  parseCount,
  table,
  UsageError,
} from './common.js';
import { parseAssignment, patchFor, runLogs, specOfView } from './job-edit.js';

export const JOBS_USAGE = `Usage: chronos jobs <command> [options]

Manages the jobs of a running Chronos through its admin API. The token is read from
CHRONOS_ADMIN_TOKEN, or from the file named by CHRONOS_ADMIN_TOKEN_FILE; it must be the server's.

Commands:
  list                 all jobs: state, whether armed, next run; then any damaged job
                       file or run history (what is wrong, and where its bytes are)
  get <id>             one job
  add [--file F]       create a job from a JSON spec (a file, or stdin when --file is absent)
  rm <id>              delete a job and its history (not jobs declared in the jobs file);
                       a damaged job's file is moved aside, never destroyed
  pause <id>           stop firing; the arm is cancelled
  resume <id>          fire again; the next run is computed from now
  run <id>             run now (manual run); the scheduled next run does not move
  runs <id> [--limit N]  run history, newest first (default 20)
  logs <id> [--limit N]  what the recent runs printed (output excerpts), newest last
                       (default 5); --json prints those runs, oldest first
  edit <id> --set path=value [--set ...] | --file F
                       change fields of an API job: each --set is a dotted path into the
                       job spec (target.url, retry.max_attempts) and a value, read as JSON
                       when it is JSON (3, true, null, {"a":1}, "123"), as text otherwise;
                       --file sends a JSON spec (its fields replace the job's)

Options:
  --url URL      Chronos base URL (default http://127.0.0.1:$PORT, PORT defaulting to 8080)
  --json         print the API's JSON reply as is
  -h, --help     this text

Examples:
  chronos jobs add --file report.json
  echo '{"id":"ping","schedule":"every 5m","target":{"type":"http","url":"http://127.0.0.1:3000/ping"}}' | chronos jobs add
  chronos jobs runs ping --limit 5
  chronos jobs logs ping --limit 3
  chronos jobs edit ping --set schedule="every 10m" --set target.url=http://127.0.0.1:3000/v2/ping`;

const WITH_ID = new Set(['get', 'rm', 'pause', 'resume', 'run', 'runs', 'logs', 'edit']);
/** `jobs logs` shows output excerpts, which can be long: fewer runs by default than `jobs runs`. */
const DEFAULT_LOGS_LIMIT = 5;

const dash = (v: string | null | undefined) => (v === null || v === undefined || v === '' ? '-' : v);
const orDash = (v: string | null) => v ?? '-';

/** Before the server's start-up reconcile it cannot know what NAS holds: say so instead of "no". */
const armedText = (job: JobView, reconciling: boolean) =>
  job.armed ? 'yes' : reconciling ? 'unknown' : 'no';

function jobsTable(jobs: JobView[], reconciling: boolean): string {
  if (jobs.length === 0) return 'no jobs';
  return table(
    ['ID', 'STATE', 'ARMED', 'NEXT RUN (UTC)', 'LAST', 'SOURCE', 'SCHEDULE'],
    jobs.map((j) => [
      j.id,
      j.enabled ? j.state : `${j.state} (disabled)`,
      armedText(j, reconciling),
      orDash(j.next_run_at),
      dash(j.last_status),
      j.source,
      j.schedule,
    ]),
  );
}

interface DamagedView {
  job_id: string;
  kind: 'job' | 'history';
  file: string;
  error: string;
}

function damagedTable(damaged: DamagedView[]): string {
  const lines = [
    '',
    `DAMAGED (${damaged.length}): a damaged job is not armed or run until its file is restored (then restart)`,
    'or the job is deleted with "chronos jobs rm <id>"; a damaged history was moved aside and the job runs on.',
    table(
      ['ID', 'KIND', 'FILE', 'ERROR'],
      damaged.map((d) => [d.job_id, d.kind, d.file, d.error.split('\n')[0]!.slice(0, 120)]),
    ),
  ];
  return lines.join('\n');
}

function jobDetails(job: JobView, reconciling: boolean): string {
  const target =
    job.target.type === 'http'
      ? `${job.target.method} ${job.target.url}`
      : job.target.type === 'command'
        ? job.target.argv.join(' ')
        : `handler ${job.target.name}`;
  const rows: Array<[string, string]> = [
    ['id', job.id],
    ['name', job.name],
    ['schedule', `${job.schedule} (${job.timezone})`],
    ['target', `${job.target.type}: ${target}`],
    ['state', `${job.state}${job.enabled ? '' : ' (disabled)'}`],
    ['armed', armedText(job, reconciling)],
    ['next run', orDash(job.next_run_at)],
    ['retry at', orDash(job.retry_at)],
    ['last run', `${orDash(job.last_run_at)} ${job.last_status ?? ''}`.trim()],
    ['last NAS fire', orDash(job.last_fire_at ?? null)],
    ['last error', dash(job.last_error)],
    ['failures', String(job.failure_streak)],
    ['repeat', `${job.repeat.completed} of ${job.repeat.times ?? 'unlimited'}`],
    ['source', job.source],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}

function runsTable(runs: RunView[]): string {
  if (runs.length === 0) return 'no runs yet';
  return table(
    ['RUN ID', 'TRIGGER', 'STATUS', 'ATTEMPT', 'FIRE AT (UTC)', 'DURATION', 'ERROR'],
    runs.map((r) => [
      r.run_id,
      r.trigger,
      r.status,
      String(r.attempt),
      orDash(r.fire_at),
      r.duration_ms === null ? '-' : `${(r.duration_ms / 1000).toFixed(1)}s`,
      dash(r.error?.split('\n')[0]?.slice(0, 80)),
    ]),
  );
}

export async function runJobs(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    argv,
    {
      url: { type: 'string' },
      json: { type: 'boolean' },
      file: { type: 'string' },
      limit: { type: 'string' },
      set: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
    true,
  );
  const [command, id, ...extra] = positionals;
  if (values.help || command === undefined || command === 'help') {
    if (command === undefined && !values.help) {
      io.err(JOBS_USAGE);
      return EXIT_USAGE;
    }
    io.out(JOBS_USAGE);
    return EXIT_OK;
  }
  const known = ['list', 'add', ...WITH_ID];
  if (!known.includes(command))
    throw new UsageError(`unknown jobs command "${command}" (one of ${known.join(', ')})`);
  if (WITH_ID.has(command) && id === undefined) throw new UsageError(`"${command}" needs a job id`);
  if (!WITH_ID.has(command) && id !== undefined)
    throw new UsageError(`"${command}" takes no argument "${id}"`);
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`);
  if (values.file !== undefined && command !== 'add' && command !== 'edit')
    throw new UsageError('--file is only for "jobs add" and "jobs edit"');
  if (values.limit !== undefined && command !== 'runs' && command !== 'logs')
    throw new UsageError('--limit is only for "jobs runs" and "jobs logs"');
  const sets = values.set ?? [];
  if (sets.length > 0 && command !== 'edit') throw new UsageError('--set is only for "jobs edit"');
  if (command === 'edit' && sets.length > 0 === (values.file !== undefined))
    throw new UsageError(
      'give the changes with --set path=value (repeatable) or with --file spec.json, not both',
    );
  // Checked before any call, so a mistyped path costs no round trip.
  const assignments = sets.map(parseAssignment);

  const api = await adminClient(io, 'jobs', values.url);
  if (typeof api === 'string') {
    io.err(api);
    return EXIT_FAILURE;
  }
  const path = id === undefined ? '' : `/${encodeURIComponent(id)}`;

  let reply: ApiReply;
  switch (command) {
    case 'list':
      reply = await api.call('GET', '/api/jobs');
      break;
    case 'get':
      reply = await api.call('GET', `/api/jobs${path}`);
      break;
    case 'add': {
      if (values.file === undefined && io.stdinIsTTY) {
        // Otherwise a person who forgot --file sees a command that seems to hang.
        io.err(
          'chronos jobs add: reading the job spec (JSON) from stdin; end with Ctrl-D, or pass --file spec.json',
        );
      }
      const text = values.file !== undefined ? await readSpecFile(values.file) : await io.readStdin();
      if (text.trim() === '')
        throw new UsageError('give the job spec with --file spec.json or as JSON on stdin');
      let spec: unknown;
      try {
        spec = JSON.parse(text);
      } catch (err) {
        io.err(`chronos jobs add: the spec is not valid JSON: ${errorMessage(err)}`);
        return EXIT_FAILURE;
      }
      const jobsFileShape =
        Array.isArray(spec) ||
        (typeof spec === 'object' && spec !== null && Array.isArray((spec as { jobs?: unknown }).jobs));
      if (jobsFileShape) {
        io.err(
          'chronos jobs add: this is a jobs file (a list of jobs), not one job spec. Give one job object ' +
            '({"id","schedule","target",...}) per "jobs add", or declare the file with CHRONOS_JOBS_FILE ' +
            '(check it first with: chronos check --jobs FILE).',
        );
        return EXIT_FAILURE;
      }
      reply = await api.call('POST', '/api/jobs', text);
      break;
    }
    case 'rm':
      reply = await api.call('DELETE', `/api/jobs${path}`);
      break;
    case 'runs': {
      const limit = parseCount(values.limit, '--limit', 20);
      reply = await api.call('GET', `/api/jobs${path}/runs?limit=${limit}`);
      break;
    }
    case 'logs': {
      const limit = parseCount(values.limit, '--limit', DEFAULT_LOGS_LIMIT);
      reply = await api.call('GET', `/api/jobs${path}/runs?limit=${limit}`);
      if (reply.status < 400) {
        // Newest last, as a log reads.
        const body = reply.body as { job_id: string; runs: RunView[] };
        const runs = [...body.runs].reverse();
        reply = { ...reply, body: { ...body, runs }, text: JSON.stringify({ ...body, runs }) };
      }
      break;
    }
    case 'edit': {
      let body: unknown;
      if (values.file !== undefined) {
        const text = await readSpecFile(values.file);
        try {
          body = JSON.parse(text);
        } catch (err) {
          io.err(`chronos jobs edit: ${values.file} is not valid JSON: ${errorMessage(err)}`);
          return EXIT_FAILURE;
        }
      } else {
        // Nested paths need the current value of the field they are in: the API replaces fields whole.
        const current = await api.call('GET', `/api/jobs${path}`);
        if (current.status >= 400) {
          io.err(`chronos jobs edit: ${describeError(current)}`);
          return EXIT_FAILURE;
        }
        body = patchFor(specOfView(current.body as JobView), assignments);
      }
      reply = await api.call('PATCH', `/api/jobs${path}`, body);
      break;
    }
    default:
      reply = await api.call('POST', `/api/jobs${path}/${command}`);
  }

  if (reply.status >= 400) {
    if (values.json) io.out(reply.text);
    io.err(`chronos jobs ${command}: ${describeError(reply)}`);
    return EXIT_FAILURE;
  }
  const body = reply.body as Record<string, unknown>;
  if (typeof body.warning === 'string') io.err(`warning: ${body.warning}`);
  if (values.json) {
    io.out(reply.text);
    return EXIT_OK;
  }
  switch (command) {
    case 'list': {
      const { jobs, damaged = [] } = body as unknown as { jobs: JobView[]; damaged?: DamagedView[] };
      io.out(jobsTable(jobs, body.reconciling === true));
      if (damaged.length > 0) io.out(damagedTable(damaged));
      break;
    }
    case 'get':
      io.out(jobDetails(body as unknown as JobView, body.reconciling === true));
      break;
    case 'runs':
      io.out(runsTable((body as unknown as { runs: RunView[] }).runs));
      break;
    case 'logs':
      io.out(runLogs((body as unknown as { runs: RunView[] }).runs));
      break;
    case 'rm':
      io.out(
        typeof body.moved_to === 'string'
          ? `deleted ${id} (damaged; its file was moved to ${body.moved_to})`
          : `deleted ${id}`,
      );
      break;
    case 'run':
      io.out(`started run ${String(body.run_id)} of ${id} (manual)`);
      break;
    default: {
      const job = body as unknown as JobView;
      const verb =
        { add: 'created', pause: 'paused', resume: 'resumed', edit: 'updated' }[command] ?? command;
      io.out(
        `${verb} ${job.id}: state ${job.state}, next run ${orDash(job.next_run_at)}, armed ${job.armed ? 'yes' : 'no'}`,
      );
    }
  }
  return EXIT_OK;
}

async function readSpecFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`);
  }
}
