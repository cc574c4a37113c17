import { describe, expect, it } from 'vitest';
import { decodeEnvelope, networkId } from '../src/decode.ts';
import { describeTransaction } from '../src/describe.ts';
import { stellarErrors } from '../src/errors.ts';
import { checkAuth, computeRequirements, neededLevels, parseAccount } from '../src/quorum.ts';
import { assembleEnvelope, selectMinimalSignatures } from '../src/sigset.ts';
import {
  attachAuthSignatures,
  authEntryPayload,
  buildMultisigSignatureVector,
  decodeAuthEntry,
  describeAuthEntry,
} from '../src/soroban.ts';
import { operationThresholdLevel } from '../src/thresholds.ts';
import { publicKeyFromAddress, signatureHint, verifyEd25519 } from '../src/verify.ts';
import { account, accountsMap, buildTx, decode, newKeys, PASSPHRASE, pay } from './helpers.ts';

// The bad-input matrix: every public function, given values of the wrong type or shape,
// answers with a typed STELLAR_* error (or `false` for a signature check), never a TypeError from inside.
const GARBAGE: unknown[] = [undefined, null, 0, 'x', {}, [], new Uint8Array(3), { kind: 'transaction' }];

const [src, dest] = newKeys(2);
const good = decode(buildTx({ source: src!.publicKey(), ops: [pay(dest!.publicKey())] }));
const accounts = accountsMap(account(src!));

const subjects: [string, (g: unknown) => unknown][] = [
  ['decodeEnvelope(xdr)', (g) => decodeEnvelope(g as string, PASSPHRASE)],
  ['decodeEnvelope(passphrase)', (g) => decodeEnvelope(good.envelopeXdr, g as string)],
  ['networkId', (g) => networkId(g as string)],
  ['describeTransaction', (g) => describeTransaction(g as never)],
  ['operationThresholdLevel', (g) => operationThresholdLevel(g as never)],
  ['neededLevels', (g) => neededLevels(g as never)],
  ['computeRequirements(d)', (g) => computeRequirements(g as never, accounts)],
  ['computeRequirements(accounts)', (g) => computeRequirements(good, g as never)],
  ['checkAuth(d)', (g) => checkAuth(g as never, accounts)],
  ['checkAuth(accounts)', (g) => checkAuth(good, g as never)],
  ['checkAuth(signatures)', (g) => checkAuth(good, accounts, g as never)],
  ['parseAccount', (g) => parseAccount(g as never)],
  ['selectMinimalSignatures(d)', (g) => selectMinimalSignatures(g as never, accounts, [])],
  ['selectMinimalSignatures(candidates)', (g) => selectMinimalSignatures(good, accounts, g as never)],
  ['assembleEnvelope(d)', (g) => assembleEnvelope(g as never, [])],
  ['assembleEnvelope(sigs)', (g) => assembleEnvelope(good, g as never)],
  ['signatureHint', (g) => signatureHint(g as never)],
  ['publicKeyFromAddress', (g) => publicKeyFromAddress(g as never)],
  ['authEntryPayload', (g) => authEntryPayload(g as never, PASSPHRASE)],
  ['buildMultisigSignatureVector', (g) => buildMultisigSignatureVector(g as never)],
  ['attachAuthSignatures', (g) => attachAuthSignatures(g as never, g as never)],
  ['describeAuthEntry', (g) => describeAuthEntry(g as never)],
  ['decodeAuthEntry', (g) => decodeAuthEntry(g as never)],
];

describe('bad-input matrix', () => {
  for (const [name, call] of subjects) {
    it(`${name}: typed STELLAR_* errors only`, () => {
      let refused = 0;
      for (const g of GARBAGE) {
        try {
          call(g);
        } catch (e) {
          expect(stellarErrors.is(e), `${name}(${String(g)}) threw ${String(e)}`).toBe(true);
          refused++;
        }
      }
      // At most `undefined` (a default) and `[]` (an empty list) are acceptable inputs; the rest are refused.
      expect(refused).toBeGreaterThanOrEqual(GARBAGE.length - 2);
    });
  }

  it('verifyEd25519 returns false on every garbage combination', () => {
    for (const a of GARBAGE)
      for (const b of GARBAGE) expect(verifyEd25519(a as never, b as never, a as never)).toBe(false);
  });
});
