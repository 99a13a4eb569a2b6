// src/jobs-file/ owns the jobs file (CHRONOS_JOBS_FILE): parsing it and syncing it into the store at start.
// It is I/O over jobs/ and store/, so it lives outside the core.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as z from 'zod/mini';
import { formatInstant } from '../clock.js';
import { ChronosError, errorMessage, isChronosError } from '../errors.js';
import { buildJob } from '../jobs/build.js';
import { defaultRepeatTimes } from '../jobs/lifecycle.js';
import type { Job } from '../jobs/model.js';
import { ACCEPTED_FORMS, isOneShotSchedule, parseSchedule } from '../jobs/schedule.js';
import { JobSpec } from '../jobs/spec.js';
import { jobSpecOf } from '../jobs/view.js';
import { isValidTimeZone } from '../jobs/zone.js';
import { writeFileAtomic } from '../store/atomic-file.js';
import type { Store } from '../store/store.js';
import { describeJsonError, toFieldProblems, unknownKeyMessage } from '../validation.js';

/** Where the digest of the last synced jobs file is kept, in the data directory. */
export const JOBS_FILE_SYNC_STATE = 'jobs-file.sync.json';
const SYNC_STATE_VERSION = 1;

/** A jobs file entry: a job spec whose id is required (it is how the file and the store are matched). */
export type DeclaredJobSpec = JobSpec & { id: string };

export interface LoadedJobsFile {
  path: string;
  specs: DeclaredJobSpec[];
  /** SHA-256 of the file's bytes, hex. */
  sha256: string;
}

export interface JobsFileProblem {
  /** `jobs[<id or index>].<field>` */
  path: string;
  message: string;
}

export interface JobsFileSyncContext {
  now: number;
  defaultTimezone: string;
}

export interface JobsFileSyncResult {
  created: string[];
  updated: string[];
  removed: string[];
  unchanged: string[];
  /** Declared jobs whose stored record is damaged: left as they are (never overwritten), synced next start. */
  damaged: string[];
}

/** Shown once under a report that has schedule problems, rather than after every one of them. */
function acceptedFormsText(): string {
  return `Accepted schedule forms:\n${ACCEPTED_FORMS.map((form) => `  - ${form}`).join('\n')}`;
}

function problemsError(path: string, problems: JobsFileProblem[], scheduleHelp = false): ChronosError {
  const lines = problems.map((p) => `  ${p.path || path}: ${p.message}`).join('\n');
  const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
  const help = scheduleHelp ? `\n${acceptedFormsText()}` : '';
  return new ChronosError('validation_failed', `jobs file ${path} has ${count}:\n${lines}${help}`, {
    file: path,
    problems,
    ...(scheduleHelp ? { accepted_forms: ACCEPTED_FORMS } : {}),
  });
}

function joinPath(prefix: string, path: string): string {
  return path === '' ? prefix : `${prefix}.${path}`;
}

function jsonProblem(text: string, err: unknown): JobsFileProblem {
  return { path: '', message: `not valid JSON at ${describeJsonError(text, err)}` };
}

export interface JobsFileCheck {
  specs: DeclaredJobSpec[];
  problems: JobsFileProblem[];
  /** Whether a schedule failed to parse: the report then shows the accepted forms once. */
  scheduleHelp: boolean;
}

export interface JobsFileCheckOptions {
  defaultTimezone?: string;
  /** The instant the jobs would be built at (start-up); default now. */
  now?: number;
}

/**
 * Every problem of every entry, in one pass: shape and unknown keys (with a "did you mean"), the required
 * and unique id, the schedule and zone (checked on the raw entry, so a mistake elsewhere in it does not hide
 * them), and what building the job checks. Entries are named by id, or by index when the id is missing or
 * declared more than once. Entries without problems are returned; nothing is thrown.
 */
