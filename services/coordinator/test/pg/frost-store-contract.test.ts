import { rm } from 'node:fs/promises';
import { tempDir } from '@cosigner/testkit/process';
import { openSqliteStore } from '../../src/store.ts';
import { runFrostStoreContract } from './frost-store-contract.ts';

// The FROST records of the embedded SQLite store; frost-store.apt.test.ts runs the same on PostgreSQL.
runFrostStoreContract('sqlite', async () => {
  const dir = await tempDir('coord-frost-contract-');
  const store = openSqliteStore(dir);
  return {
    store,
    close: async () => {
      store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});
