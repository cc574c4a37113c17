import { demoPolicyYaml } from '@cosigner/launcher/cluster';
import { loadPolicy } from '@cosigner/policy/schema';
import { Keypair } from '@stellar/stellar-sdk';
import { describe, expect, it } from 'vitest';

describe('starter policy (the one `pnpm start`, the compose setup and the test clusters write)', () => {
  it('loads in production mode: velocity limits and fee caps per transaction and per fee bump', () => {
    const account = Keypair.random().publicKey();
    const p = loadPolicy(demoPolicyYaml({ network: 'Net', account, maxXlm: '10' }), { production: true });
    expect(p.fees).toMatchObject({ maxFee: 1_000_000n, maxFeeBump: 1_000_000n });
    expect(p.assets.get('native')?.velocity.length).toBeGreaterThan(0);
  });
});
