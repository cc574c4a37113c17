import { attachAuthSignatures, authEntryPayload, buildMultisigSignatureVector } from '@cosigner/stellar/soroban';
import { Address, type Keypair, nativeToScVal, Operation, rpc, type Transaction, xdr } from '@stellar/stellar-sdk';
import type { FastifyInstance } from 'fastify';
import { escrowContractId } from '../src/soroban.ts';
import { NETWORK, type TxOptions, tx } from './helpers.ts';

export const ESCROW = escrowContractId(NETWORK);

export const addr = (id: string | Keypair): xdr.ScVal =>
  Address.fromString(typeof id === 'string' ? id : id.publicKey()).toScVal();
export const i128 = (n: bigint | number): xdr.ScVal => nativeToScVal(BigInt(n), { type: 'i128' });

/** An invokeHostFunction operation calling `fn(args)` on `contract` (default: the escrow). */
export function call(
  fn: string,
  args: xdr.ScVal[],
  auth: xdr.SorobanAuthorizationEntry[] = [],
  contract = ESCROW,
): xdr.Operation {
  return Operation.invokeHostFunction({
    func: xdr.HostFunction.hostFunctionTypeInvokeContract(
      new xdr.InvokeContractArgs({
        contractAddress: Address.fromString(contract).toScAddress(),
        functionName: fn,
        args,
      }),
    ),
    auth,
  });
}

/** One JSON-RPC call through app.inject. */
export async function rpcCall(
  app: FastifyInstance,
  method: string,
  params?: unknown,
): Promise<Record<string, unknown>> {
  const res = await app.inject({
    method: 'POST',
    url: '/rpc',
    payload: { jsonrpc: '2.0', id: 7, method, ...(params === undefined ? {} : { params }) },
  });
  return res.json();
}

export type RawSim = rpc.Api.RawSimulateTransactionResponse;

export async function simulate(app: FastifyInstance, t: Transaction): Promise<RawSim> {
  const r = await rpcCall(app, 'simulateTransaction', { transaction: t.toXdr() });
  return r.result as RawSim;
}

/** The nonce of an entry with ADDRESS credentials. */
export function nonceOf(e: xdr.SorobanAuthorizationEntry): bigint {
  const c = e.credentials;
  if (c.type !== 'sorobanCredentialsAddress') throw new Error(`not ADDRESS credentials: ${c.type}`);
  return c.address.nonce;
}

export function simAuth(sim: RawSim): xdr.SorobanAuthorizationEntry[] {
  return (sim.results?.[0]?.auth ?? []).map((b) => xdr.SorobanAuthorizationEntry.fromXdr(b, 'base64'));
}

export interface SignOptions {
  network?: string;
  /** 'asc' builds the host's order; 'reverse' and 'given' keep a wrong order on purpose. */
  order?: 'asc' | 'reverse' | 'given';
  /** Sign this payload instead of the entry's (a bad signature). */
  payload?: Buffer;
}

/** Sets the expiration and signs `entry` with each key (the multisig vector the host expects, unless told otherwise). */
export function signEntry(
  entry: xdr.SorobanAuthorizationEntry,
  expiration: number,
  signers: Keypair[],
  o: SignOptions = {},
): xdr.SorobanAuthorizationEntry {
  const unsigned = attachAuthSignatures(entry, xdr.ScVal.scvVoid(), { signatureExpirationLedger: expiration });
  const payload = o.payload ?? authEntryPayload(unsigned, o.network ?? NETWORK);
  const sigs = signers.map((kp) => ({
    publicKey: Buffer.from(kp.rawPublicKey()),
    signature: Buffer.from(kp.sign(payload)),
  }));
  if ((o.order ?? 'asc') === 'asc') return attachAuthSignatures(unsigned, buildMultisigSignatureVector(sigs));
  const sorted = [...sigs].sort((a, b) => Buffer.compare(a.publicKey, b.publicKey));
  const list = o.order === 'reverse' ? sorted.reverse() : sigs;
  const vec = xdr.ScVal.scvVec(
    list.map((s) =>
      xdr.ScVal.scvMap([
        new xdr.ScMapEntry({ key: xdr.ScVal.scvSymbol('public_key'), val: xdr.ScVal.scvBytes(s.publicKey) }),
        new xdr.ScMapEntry({ key: xdr.ScVal.scvSymbol('signature'), val: xdr.ScVal.scvBytes(s.signature) }),
      ]),
    ),
  );
  return attachAuthSignatures(unsigned, vec);
}

/**
 * simulate -> sign the entries -> assemble, the way a client does it: returns the transaction from `source`
 * calling `fn(args)` with the entries `sign` returns and the simulated Soroban data, signed by `source`.
 */
export async function prepare(
  app: FastifyInstance,
  source: Keypair,
  fn: string,
  args: xdr.ScVal[],
  sign: (entries: xdr.SorobanAuthorizationEntry[]) => xdr.SorobanAuthorizationEntry[],
  o: TxOptions = {},
): Promise<{ tx: Transaction; sim: RawSim; entries: xdr.SorobanAuthorizationEntry[] }> {
  const raw = tx(app, source.publicKey(), [call(fn, args)], o);
  const sim = await simulate(app, raw);
  if (sim.error !== undefined) throw new Error(`simulation failed: ${sim.error}`);
  const entries = sign(simAuth(sim));
  const withAuth = tx(app, source.publicKey(), [call(fn, args, entries)], o);
  // Simulated again with the entries in place, so the footprint names their nonces (a changed nonce, or a replayed
  // entry, needs its own nonce key); the entries themselves are kept by assembleTransaction.
  const again = await simulate(app, withAuth);
  const t = rpc.assembleTransaction(withAuth, again.error === undefined ? again : sim).build();
  t.sign(source);
  return { tx: t, sim: again.error === undefined ? again : sim, entries };
}