export function checkJobsFile(text: string, options: JobsFileCheckOptions = {}): JobsFileCheck {
  const defaultTimezone = options.defaultTimezone ?? 'UTC';
  const now = options.now ?? Date.now();
  const result: JobsFileCheck = { specs: [], problems: [], scheduleHelp: false };
  const { problems } = result;
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (err) {
    problems.push(jsonProblem(text, err));
    return result;
  }
  const isObject = typeof document === 'object' && document !== null && !Array.isArray(document);
  const entries = Array.isArray(document)
    ? document
    : isObject && Array.isArray((document as { jobs?: unknown }).jobs)
      ? (document as { jobs: unknown[] }).jobs
      : undefined;
  if (isObject) {
    for (const key of Object.keys(document as object).filter((k) => k !== 'jobs'))
      problems.push({ path: '', message: `${unknownKeyMessage(key, ['jobs'])} (only "jobs" is read)` });
  }
  if (entries === undefined) {
    problems.push({ path: '', message: 'expected {"jobs": [<job spec>, ...]} or a JSON array of job specs' });
    return result;
  }

  const idCount = new Map<string, number>();
  const firstIndex = new Map<string, number>();
  entries.forEach((entry, index) => {
    const id = typeof entry === 'object' && entry !== null ? (entry as { id?: unknown }).id : undefined;
    if (typeof id === 'string') {
      idCount.set(id, (idCount.get(id) ?? 0) + 1);
      if (!firstIndex.has(id)) firstIndex.set(id, index);
    }
  });

  entries.forEach((entry, index) => {
    const raw = (typeof entry === 'object' && entry !== null ? entry : {}) as Record<string, unknown>;
    const rawId = raw['id'];
    const unique = typeof rawId === 'string' && rawId !== '' && idCount.get(rawId) === 1;
    const label = unique ? `jobs[${rawId}]` : `jobs[${index}]`;
    const before = problems.length;
    const parsed = z.safeParse(JobSpec, entry);
    if (!parsed.success) {
      for (const p of toFieldProblems(parsed.error, JobSpec, entry))
        problems.push({ path: joinPath(label, p.path), message: p.message });
    }
    if (rawId === undefined && raw === entry) {
      problems.push({
        path: `${label}.id`,
        message: 'is required in the jobs file (it is how declared jobs are matched)',
      });
    } else if (typeof rawId === 'string' && !unique && rawId !== '') {
      const first = firstIndex.get(rawId)!;
      if (first !== index) {
        problems.push({
          path: `${label}.id`,
          message: `duplicate id: entries ${first} and ${index} both declare "${rawId}"`,
        });
      }
    }
    let zone = typeof raw['timezone'] === 'string' && raw['timezone'] !== '' ? raw['timezone'] : undefined;
    if (zone !== undefined && !isValidTimeZone(zone)) {
      problems.push({
        path: `${label}.timezone`,
        message: `unknown time zone "${zone}"; use an IANA name such as Europe/Paris`,
      });
      zone = undefined;
    }
    if (typeof raw['schedule'] === 'string' && raw['schedule'].trim() !== '') {
      try {
        parseSchedule(raw['schedule'], { timezone: zone ?? defaultTimezone, anchor: 0 });
      } catch (err) {
        if (!isChronosError(err)) throw err;
        const problem = err.details?.problem;
        problems.push({
          path: `${label}.schedule`,
          message: typeof problem === 'string' ? problem : err.message,
        });
        result.scheduleHelp = true;
      }
    }
    if (!parsed.success || problems.length > before || typeof rawId !== 'string') return;
    const spec = declared(parsed.data as DeclaredJobSpec, defaultTimezone);
    // What the sync's build would refuse (a schedule that never fires again) is reported in this round too.
    try {
      buildJob(spec, { now, defaultTimezone, allowCommands: true, source: 'file' });
    } catch (err) {
      if (!isChronosError(err)) throw err;
      for (const p of fieldProblemsOf(err))
        problems.push({ path: joinPath(label, p.path), message: p.message });
      return;
    }
    result.specs.push(spec);
  });
  return result;
}

