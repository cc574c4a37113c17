import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Asset, FeeBumpTransaction, Operation, StrKey, TransactionBuilder, xdr } from '@stellar/stellar-sdk';
import * as xdrJson from '@stellar/stellar-xdr-json';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fund, keys, multisig, NETWORK, post, signed, sim, tx } from './helpers.ts';

/**
 * Differential test: every envelope and result the simulator produced is decoded by an independent decoder,
 * stellar-xdr-json (the Rust stellar-xdr crate compiled to WASM), and must round-trip byte for byte and agree
 * with the JS SDK's decoding and with the result codes the simulator reported.
 */
const require = createRequire(import.meta.url);
xdrJson.initSync(readFileSync(require.resolve('@stellar/stellar-xdr-json/stellar_xdr_json_bg.wasm')));

type Json = Record<string, unknown>;

/** Horizon's names where they differ from the Rust XDR names (stellar/go services/horizon/internal/codes). */
const HORIZON: Record<string, string> = {
  tx_no_account: 'tx_no_source_account',
  tx_bad_min_seq_age_or_gap: 'tx_bad_minseq_age_or_gap',
  op_no_account: 'op_no_source_account',
  already_exist: 'already_exists',
  seqnum_too_far: 'seq_num_too_far',
  name_not_found: 'data_name_not_found',
  invalid_name: 'data_invalid_name',
};

function opCode(r: unknown): string {
  if (typeof r === 'string') return HORIZON[r] ?? r;
  const inner = Object.values((r as { op_inner: Json }).op_inner)[0];
  const name = typeof inner === 'string' ? inner : Object.keys(inner as Json)[0]!;
  return `op_${HORIZON[name] ?? name}`;
}

/** Horizon's result_codes, computed from the Rust decoder's JSON alone. */
function codesFromJson(result: unknown): Json {
  if (typeof result === 'string') return { transaction: HORIZON[result] ?? result };
  const [key, value] = Object.entries(result as Json)[0]!;
  if (key === 'tx_fee_bump_inner_success' || key === 'tx_fee_bump_inner_failed') {
    const inner = codesFromJson((value as { result: { result: unknown } }).result.result);
    return {
      transaction: key,
      inner_transaction: inner.transaction,
      ...(inner.operations ? { operations: inner.operations } : {}),
    };
  }
  return { transaction: key, operations: (value as unknown[]).map(opCode) };
}

interface Sample {
  envelope: string;
  resultXdr: string;
  codes: Json;
  feeCharged: string;
}

