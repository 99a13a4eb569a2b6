import { MemoryStore } from '../../src/store/memory-store.js';
import { CONTRACT_LEDGER_RETENTION, CONTRACT_RUN_RETENTION, storeContract } from './contract.js';

storeContract('MemoryStore', async () => ({
  store: new MemoryStore({
    runRetention: CONTRACT_RUN_RETENTION,
    ledgerRetention: CONTRACT_LEDGER_RETENTION,
  }),
  cleanup: async () => {},
}));