function fieldProblemsOf(err: ChronosError): JobsFileProblem[] {
  return (
    (err.details?.problems as JobsFileProblem[] | undefined) ?? [
      { path: err.code === 'invalid_schedule' ? 'schedule' : '', message: err.message },
    ]
  );
}

/**
 * Validate jobs-file text without touching any store; throws one `validation_failed` error listing every
 * problem (see checkJobsFile).
 */
export function parseJobsFile(
  text: string,
  path: string,
  defaultTimezone = 'UTC',
  now?: number,
): DeclaredJobSpec[] {
  const checked = checkJobsFile(text, { defaultTimezone, ...(now === undefined ? {} : { now }) });
  if (checked.problems.length > 0) throw problemsError(path, checked.problems, checked.scheduleHelp);
  return checked.specs;
}

async function readJobsFileText(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ChronosError(
      'invalid_config',
      `cannot read the jobs file CHRONOS_JOBS_FILE=${path}: ${code ?? errorMessage(err)}`,
      {
        file: path,
      },
    );
  }
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Read and validate a jobs file; throws one `validation_failed` error listing every problem. */
export async function loadJobsFile(
  path: string,
  defaultTimezone = 'UTC',
  now?: number,
): Promise<LoadedJobsFile> {
  const bytes = await readJobsFileText(path);
  return {
    path,
    specs: parseJobsFile(bytes.toString('utf8'), path, defaultTimezone, now),
    sha256: sha256(bytes),
  };
}

/**
 * A declared spec as the full description of the job: what the file leaves out takes its default, not the
 * value a previous version of the file (or a pause) left in the store.
 */
function declared(spec: DeclaredJobSpec, defaultTimezone: string): DeclaredJobSpec {
  const oneShot = isOneShotSchedule(spec.schedule);
  return {
    ...spec,
    timezone: spec.timezone ?? defaultTimezone,
    enabled: spec.enabled ?? true,
    repeat: spec.repeat ?? { times: defaultRepeatTimes(oneShot) },
  };
}

function sameSpec(a: Job, b: Job): boolean {
  return a.source === b.source && JSON.stringify(jobSpecOf(a)) === JSON.stringify(jobSpecOf(b));
}

/**
 * Make the store match the declared jobs: create new ones, update changed ones keeping their runtime state
 * (next run, counters, pause), remove file jobs no longer declared. Everything is checked before anything is
 * written, so a bad file changes nothing. A declared id already used by an API job is an error.
 */
