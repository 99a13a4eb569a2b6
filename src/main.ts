import { join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { AlertService } from './alerts/service.js';
import { type Clock, systemClock, type TimerHandle } from './clock.js';
import type { Config } from './config/config.js';
import { missingNasSettings } from './config/config.js';
import { loadConfig } from './config/load.js';
import { ChronosError, isChronosError } from './errors.js';
import { createFireTokenVerifier } from './fire/token.js';
import { connectionCap, descriptorLimit } from './http/limits.js';
import { adminOffRoutes, buildServer, SERVER_TIMEOUTS } from './http/server.js';
import { createLogger } from './logging/logger.js';
import type { NasClient } from './nas/nas.js';
import { chronosUnavailableReason, explicitChronosProblem } from './nas/provider-check.js';
import { Engine } from './occurrence/engine.js';
import type { SchedulerProvider } from './occurrence/provider.js';
import type { JobRunner } from './run/runner.js';
import { createHandlerRegistry, type HandlerRegistry } from './run/targets/handler.js';
import { Activity } from './scheduler/activity.js';
import { BuiltinProvider } from './scheduler/builtin.js';
import { ChronosProvider } from './scheduler/chronos.js';
import { IdleExit } from './scheduler/idle-exit.js';
import { armLockOf } from './store/arm-lock.js';
import { FileStore } from './store/file-store.js';
import { LeaseKeeper } from './store/lease.js';
import { currentOwner } from './store/owner.js';
import type { DamagedRecord, Store } from './store/store.js';
import { USER_AGENT, VERSION } from './version.js';

export interface StartOptions {
  env: Readonly<Record<string, string | undefined>>;
  /** In-process handlers for `{"type":"handler"}` targets (library use). */
  handlers?: HandlerRegistry;
  clock?: Clock;
  logger?: Logger;
  /** Called instead of process.exit when the process decides to stop (idle or signal). */
  exit?: (code: number) => void;
  /** Install SIGTERM/SIGINT handlers (the CLI does; embedding applications may not want it). */
  handleSignals?: boolean;
  /** When the process started (epoch ms), for the awake time `/api/status` reports; default: this call. */
  wokeAt?: number;
}

export interface RunningChronos {
  config: Readonly<Config>;
  app: FastifyInstance;
  store: Store;
  provider: () => SchedulerProvider;
  url: string;
  /** Stop accepting fires, let runs finish up to the grace period, persist, close. */
  shutdown(reason: string): Promise<void>;
}

/**
 * The one composition root: config → store → NAS client → provider → server → listen → provider start.
 * Work that a fire does not need (boot recovery, reconcile, JWKS warm-up) starts only after listening, so
 * a woken process answers its first fire as early as possible.
 */
export async function startChronos(options: StartOptions): Promise<RunningChronos> {
  const enteredAt = (options.clock ?? systemClock).now();
  const config = loadConfig(options.env);
  if (config.provider === 'chronos') {
    // Asked for by name: falling back to the builtin timer would keep a scale-to-zero machine awake for good.
    const reason = chronosUnavailableReason(config);
    if (reason !== null) {
      const problem = explicitChronosProblem(reason);
      throw new ChronosError('invalid_config', `Chronos cannot start: ${problem}`, { problems: [problem] });
    }
  }
  const clock = options.clock ?? systemClock;
  const logger =
    options.logger ??
    (await createLogger({
      level: config.logLevel,
      format: config.logFormat,
      stdoutIsTTY: process.stdout.isTTY === true,
    }));
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const dataDir = resolve(config.dataDir);
  const onDamaged = (record: DamagedRecord) =>
    logger.error(
      { code: 'store_corrupt', job_id: record.job_id, file: record.file, error: record.error },
      record.kind === 'job'
        ? 'damaged job record: this job is left out (not armed, not run) until it is restored or the job is deleted'
        : 'damaged run history moved aside: the job goes on with a new history',
    );
  let databaseReady: (() => Promise<void>) | undefined;
  let store: Store;
  if (config.databaseUrl) {
    // Loaded only when configured: the file store's cold start never pays for the driver.
    const { openServerPostgresStore } = await import('./store/postgres/server.js');
    const settings = {
      url: config.databaseUrl,
      poolSize: config.databasePoolSize,
      statementTimeoutMs: config.databaseStatementTimeoutMs,
    };
    const opened = await openServerPostgresStore(settings, {
      clock,
      logger,
      onDamaged,
      dataDir,
      onFatal: () => logger.flush(() => exit(1)),
    });
    store = opened;
    databaseReady = () => opened.whenReady();
  } else {
    store = await FileStore.open({
      dir: dataDir,
      onDamaged,
      onLockBroken: (broken) =>
        logger.warn(broken, 'store lock taken over: its holder is gone or stopped renewing it'),
    });
  }
  const startedAt = clock.now();
  if (config.jobsFile) {
    // Before listening: a jobs file with errors stops the start, and fires must see the declared jobs.
    const { syncJobsFileAtStart } = await import('./jobs-file/jobs-file.js');
    try {
      const synced = await syncJobsFileAtStart({
        store,
        path: resolve(config.jobsFile),
        dataDir,
        now: clock.now(),
        defaultTimezone: config.timezone,
      });
      logger.info({ jobs_file: config.jobsFile, ...synced }, 'jobs file synced');
    } catch (err) {
      await store.close();
      throw err;
    }
  }
  const owner = currentOwner();
  const activity = new Activity();
  const leases = new LeaseKeeper({
    store,
    owner,
    clock,
    busy: () => activity.snapshot().run > 0,
    onError: (err) => logger.warn({ err }, 'claim lease renewal failed; retried at the next renewal'),
  });
  leases.start();
  const handlers = options.handlers ?? createHandlerRegistry();

  // Alerts load with the first run (or at start-up), never on the fire path's cold start.
  let alerts: Promise<AlertService> | undefined;
  const getAlerts = () => {
    alerts ??= import('./alerts/service.js').then(
      ({ AlertService }) =>
        new AlertService({
          store,
          clock,
          logger,
          activity,
          defaults: config.notifyUrl ? { url: config.notifyUrl, format: config.notifyFormat } : undefined,
          secret: config.notifySecret,
        }),
    );
    return alerts;
  };

  let runner: Promise<JobRunner> | undefined;
  const getRunner = () => {
    runner ??= Promise.all([import('./run/runner.js'), getAlerts()]).then(
      ([{ JobRunner }, alertService]) =>
        new JobRunner({
          store,
          clock,
          logger,
          handlers,
          allowCommands: config.allowCommands,
          alerts: alertService,
          targetSigningSecret: config.targetSigningSecret,
        }),
    );
    return runner;
  };

  let nas: Promise<NasClient> | undefined;
  const getNas = () => {
    nas ??= Promise.all([import('./nas/http-client.js'), import('./nas/token-source.js')]).then(
      ([{ createHttpNasClient }, { createTokenSource }]) =>
        createHttpNasClient({
          portalUrl: config.portalUrl!,
          callbackUrl: config.callbackUrl!,
          tokenSource: createTokenSource({ token: config.accessToken, file: config.accessTokenFile }),
          userAgent: USER_AGENT,
          clock,
          logger,
        }),
    );
    return nas;
  };

  // Replicas sharing the store arm one at a time, and settle the runs a dead replica left (docs/architecture.md).
  const armLock = armLockOf(store, { holder: `${owner.host}/${owner.pid}/${owner.boot_id}`, clock, logger });
  // Loaded only then: nothing new on a file store's cold start.
  const orphans = armLock.shared
    ? new (await import('./run/orphan-sweep.js')).OrphanSweep({
        clock,
        logger,
        recover: async () => (await getRunner()).recoverInterrupted(),
      })
    : undefined;

  let provider: SchedulerProvider;
  const engine = new Engine({
    store,
    clock,
    logger,
    activity,
    owner,
    runner: getRunner,
    provider: () => provider,
    alerts: getAlerts,
  });
  const builtin = (reason: string | null) => new BuiltinProvider({ store, clock, logger, engine, reason });

  const wantChronos =
    config.provider === 'chronos' || (config.provider === 'auto' && missingNasSettings(config).length === 0);
  if (wantChronos) {
    const chronos = new ChronosProvider({
      store,
      clock,
      logger,
      engine,
      activity,
      nas: getNas,
      armLock,
      unavailableReason: () => chronosUnavailableReason(config),
      ...(config.armingAlertSeconds > 0
        ? {
            armingAlertAfterMs: config.armingAlertSeconds * 1000,
            onArmingFailed: (jobId: string, since: number, error: string) =>
              void getAlerts().then((a) => a.armingFailed(jobId, since, error)),
          }
        : {}),
      onInvalidClient: (remedy) => {
        logger.warn({ code: 'nas_invalid_client' }, remedy);
        provider = builtin('NAS rejected the agent (invalid_client)');
        void provider.start().catch((err) => logger.error({ err }, 'builtin provider failed to start'));
      },
    });
    const available = chronos.isAvailable();
    if (available.ok) provider = chronos;
    else {
      // Only `auto` gets here (an explicit `chronos` was refused above); said loudly, because the builtin
      // timer keeps the process running and never lets it sleep.
      logger.warn(
        { reason: available.reason, provider_configured: config.provider },
        'CHRONOS_PROVIDER=auto: every NAS setting is present but the chronos provider cannot work; using the builtin timer, which keeps this process awake',
      );
      provider = builtin(`chronos provider unavailable: ${available.reason}`);
    }
  } else {
    if (config.provider === 'auto')
      logger.info(
        { missing: missingNasSettings(config) },
        'NAS settings not configured; using the builtin (in-process) timer',
      );
    provider = builtin(null);
  }

  const verifier = createFireTokenVerifier({
    audience: config.expectedAudience,
    issuer: config.portalUrl,
    jwksUrl: config.jwksUrl,
    publicKey: config.firePublicKey,
    cacheFile: join(dataDir, 'jwks-cache.json'),
    maxLifetimeSeconds: config.fireTokenMaxLifetimeSeconds,
    clock,
    logger,
  });

  // The start-up work below is held back for a woken process's first reply; an admin read that wants its
  // result (GET /api/jobs, /api/status) starts it at once instead of waiting behind itself.
  let startupDone = false;
  let startStartup: () => void = () => {};
  let markStartupDone: () => void = () => {};
  const startupFinished = new Promise<void>((resolve) => {
    markStartupDone = () => {
      startupDone = true;
      resolve();
    };
  });
  const startup = {
    done: () => startupDone,
    wait: async (timeoutMs: number): Promise<boolean> => {
      startStartup();
      let timer: TimerHandle | undefined;
      const timedOut = new Promise<void>((resolve) => {
        timer = clock.setTimeout(resolve, timeoutMs);
      });
      await Promise.race([startupFinished, timedOut]);
      if (timer) clock.clearTimeout(timer);
      return startupDone;
    },
  };

  // Decides when the process stops, and reports why it is awake (src/scheduler/idle-exit.ts).
  const wake = new IdleExit({
    clock,
    activity,
    logger,
    provider: () => provider,
    idleMs: config.idleExitSeconds * 1000,
    wokeAt: options.wokeAt ?? enteredAt,
    onIdle: () => void stopAndExit('idle'),
  });

  let draining = false;
  const maxConnections = connectionCap(descriptorLimit());
  const app = await buildServer({
    logger,
    activity,
    trustProxy: config.trustProxy,
    maxConnections,
    onRequest: (cause) => wake.noteRequest(cause),
    fire: {
      store,
      clock,
      logger,
      verifier,
      owner,
      expectedToken: { audience: config.expectedAudience, issuer: config.portalUrl },
      rateLimit: { max: config.fireRateLimit, timeWindowMs: 1_000 },
      draining: () => (draining ? Math.max(1, config.shutdownGraceSeconds) : null),
      onDelivered: (jobId, fireAt) => provider.onDelivered?.(jobId, fireAt),
      // Tracked from the request on: a process settled by everything else must not stop before these start.
      onInactive: (jobId) => void activity.track('arming', () => provider.disarm(jobId)).catch(() => {}),
      onStale: (job) => void activity.track('arming', () => provider.arm(job)).catch(() => {}),
      onAccepted: (fire) => {
        // The sweep after a fire counts as run work: a process that settles meanwhile waits for it.
        void engine
          .onAccepted(fire)
          .then(() => (orphans ? activity.track('run', () => orphans.soon()) : undefined))
          .catch((err: unknown) => logger.error({ err }, 'orphan sweep after a fire failed'));
        // A process that stays up never starts again: its key set ages here, not at start-up. Tracked, so a
        // process that settles meanwhile does not cut the fetch short before its cache file is written.
        void activity.track('nas', () => verifier.refreshIfStale()).catch(() => {});
      },
    },
    plugins: config.adminToken
      ? [
          (await import('./http/admin.js')).adminPlugin({
            token: config.adminToken,
            store,
            clock,
            provider: () => provider,
            engine,
            defaultTimezone: config.timezone,
            allowCommands: config.allowCommands,
            configuredProvider: config.provider,
            jobsFile: config.jobsFile,
            jwksAgeMs: () => verifier.jwksAgeMs(),
            startedAt,
            replica: owner,
            handlers: options.handlers,
            startup,
            wake: () => wake.report(),
          }),
        ]
      : [adminOffRoutes],
  });

  let shuttingDown: Promise<void> | undefined;
  const shutdown = (reason: string): Promise<void> => {
    shuttingDown ??= (async () => {
      draining = true;
      wake.stop();
      // Alerts still pending stay so in the store; the next start sends them.
      if (alerts) (await alerts).stop();
      orphans?.stop();
      logger.info({ reason, grace_seconds: config.shutdownGraceSeconds }, 'shutting down');
      await provider.stop();
      // Accepted fires count from the claim to the post-run arm (Engine.onAccepted), not only while the
      // runner executes: a fire still arming its next occurrence must not be cut off.
      if (activity.snapshot().run > 0) {
        let graceTimer: TimerHandle | undefined;
        const graceOver = new Promise<'timeout'>((r) => {
          graceTimer = clock.setTimeout(() => r('timeout'), config.shutdownGraceSeconds * 1000);
        });
        const ended = await Promise.race([activity.whenIdle('run').then(() => 'idle' as const), graceOver]);
        // Runs that end early must not leave the grace timer holding an embedding process open.
        if (graceTimer) clock.clearTimeout(graceTimer);
        if (ended === 'timeout') {
          logger.warn({ active: activity.snapshot().run }, 'grace period over; aborting runs still going');
          if (runner) (await runner).abortAll('shutdown grace period over');
          // Pending NAS calls (a post-run arm in backoff) end when the client closes.
          if (nas) await (await nas).close();
          await activity.whenIdle('run');
        }
      }
      // Node stops checking request deadlines once its server is closing, so a client stalling its body
      // would hold close() open for good: past the request timeout, whatever is still connected is cut.
      const cutStalled = setTimeout(() => app.server.closeAllConnections(), SERVER_TIMEOUTS.requestMs);
      await app.close();
      clearTimeout(cutStalled);
      if (nas) await (await nas).close();
      leases.stop();
      await store.close();
      logger.info('stopped');
    })();
    return shuttingDown;
  };

  // pino writes stdout asynchronously: flush before exiting, or the last lines (a fire's reply, 'stopped')
  // can be lost with the process.
  const stopAndExit = async (reason: string): Promise<void> => {
    await shutdown(reason);
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
    exit(0);
  };

  await app.listen({ port: config.port, host: config.host });
  const address = app.server.address();
  const url =
    typeof address === 'object' && address
      ? `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`
      : String(address);
  logger.info(
    {
      url,
      provider: provider.name,
      version: VERSION,
      store: store.kind,
      data_dir: dataDir,
      admin_api: config.adminToken ? 'on' : 'off',
      max_connections: maxConnections,
    },
    'chronos listening',
  );
  if (!config.adminToken)
    logger.info('admin API off (/api/* answers 404): set CHRONOS_ADMIN_TOKEN (16+ characters) to turn it on');
  if (provider.name === 'builtin' && config.idleExitSeconds > 0) {
    // Only auto can get here (loadConfig refuses it with builtin): nothing would wake a stopped process.
    logger.warn(
      { idle_exit_seconds: config.idleExitSeconds },
      'CHRONOS_IDLE_EXIT_SECONDS is ignored: the builtin timer must stay running to fire jobs (idle exit needs the chronos provider)',
    );
  }

  if (options.handleSignals ?? true) {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      process.once(signal, () => {
        void stopAndExit(signal);
      });
    }
  }

  // After listening: recover runs a dead process left `running`, then reconcile (which applies misfires).
  const startUp = async () => {
    if (shuttingDown) return markStartupDone(); // stopping already: starting the provider would undo its stop()
    // An old cached key set answered the first fire; a fresh one is fetched now, beside the reconcile.
    // Tracked, so the process does not stop before the refreshed set is persisted.
    void activity.track('nas', () => verifier.warm().then(() => verifier.refreshIfStale())).catch(() => {});
    // Recovery and reconcile need the store: with a database not reached yet, they wait for it.
    if (databaseReady) await databaseReady();
    if (shuttingDown) return markStartupDone();
    try {
      const recovered = await (await getRunner()).recoverInterrupted();
      if (recovered.length > 0)
        logger.warn({ count: recovered.length }, 'runs interrupted by a previous process');
    } catch (err) {
      // Recovery is retried at the next start; skipping the reconcile too would leave every job unarmed
      // while idle exit, seeing nothing desired, stopped the process.
      logger.error({ err }, 'start-up recovery failed');
    }
    try {
      await provider.start();
    } catch (err) {
      logger.error({ err }, 'start-up reconcile failed');
    }
    // Alerts a previous process left unsent; their delivery holds idle exit off until each is settled.
    try {
      await (await getAlerts()).resume();
    } catch (err) {
      logger.error({ err }, 'resuming pending alerts failed');
    }
    // Watched in every configuration (the wake is reported); it stops the process only with the chronos
    // provider and idle exit on. Before start-up is marked done: a status read waiting for it sees the wake.
    if (shuttingDown === undefined) wake.start();
    markStartupDone();
    if (shuttingDown === undefined) orphans?.start();
  };
  // A woken process exists to answer the fire that woke it: the start-up work (which loads the NAS client,
  // reads every job and calls NAS) waits until that first reply is out, or until nothing arrived for a moment.
  startStartup = deferUntilFirstReply(activity, () => void startUp());

  return { config, app, store, provider: () => provider, url, shutdown };
}

