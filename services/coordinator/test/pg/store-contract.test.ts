import { rm } from 'node:fs/promises';
import { tempDir } from '@cosigner/testkit/process';
import { openSqliteStore } from '../../src/store.ts';
import { runStoreContract } from './store-contract.ts';

// The embedded SQLite store against the repository contract; store.apt.test.ts runs the same on PostgreSQL.
runStoreContract('sqlite', async () => {
  const dir = await tempDir('coord-contract-');
  const store = openSqliteStore(dir);
  return {
    store,
    close: async () => {
      store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});
