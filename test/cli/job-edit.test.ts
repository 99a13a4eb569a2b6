import { describe, expect, it } from 'vitest';
import { parseAssignment, patchFor, specOfView } from '../../src/cli/job-edit.js';
import type { JobView } from '../../src/jobs/view.js';

const view = {
  id: 'report',
  name: 'report',
  schedule: 'every 1h',
  timezone: 'UTC',
  target: { type: 'handler', name: 'h' },
  enabled: true,
  repeat: { times: null, completed: 0 },
  retry: { max_attempts: 1 },
  concurrency: 'forbid',
  misfire: 'skip',
  timeout_seconds: 60,
} as unknown as JobView;

describe('chronos jobs edit: --set', () => {
  it('edits a job’s alerts (notify), creating the object when the job has none', () => {
    const patch = patchFor(specOfView(view), [parseAssignment('notify.reminder_seconds=600')]);
    expect(patch).toEqual({ notify: { reminder_seconds: 600 } });
  });

  it('keeps the other fields out of the patch', () => {
    expect(patchFor(specOfView(view), [parseAssignment('schedule=every 5m')])).toEqual({
      schedule: 'every 5m',
    });
  });
});