/** How long a fresh process waits for a first request before doing its start-up work anyway. */
const STARTUP_QUIET_MS = 50;
/** Start-up work begins at the latest this long after listening, whatever requests are in flight. */
const STARTUP_LATEST_MS = 1_000;

/**
 * Real time, not the injected clock: this orders start-up against the arrival of the first request; it
 * schedules nothing, and tests that drive a ManualClock must still see the service start.
 */
function deferUntilFirstReply(activity: Activity, work: () => void): () => void {
  let done = false;
  let sawRequest = activity.snapshot().request > 0;
  const go = () => {
    if (done) return;
    done = true;
    stop();
    clearTimeout(quiet);
    clearTimeout(latest);
    work();
  };
  const stop = activity.onChange(() => {
    const requests = activity.snapshot().request;
    if (requests > 0) sawRequest = true;
    else if (sawRequest) go();
  });
  const quiet = setTimeout(() => {
    if (!sawRequest) go();
  }, STARTUP_QUIET_MS);
  // A request that never ends (a client that stalls its body) must not hold start-up back for good.
  const latest = setTimeout(go, STARTUP_LATEST_MS);
  return go;
}

/** Entry used by `chronos serve` and the container: configuration problems exit 1 with one message. */
export async function serve(env = process.env): Promise<void> {
  try {
    // The process started before this module loaded: its awake time counts from the process's start.
    await startChronos({ env, wokeAt: Math.round(performance.timeOrigin) });
  } catch (err) {
    if (isChronosError(err)) {
      // Configuration, corrupt or locked store: the message says what to fix; a stack would hide it.
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}
