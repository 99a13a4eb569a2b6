/** docs/jobs.md: ids are user-visible, used in file names and NAS dedup keys. */
export const JOB_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;
