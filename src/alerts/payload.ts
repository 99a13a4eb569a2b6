import { formatInstant } from '../clock.js';
import type { AlertRecord } from '../jobs/alerts.js';
import type { Job, RunRecord } from '../jobs/model.js';
import { boundText } from '../run/output.js';

/** Bound of the run output carried by an alert: enough to recognise the failure, small for chat. */
export const ALERT_OUTPUT_EXCERPT_BYTES = 1024;

function iso(ms: number | null | undefined): string | null {
  return formatInstant(ms ?? null);
}

/** The JSON body of an alert (docs/operations.md, Alerts): the same bytes on every attempt. */
export function alertBody(alert: AlertRecord, job: Job, run: RunRecord | undefined): string {
  return JSON.stringify(
    alert.format === 'slack' ? { text: slackText(alert, job, run) } : standard(alert, job, run),
  );
}

function standard(alert: AlertRecord, job: Job, run: RunRecord | undefined): object {
  return {
    type: `job.${alert.event}`,
    timestamp: iso(alert.created_at),
    data: {
      alert_id: alert.id,
      event: alert.event,
      reminder: alert.reminder === true,
      job: { id: job.id, name: job.name, schedule: job.schedule, timezone: job.timezone },
      occurrence: run ? { fire_at: iso(run.fire_at), fire_at_ms: run.fire_at } : null,
      run: run
        ? {
            id: run.run_id,
            status: run.status,
            trigger: run.trigger,
            attempt: run.attempt,
            started_at: iso(run.started_at),
            finished_at: iso(run.finished_at),
            error: run.error,
            output_excerpt: run.output === null ? null : boundText(run.output, ALERT_OUTPUT_EXCERPT_BYTES),
          }
        : null,
      failure_streak: job.alert_state?.failure_streak ?? job.failure_streak,
      detail: alert.detail ?? null,
    },
  };
}

const HEADLINES: Record<AlertRecord['event'], string> = {
  failed: 'failed',
  recovered: 'recovered',
  missed: 'missed an occurrence',
  arming_failed: 'could not be armed',
};

function slackText(alert: AlertRecord, job: Job, run: RunRecord | undefined): string {
  const name = job.name === job.id ? `\`${job.id}\`` : `${job.name} (\`${job.id}\`)`;
  const lines = [`Chronos: job ${name} ${HEADLINES[alert.event]}${alert.reminder ? ' (still failing)' : ''}`];
  if (run) {
    lines.push(`occurrence ${iso(run.fire_at)} · run ${run.run_id} · ${run.status} · attempt ${run.attempt}`);
    if (run.error) lines.push(`error: ${boundText(run.error, 500)}`);
    if (run.output && alert.event !== 'recovered')
      lines.push(`\`\`\`${boundText(run.output, ALERT_OUTPUT_EXCERPT_BYTES)}\`\`\``);
  }
  if (alert.detail) lines.push(alert.detail);
  return lines.join('\n');
}
