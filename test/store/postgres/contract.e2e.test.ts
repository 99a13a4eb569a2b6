import { beforeAll } from 'vitest';
import { PostgresStore } from '../../../src/store/postgres/postgres-store.js';
import { freshDatabase } from '../../helpers/pg-test.js';
import { adminQuery } from '../../helpers/postgres.js';
import { CONTRACT_LEDGER_RETENTION, CONTRACT_RUN_RETENTION, storeContract } from '../contract.js';

// One database for the file (creating one per test costs ~0.5 s with fsync on); each test starts from empty
// tables. Tests of a file run one after another.
let url: string;
beforeAll(async () => {
  url = await freshDatabase('contract');
  await (await PostgresStore.open({ url })).close();
});

storeContract('PostgresStore', async () => {
  await adminQuery(
    url,
    'TRUNCATE chronos_jobs, chronos_ledger, chronos_runs, chronos_damaged RESTART IDENTITY CASCADE',
  );
  const options = { url, runRetention: CONTRACT_RUN_RETENTION, ledgerRetention: CONTRACT_LEDGER_RETENTION };
  let current = await PostgresStore.open(options);
  const reopen = async () => {
    await current.close();
    current = await PostgresStore.open(options);
    return current;
  };
  return {
    store: current,
    reopen,
    // Damage in a database: a document that is valid JSON but not a job (written by hand or by another
    // program). The store opened afterwards must contain it.
    damageJob: async (id) => {
      await adminQuery(
        url,
        `UPDATE chronos_jobs SET doc = jsonb_set(doc, '{created_at}', '"yesterday"') WHERE id = '${id}'`,
      );
      return reopen();
    },
    damageHistory: async (id) => {
      await adminQuery(url, `UPDATE chronos_runs SET doc = '{"run_id": 5}' WHERE job_id = '${id}'`);
      return reopen();
    },
    cleanup: async () => {
      await current.close();
    },
  };
});
