// Alert records and the job's alert state: stored with the run record or job they belong to
// (docs/operations.md, "Alerts"). Plain types and constants only: the fire path imports the job model,
// which names these. The hooks the run path calls are in alert-hooks.ts.

export const ALERT_EVENTS = ['failed', 'recovered', 'missed', 'arming_failed'] as const;
export type AlertEvent = (typeof ALERT_EVENTS)[number];
export const ALERT_FORMATS = ['standard', 'slack'] as const;
export type AlertFormat = (typeof ALERT_FORMATS)[number];
export type AlertDeliveryState = 'pending' | 'sent' | 'gave_up';

/** One alert to one destination, with its delivery state. */
export interface AlertRecord {
  /** Stable across retries and restarts: sent as the Standard Webhooks `webhook-id`, so receivers de-duplicate on it. */
  id: string;
  event: AlertEvent;
  /** The destination URL without credentials or query (the full URL stays in the job's `notify`). */
  destination: string;
  /** Which configured destination this is (a digest of its full URL): delivery looks the URL up by it. */
  destination_key: string;
  format: AlertFormat;
  state: AlertDeliveryState;
  attempts: number;
  last_error?: string;
  /** Epoch ms of the delivery the receiver acknowledged. */
  sent_at?: number;
  /** Epoch ms the alert was raised; the payload's `timestamp`. */
  created_at: number;
  /** A `failed` repeated after the job's reminder interval (the job was already failing). */
  reminder?: boolean;
  /** What happened, for events without a run record (arming_failed). */
  detail?: string;
}

/**
 * Per job, what alerts follow: a failing streak sends one `failed` (plus reminders), its end one `recovered`.
 * Absent on jobs that never finished a run since alerts existed.
 */
export interface AlertState {
  /** A run failed with its retry policy exhausted, and no run has succeeded since. */
  failing: boolean;
  /** Failed runs counted so far in the current streak (the job's `failure_streak` when the state last changed). */
  failure_streak: number;
  /** Epoch ms the job entered the failing state. */
  failing_since?: number;
  /** Epoch ms of the last `failed` alert (the streak's first, or a reminder). */
  last_failed_alert_at?: number;
  /** Runs whose record holds an alert still `pending`: where a starting process finds them again. */
  unsent_runs?: string[];
  /** Alerts that have no run record to live in (arming_failed), newest last, bounded. */
  outbox?: AlertRecord[];
}
