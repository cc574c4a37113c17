import { Keypair } from '@stellar/stellar-sdk/base';

/** Fresh random Stellar keypairs for a test run. Never a fixed seed: nothing here is reusable key material. */
export function randomKeypairs(n: number): Keypair[] {
  return Array.from({ length: n }, () => Keypair.random());
}
