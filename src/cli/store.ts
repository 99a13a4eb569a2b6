import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ChronosError } from '../errors.js';
import { JOB_ID_PATTERN } from '../jobs/model.js';
import { copyStore } from '../store/copy.js';
import { FileStore } from '../store/file-store.js';
import type { LedgerEntry } from '../store/store.js';
import { type CliIo, EXIT_FAILURE, EXIT_OK, parseCommandArgs, UsageError } from './common.js';

export const STORE_USAGE = `Usage: chronos store copy --from <data dir> --to <database url>

Copies jobs, their fire ledger and their run history from a data directory (the file store) into a
PostgreSQL database (created tables are migrated first). Safe to run again: what is already there is
kept, only what is missing is added. A job changed in the database since (a later updated_at) is left as
it is and reported; the exit code is then 1. Stop the Chronos using the data directory first.

Options:
  --from DIR     the data directory (CHRONOS_DATA_DIR of the Chronos being moved)
  --to URL       postgres://user:password@host:5432/database (or set CHRONOS_DATABASE_URL)
  -h, --help     this text`;

export async function runStore(argv: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'copy')
    throw new UsageError(sub ? `unknown store command "${sub}"` : 'missing a store command');
  const { values } = parseCommandArgs(rest, { from: { type: 'string' }, to: { type: 'string' } });
  if (!values.from) throw new UsageError('--from <data dir> is required');
  const url = values.to ?? io.env['CHRONOS_DATABASE_URL'];
  if (!url) throw new UsageError('--to <database url> is required (or set CHRONOS_DATABASE_URL)');
  if (!/^postgres(ql)?:\/\/\S+$/.test(url)) throw new UsageError('--to must be a postgres:// URL');

  const dir = resolve(values.from);
  const source = await FileStore.open({ dir });
  try {
    const { PostgresStore } = await import('../store/postgres/postgres-store.js');
    const target = await PostgresStore.open({ url });
    try {
      const report = await copyStore({ store: source, ledger: (id) => readLedger(dir, id) }, target);
      const { copied, updated, unchanged } = report.jobs;
      io.out(
        `jobs: ${copied.length} copied, ${updated.length} updated, ${unchanged.length} already there; ` +
          `${report.ledgerRows} ledger rows and ${report.runs} runs added`,
      );
      for (const refused of report.refused) io.err(`not copied: job ${refused.job_id}: ${refused.reason}`);
      return report.refused.length > 0 ? EXIT_FAILURE : EXIT_OK;
    } finally {
      await target.close();
    }
  } finally {
    await source.close();
  }
}

/** A job's ledger rows as the file store keeps them (jobs/<id>.json, docs/architecture.md). */
async function readLedger(dir: string, id: string): Promise<LedgerEntry[]> {
  if (!JOB_ID_PATTERN.test(id)) return [];
  const path = join(dir, 'jobs', `${id}.json`);
  const doc = JSON.parse(await readFile(path, 'utf8')) as { ledger?: unknown };
  if (!Array.isArray(doc.ledger)) {
    throw new ChronosError('store_corrupt', `${path}: expected a "ledger" array`, { path });
  }
  return doc.ledger as LedgerEntry[];
}
