// src/emulator/ owns the NAS emulator and its wake proxy (development, tests, benchmarks). It imports only
// the root files: it speaks to Chronos over the wire, as NAS does.
export { EMULATOR_USAGE, type EmulatorCliIo, rewriteOrigin, runEmulatorCli, splitCommand } from './cli.js';
export {
  type ArmedOneShot,
  type DeliveryAttempt,
  type Emulator,
  type EmulatorOptions,
  type FaultSwitches,
  type FireAlg,
  type FireTokenClaims,
  formatUtcPlusZero,
  isIsoWithOffset,
  JUNK_LIST_ITEMS,
  type KeyOutcome,
  type ProvisionCall,
  type ProvisionKind,
  parseRetryAfter,
  type RowRemoval,
  STRICT_FAULTS,
  startEmulator,
  validateProvision,
} from './emulator.js';
export { startWakeProxy, type WakeProxy, type WakeProxyOptions, type WakeStart } from './wake-proxy.js';
