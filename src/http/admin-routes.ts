// The admin API's routes and bounds as data, shared by the routes (admin.ts) and the OpenAPI document
// (openapi.ts), which admin.ts loads on demand: neither imports the other's code.

export const DEFAULT_RUNS_LIMIT = 20;
export const MAX_RUNS_LIMIT = 1_000;

/** Every admin route, for the OpenAPI document (src/http/openapi.ts) and its test. */
export const ADMIN_ROUTES = [
  { method: 'get', path: '/api/jobs', summary: 'List jobs with next_run_at and whether each is armed' },
  { method: 'post', path: '/api/jobs', summary: 'Create a job' },
  { method: 'get', path: '/api/jobs/{id}', summary: 'Get one job' },
  { method: 'patch', path: '/api/jobs/{id}', summary: "Change fields of an API job's spec" },
  { method: 'delete', path: '/api/jobs/{id}', summary: 'Delete an API job with its history' },
  { method: 'post', path: '/api/jobs/{id}/pause', summary: 'Pause: cancel the arm, keep the job' },
  {
    method: 'post',
    path: '/api/jobs/{id}/resume',
    summary: 'Resume: next run recomputed from now, then armed',
  },
  {
    method: 'post',
    path: '/api/jobs/{id}/run',
    summary: 'Run now (manual) without moving the armed occurrence',
  },
  { method: 'get', path: '/api/jobs/{id}/runs', summary: 'Run history, newest first' },
  {
    method: 'get',
    path: '/api/status',
    summary: 'Provider, NAS reachability, last reconcile, counts, version',
  },
  { method: 'get', path: '/api/openapi.json', summary: 'This OpenAPI 3.1 document' },
] as const;
