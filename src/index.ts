// Library entry: embed Chronos in an application (handlers), or use its parts in tools and benchmarks.
export { type Clock, systemClock } from './clock.js';
export type { Config } from './config/config.js';
export { loadConfig } from './config/load.js';
export { ChronosError, type ErrorCode, isChronosError } from './errors.js';
export { buildJob } from './jobs/build.js';
export type { Job, JobSpec, RunRecord, Target } from './jobs/model.js';
export { nextOccurrence, parseSchedule } from './jobs/schedule.js';
export { type RunningChronos, type StartOptions, startChronos } from './main.js';
export { claimOccurrence } from './occurrence/claim.js';
export { settleOccurrence } from './occurrence/settle.js';
export { createHandlerRegistry, type HandlerRegistry } from './run/targets/handler.js';
export { FileStore } from './store/file-store.js';
export { MemoryStore } from './store/memory-store.js';
export { currentOwner, isOwnerAlive } from './store/owner.js';
export type { LedgerEntry, Owner, Store } from './store/store.js';
export { VERSION } from './version.js';
