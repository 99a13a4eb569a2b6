// Replaced at build time would be nicer, but reading package.json at runtime costs a file
// read on every cold start; the build script and this constant are kept in step by a test.
export const VERSION = '0.1.0';
export const USER_AGENT = `chronos/${VERSION} (+https://github.com/chronos-cron/chronos)`;