export async function syncJobsFile(
  store: Store,
  specs: readonly DeclaredJobSpec[],
  ctx: JobsFileSyncContext,
  path = 'the jobs file',
  earlier?: JobsFileCheck,
): Promise<JobsFileSyncResult> {
  const existing = new Map((await store.listJobs()).map((job) => [job.id, job]));
  const damaged = new Set((await store.damaged('job')).map((d) => d.job_id));
  // Problems the text check found are reported with those only the store can tell, in one report.
  const problems: JobsFileProblem[] = [...(earlier?.problems ?? [])];
  const plan: Array<{ kind: 'create' | 'update' | 'same'; job: Job; spec: DeclaredJobSpec }> = [];
  const buildContext = {
    now: ctx.now,
    defaultTimezone: ctx.defaultTimezone,
    allowCommands: true,
    source: 'file' as const,
  };

  const result: JobsFileSyncResult = { created: [], updated: [], removed: [], unchanged: [], damaged: [] };
  for (const raw of specs) {
    const spec = declared(raw, ctx.defaultTimezone);
    if (damaged.has(spec.id)) {
      // Its file is the operator's to restore or delete (the log and /api/status name it); every other
      // declared job is still synced.
      result.damaged.push(spec.id);
      continue;
    }
    const current = existing.get(spec.id);
    if (current && current.source !== 'file') {
      problems.push({
        path: `jobs[${spec.id}].id`,
        message: `a job "${spec.id}" already exists, created through the API; delete it (chronos jobs rm ${spec.id}) or declare the job under another id`,
      });
      continue;
    }
    try {
      const job = buildJob(spec, buildContext, current);
      plan.push({ kind: !current ? 'create' : sameSpec(current, job) ? 'same' : 'update', job, spec });
    } catch (err) {
      if (!isChronosError(err)) throw err;
      for (const p of fieldProblemsOf(err))
        problems.push({ path: joinPath(`jobs[${spec.id}]`, p.path), message: p.message });
    }
  }
  if (problems.length > 0) throw problemsError(path, problems, earlier?.scheduleHelp);

  const declaredIds = new Set(specs.map((s) => s.id));
  for (const step of plan) {
    if (step.kind === 'create') {
      await store.createJob(step.job);
      result.created.push(step.job.id);
    } else if (step.kind === 'update') {
      // Rebuilt from the fresh record under the store's lock, so nothing a concurrent fire wrote is lost.
      await store.updateJob(step.job.id, (fresh) => buildJob(step.spec, buildContext, fresh));
      result.updated.push(step.job.id);
    } else result.unchanged.push(step.job.id);
  }
  for (const job of existing.values()) {
    if (job.source === 'file' && !declaredIds.has(job.id)) {
      await store.removeJob(job.id);
      result.removed.push(job.id);
    }
  }
  return result;
}

interface SyncState {
  version: number;
  path: string;
  sha256: string;
  /** Declared jobs without a timezone take this one, so a change of CHRONOS_TIMEZONE is a change too. */
  default_timezone: string;
  synced_at: string;
}

async function readSyncState(file: string): Promise<SyncState | undefined> {
  try {
    const state = JSON.parse(await readFile(file, 'utf8')) as SyncState;
    return state.version === SYNC_STATE_VERSION ? state : undefined;
  } catch {
    // Missing or unreadable: a full sync rewrites it.
    return undefined;
  }
}

export interface StartupSyncOptions {
  store: Store;
  path: string;
  dataDir: string;
  now: number;
  defaultTimezone: string;
}

export type StartupSyncResult = ({ skipped: false } & JobsFileSyncResult) | { skipped: true; sha256: string };

/**
 * The start-up step: when the file's bytes are those of the last successful sync, nothing else is read
 * (cold start is the figure that matters, and listing every job costs one read per job). Otherwise validate,
 * sync, and remember the digest only after the sync succeeded.
 */
export async function syncJobsFileAtStart(options: StartupSyncOptions): Promise<StartupSyncResult> {
  const bytes = await readJobsFileText(options.path);
  const digest = sha256(bytes);
  const state = await readSyncState(join(options.dataDir, JOBS_FILE_SYNC_STATE));
  if (
    state &&
    state.sha256 === digest &&
    state.path === options.path &&
    state.default_timezone === options.defaultTimezone
  ) {
    return { skipped: true, sha256: digest };
  }

  const checked = checkJobsFile(bytes.toString('utf8'), {
    defaultTimezone: options.defaultTimezone,
    now: options.now,
  });
  const result = await syncJobsFile(
    options.store,
    checked.specs,
    { now: options.now, defaultTimezone: options.defaultTimezone },
    options.path,
    checked,
  );
  // Not remembered as synced while a declared job could not be: the next start tries it again.
  if (result.damaged.length > 0) return { skipped: false, ...result };
  const next: SyncState = {
    version: SYNC_STATE_VERSION,
    path: options.path,
    sha256: digest,
    default_timezone: options.defaultTimezone,
    synced_at: formatInstant(options.now),
  };
  await writeFileAtomic(options.dataDir, JOBS_FILE_SYNC_STATE, `${JSON.stringify(next, null, 2)}\n`);
  return { skipped: false, ...result };
}
