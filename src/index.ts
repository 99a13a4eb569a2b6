// The package's public surface: embedding Chronos in an application (start it, register handlers for
// `{"type": "handler"}` targets, stop it) and the types those calls use. Nothing else: storage, the claim
// and the scheduler are internals (benchmarks bundle their own, see bench/lib/internals.ts), and
// test/index.test.ts fails when a value is added here without a decision (docs/architecture.md).
export type { Clock } from './clock.js';
export type { Config } from './config/config.js';
export { ChronosError, type ErrorCode, isChronosError } from './errors.js';
export type { Job, JobSpec, RunRecord, Target } from './jobs/model.js';
export { type RunningChronos, type StartOptions, startChronos } from './main.js';
export type { SchedulerProvider } from './occurrence/provider.js';
export {
  createHandlerRegistry,
  type HandlerFn,
  type HandlerInput,
  type HandlerRegistry,
} from './run/targets/handler.js';
export type { Store } from './store/store.js';
export { VERSION } from './version.js';
