import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';
/**
 * Serialises hop-1 arming (reconcile, arm, disarm) across every process that arms the same jobs at NAS.
 *
 * NAS holds one arm per job and the last provision wins, so two replicas arming from state read at
 * different moments could leave NAS holding an instant that one of them already claimed. With every
 * arming section run under one lock, and each section reading the job fresh once it holds the lock,
 * the last call NAS sees is always made from the newest state (docs/architecture.md, "Replicas").
 */
export interface ArmLock {
  /**
   * Whether other processes arm the same jobs (several replicas on one database). When true, a holder
   * re-reads what it arms from the store, takes over what the other holders recorded of NAS's arms, and
   * records its own before releasing (docs/architecture.md, "Replicas").
   */
  readonly shared: boolean;
  /** Runs `fn` while no other process runs an arming section, then releases. */
  hold<T>(fn: (held: ArmLockHold) => Promise<T>): Promise<T>;
}

export interface ArmLockHold {
  /**
   * Another process held the lock since this process last did (or this is the first hold): NAS calls
   * may have been made that this process did not see, so its view of NAS is out of date.
   */
  readonly othersSince: boolean;
  /**
   * When `othersSince`: what the other holders recorded of NAS's arms meanwhile (`view.reset`: start from
   * nothing, then take `view.beliefs`; otherwise apply `view.beliefs` over this process's own view).
   * Null when this process held the lock last: its own view is current.
   */
  readonly view: ArmViewUpdate | null;
  /**
   * What this section learned of NAS's arms (the provider's acknowledged and known-absent arms that
   * changed). Written when the lock is released, and only if it is still this process's: a holder that
   * lost the lock records nothing, and the next holder starts from nothing.
   */
  record(changes: ReadonlyMap<string, ArmBelief>): void;
}

/**
 * What a process believes NAS holds for one job: an instant NAS acknowledged (a provision, or a `list`
 * that showed it), `absent` (a cancel or a delivery consumed the arm, or a list showed none), or
 * `unknown`. A belief is not a confirmation: each process confirms with its own `list`.
 */
export type ArmBelief = number | 'absent' | 'unknown';

export interface ArmViewUpdate {
  /** The previous view cannot be trusted (first hold, or a holder died without recording its calls). */
  reset: boolean;
  beliefs: ReadonlyMap<string, ArmBelief>;
}

/**
 * One process per ledger (the file store): the provider already orders its own NAS calls per job and
 * keeps its view of NAS in memory, so the lock has nothing to add and costs nothing.
 */
export const SINGLE_PROCESS_ARM_LOCK: ArmLock = {
  shared: false,
  hold: (fn) => fn({ othersSince: false, view: null, record: () => {} }),
};

/** What a shared lock needs from the process that holds it. */
export interface ArmLockContext {
  /** Unique per process: names the holder of the lease. */
  holder: string;
  clock: Clock;
  logger: Logger;
}

/** A store whose ledger other processes share offers the lock that serialises their arming. */
export interface ArmLockSource {
  armLock(context: ArmLockContext): ArmLock;
}

/** The store's own lock when it has one (PostgreSQL), the single-process one otherwise (files). */
export function armLockOf(store: object, context: ArmLockContext): ArmLock {
  if ('armLock' in store && typeof store.armLock === 'function')
    return (store as ArmLockSource).armLock(context);
  return SINGLE_PROCESS_ARM_LOCK;
}
