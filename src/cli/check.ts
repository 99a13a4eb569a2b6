import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { formatInstant } from '../clock.js';
import type { Config } from '../config/config.js';
import { missingNasSettings } from '../config/config.js';
import { loadConfig } from '../config/load.js';
import { errorMessage, isChronosError } from '../errors.js';
import { buildJob } from '../jobs/build.js';
import { compileSchedule } from '../jobs/jobs.js';
import { pastMisfireGrace } from '../jobs/lifecycle.js';
import type { Job } from '../jobs/model.js';
import { ACCEPTED_FORMS } from '../jobs/schedule.js';
import { checkJobsFile } from '../jobs-file/jobs-file.js';
import { chronosUnavailableReason, explicitChronosProblem } from '../nas/provider-check.js';
import { type CliIo, EXIT_FAILURE, EXIT_OK, formatInZone, parseCommandArgs, parseCount } from './common.js';
import { effectiveZone, occurrences } from './next.js';

export const CHECK_USAGE = `Usage: chronos check [--jobs FILE] [--next N] [--json]

Validates the configuration (environment) and the jobs file without starting anything, and prints when
each declared job will fire: in its own zone and in UTC. With CHRONOS_DATABASE_URL set, also reports the
database's schema state (current, created or migrated at the next start, or newer than this Chronos).
Exit code 1 on any error.

Options:
  --jobs FILE    jobs file to check (default CHRONOS_JOBS_FILE)
  --next N       occurrences to print per job (default 3)
  --json         print {"jobs":[{"id","schedule","timezone","next":[...]}],"errors":[{"path","message"}]}
  -h, --help     this text`;

interface Problem {
  path: string;
  message: string;
}

interface CheckedJob {
  id: string;
  schedule: string;
  timezone: string;
  next: number[];
  note: string | null;
}

function problemsOf(err: unknown, fallbackPath: string): Problem[] {
  if (!isChronosError(err)) throw err;
  const details = err.details?.problems;
  if (Array.isArray(details) && details.length > 0) {
    return details.map((p: unknown) =>
      typeof p === 'string'
        ? { path: fallbackPath, message: p }
        : { path: String((p as Problem).path), message: String((p as Problem).message) },
    );
  }
  return [{ path: fallbackPath, message: err.message }];
}

/** The fire times a declared job would get if the server started now (the same build the sync does). */
function plannedJob(job: Job, count: number, now: number): CheckedJob {
  const schedule = compileSchedule(job);
  const zone = effectiveZone(schedule, job.timezone);
  const first = job.next_run_at;
  const remaining = job.repeat.times === null ? count : Math.min(count, job.repeat.times);
  const next =
    first === null ? [] : [first, ...occurrences(schedule, first, remaining - 1)].slice(0, remaining);
  let note: string | null = !job.enabled ? 'disabled: it will not fire until enabled' : null;
  if (job.enabled && schedule.kind === 'once' && schedule.at < now) {
    // The server's rule for a past one-shot in the jobs file (src/jobs/build.ts, docs/jobs.md).
    note = !pastMisfireGrace(job, schedule.at, now)
      ? `in the past but within its misfire grace (${job.misfire.grace_seconds} s): runs once at start`
      : `in the past: recorded as missed at start (misfire grace ${job.misfire.grace_seconds} s), never run`;
  }
  return { id: job.id, schedule: job.schedule, timezone: zone, next, note };
}

