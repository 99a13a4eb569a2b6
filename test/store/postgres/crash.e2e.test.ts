import { PostgresStore } from '../../../src/store/postgres/postgres-store.js';
import { freshDatabase } from '../../helpers/pg-test.js';
import { crashSuite } from '../crash-suite.js';

// The same kill schedule as the file store's (test/store/crash.test.ts), against a database: a claim
// acknowledged by a committed transaction survives the kill of its process; one in flight is rolled back.
crashSuite(
  'PostgresStore',
  async () => {
    const url = await freshDatabase('crash');
    return {
      location: url,
      killAfter: 'claimed ',
      open: () => PostgresStore.open({ url, poolSize: 1 }),
      cleanup: async () => {},
    };
  },
  120_000,
);