describe('XDR differential against stellar-xdr-json', () => {
  let app: FastifyInstance;
  const samples: Sample[] = [];

  async function record(t: Parameters<typeof post>[1]): Promise<void> {
    const r = await post(app, t);
    const envelope = typeof t === 'string' ? t : t.toEnvelope().toXdr('base64');
    if (r.status === 200) {
      samples.push({
        envelope,
        resultXdr: String(r.body.result_xdr),
        codes: { transaction: 'tx_success' },
        feeCharged: String(r.body.fee_charged),
      });
    } else {
      const extras = r.body.extras as { result_xdr: string; result_codes: Json };
      samples.push({ envelope, resultXdr: extras.result_xdr, codes: extras.result_codes, feeCharged: 'n/a' });
    }
  }

  beforeAll(async () => {
    app = await sim();
    const [owner, a, b, c, issuer, d, sponsor] = keys(7);
    await multisig(
      app,
      owner!,
      [a, b, c].map((kp) => ({ kp: kp!, weight: 1 })),
      { master: 0, low: 1, med: 2, high: 3 },
    );
    await fund(app, issuer!, d!, sponsor!);
    const o = owner!.publicKey();
    const usd = new Asset('USD', issuer!.publicKey());
    const pay = (amount = '1', asset = Asset.native()) =>
      Operation.payment({ destination: d!.publicKey(), asset, amount });
    await record(signed(tx(app, o, [pay()]), a!, b!));
    await record(signed(tx(app, o, [pay()]), a!));
    await record(signed(tx(app, o, [pay()]), a!, b!, c!));
    await record(signed(tx(app, o, [pay('1'), pay('1', usd)]), a!, b!));
    await record(signed(tx(app, o, [pay('99999')]), a!, b!));
    await record(
      signed(
        tx(app, o, [Operation.setOptions({ homeDomain: 'x.org' }), Operation.manageData({ name: 'k', value: 'v' })]),
        a!,
        b!,
      ),
    );
    await record(
      signed(tx(app, o, [Operation.createAccount({ destination: d!.publicKey(), startingBalance: '5' })]), a!, b!),
    );
    await record(
      signed(
        tx(app, o, [
          Operation.bumpSequence({ bumpTo: '1' }),
          Operation.manageSellOffer({ selling: Asset.native(), buying: usd, amount: '1', price: '1' }),
        ]),
        a!,
        b!,
      ),
    );
    await record(signed(tx(app, o, [pay()], { timebounds: { minTime: 0, maxTime: 1 } }), a!, b!));
    await record(signed(tx(app, o, [pay()], { seq: 1n }), a!, b!));
    await record(signed(tx(app, o, [pay()], { minAccountSequenceLedgerGap: 5 }), a!, b!));
    await record(signed(tx(app, d!.publicKey(), [Operation.changeTrust({ asset: usd })]), d!));
    await record(signed(tx(app, issuer!.publicKey(), [pay('10', usd)]), issuer!));
    await record(signed(tx(app, d!.publicKey(), [Operation.accountMerge({ destination: issuer!.publicKey() })]), d!));
    const inner = signed(tx(app, o, [pay()]), a!, b!);
    await record(signed(TransactionBuilder.buildFeeBumpTransaction(sponsor!, '200', inner, NETWORK), sponsor!));
    const short = signed(tx(app, o, [pay()]), a!);
    await record(signed(TransactionBuilder.buildFeeBumpTransaction(sponsor!, '200', short, NETWORK), sponsor!));
    const ghost = keys(1)[0]!;
    await record(signed(tx(app, ghost.publicKey(), [pay()], { seq: 1n }), ghost));
  });
  afterAll(async () => {
    await app.close();
  });

  it('covers successes, failures, fee bumps and refusals', () => {
    const kinds = new Set(samples.map((s) => s.codes.transaction));
    for (const k of [
      'tx_success',
      'tx_failed',
      'tx_bad_auth_extra',
      'tx_too_late',
      'tx_bad_seq',
      'tx_fee_bump_inner_failed',
      'tx_no_source_account',
    ]) {
      expect(kinds, k).toContain(k);
    }
    expect(samples.length).toBeGreaterThanOrEqual(17);
  });

  it('result XDR round-trips through both decoders and names the codes the simulator reported', () => {
    for (const s of samples) {
      const json = JSON.parse(xdrJson.decode('TransactionResult', s.resultXdr)) as {
        fee_charged: string;
        result: unknown;
      };
      expect(xdrJson.encode('TransactionResult', JSON.stringify(json))).toBe(s.resultXdr);
      const sdk = xdr.TransactionResult.fromXdr(s.resultXdr, 'base64');
      expect(sdk.toXdr('base64')).toBe(s.resultXdr);
      expect(json.fee_charged).toBe(sdk.feeCharged.toString());
      if (s.feeCharged !== 'n/a') expect(json.fee_charged).toBe(s.feeCharged);
      const codes = codesFromJson(json.result);
      if (codes.transaction === 'tx_success') delete codes.operations;
      if (codes.transaction === 'tx_fee_bump_inner_success') expect(s.codes.transaction).toBe('tx_success');
      else expect(codes, s.resultXdr).toEqual(s.codes);
    }
  });

  it('envelope XDR round-trips and decodes to the same transaction in both decoders', () => {
    for (const s of samples) {
      const json = JSON.parse(xdrJson.decode('TransactionEnvelope', s.envelope)) as Json;
      expect(xdrJson.encode('TransactionEnvelope', JSON.stringify(json))).toBe(s.envelope);
      const sdk = TransactionBuilder.fromXDR(s.envelope, NETWORK);
      expect(sdk.toEnvelope().toXdr('base64')).toBe(s.envelope);
      const v1 = sdk instanceof FeeBumpTransaction ? sdk.innerTransaction : sdk;
      const env = (
        json.tx_fee_bump ? ((json.tx_fee_bump as Json).tx as { inner_tx: { tx: Json } }).inner_tx.tx : json.tx
      ) as {
        tx: { source_account: string; fee: number; seq_num: string; operations: unknown[] };
        signatures: { hint: string }[];
      };
      expect(env.tx.source_account).toBe(v1.source);
      expect(String(env.tx.fee)).toBe(v1.fee);
      expect(env.tx.seq_num).toBe(v1.sequence);
      expect(env.tx.operations).toHaveLength(v1.operations.length);
      expect(env.signatures.map((x) => x.hint)).toEqual(
        v1.signatures.map((x) => Buffer.from(x.hint.value).toString('hex')),
      );
      if (sdk instanceof FeeBumpTransaction) {
        const fb = (json.tx_fee_bump as { tx: { fee_source: string; fee: string } }).tx;
        expect(fb.fee_source).toBe(sdk.feeSource);
        expect(fb.fee).toBe(sdk.fee);
        expect(StrKey.isValidEd25519PublicKey(fb.fee_source)).toBe(true);
      }
    }
  });
});