export async function runCheck(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    jobs: { type: 'string' },
    next: { type: 'string' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    io.out(CHECK_USAGE);
    return EXIT_OK;
  }
  const count = parseCount(values.next, '--next', 3);
  const errors: Problem[] = [];
  let config: Readonly<Config> | undefined;
  try {
    config = loadConfig(io.env);
  } catch (err) {
    errors.push(...problemsOf(err, 'configuration'));
  }
  // The server's start-up rule for the provider (src/main.ts): an explicit chronos that cannot work is an
  // error; auto with every NAS setting but an unusable token falls back to the builtin timer.
  let providerProblem: string | undefined;
  let providerWarning: string | undefined;
  if (config && config.provider !== 'builtin') {
    const reason = chronosUnavailableReason(config);
    if (reason !== null && config.provider === 'chronos') providerProblem = explicitChronosProblem(reason);
    else if (reason !== null && missingNasSettings(config).length === 0)
      providerWarning = `CHRONOS_PROVIDER=auto falls back to the builtin timer (never sleeps): ${reason}`;
  }
  if (providerProblem) errors.push({ path: 'configuration', message: providerProblem });
  const timezone = config?.timezone ?? 'UTC';
  const jobsFile = values.jobs ?? config?.jobsFile ?? io.env['CHRONOS_JOBS_FILE'];
  const jobs: CheckedJob[] = [];
  let acceptedForms: readonly string[] | undefined;
  if (jobsFile) {
    const path = resolve(jobsFile);
    let text: string | undefined;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? errorMessage(err);
      errors.push({ path: 'jobs file', message: `cannot read ${jobsFile}: ${code}` });
    }
    if (text !== undefined) {
      // The server's own check, with the same clock reading for the build and the plan.
      const now = Date.now();
      const checked = checkJobsFile(text, { defaultTimezone: timezone, now });
      for (const p of checked.problems) errors.push({ path: p.path || jobsFile, message: p.message });
      if (checked.scheduleHelp) acceptedForms = ACCEPTED_FORMS;
      for (const spec of checked.specs) {
        const job = buildJob(spec, { now, defaultTimezone: timezone, allowCommands: true, source: 'file' });
        jobs.push(plannedJob(job, count, now));
      }
    }
  }

  // The database's schema state, when one is configured: what the server will do with it at start.
  let database: { state: string; database?: number; code?: number; error?: string } | undefined;
  let databaseLine: string | undefined;
  if (config?.databaseUrl) {
    const { PostgresStore } = await import('../store/postgres/postgres-store.js');
    try {
      const state = await PostgresStore.schemaState({
        url: config.databaseUrl,
        statementTimeoutMs: config.databaseStatementTimeoutMs,
      });
      database = state;
      if (state.state === 'newer') {
        errors.push({ path: 'database', message: PostgresStore.schemaNewerError(state).message });
      } else {
        databaseLine =
          state.state === 'current'
            ? `database: schema version ${state.database} (current)`
            : state.state === 'empty'
              ? `database: no Chronos tables yet; they are created (version ${state.code}) at start`
              : `database: schema version ${state.database}; migrated to version ${state.code} at the next start`;
      }
    } catch (err) {
      const message = errorMessage(err);
      database = { state: 'unreachable', error: message };
      errors.push({ path: 'database', message: `cannot read the schema version: ${message}` });
    }
  }

  if (values.json) {
    const body = {
      ...(database ? { database } : {}),
      jobs: jobs.map((j) => ({
        id: j.id,
        schedule: j.schedule,
        timezone: j.timezone,
        next: j.next.map((at) => formatInstant(at)),
        note: j.note,
      })),
      errors,
    };
    io.out(JSON.stringify(body));
    return errors.length > 0 ? EXIT_FAILURE : EXIT_OK;
  }

  const lines: string[] = [];
  if (config && !providerProblem) {
    lines.push(
      `configuration: ok (provider ${config.provider}, timezone ${config.timezone}, data dir ${config.dataDir})`,
    );
    if (providerWarning) lines.push(`  warning: ${providerWarning}`);
  }
  if (databaseLine) lines.push(databaseLine);
  if (!jobsFile) lines.push('jobs file: none (set CHRONOS_JOBS_FILE or pass --jobs FILE)');
  else if (jobs.length > 0 || errors.length === 0)
    lines.push(`jobs file: ${jobsFile} (${jobs.length} job${jobs.length === 1 ? '' : 's'})`);
  for (const job of jobs) {
    lines.push('', `${job.id}  "${job.schedule}"  (${job.timezone})${job.note ? `  [${job.note}]` : ''}`);
    if (job.next.length === 0) lines.push('  never fires after now');
    for (const at of job.next) lines.push(`  ${formatInZone(at, job.timezone)}   ${formatInstant(at)}`);
  }
  if (lines.length > 0) io.out(lines.join('\n'));
  if (errors.length > 0) {
    io.err(
      `chronos check: ${errors.length} problem${errors.length === 1 ? '' : 's'}:\n${errors.map((e) => `  ${e.path}: ${e.message}`).join('\n')}${acceptedForms ? `\nAccepted schedule forms:\n${acceptedForms.map((f) => `  - ${f}`).join('\n')}` : ''}`,
    );
    return EXIT_FAILURE;
  }
  return EXIT_OK;
}
