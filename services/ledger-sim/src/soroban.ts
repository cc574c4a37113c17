import { createHash, randomBytes } from 'node:crypto';
import { authCredentials, authEntryPayload, checkAccountAuthSignatures, sorobanShape } from '@cosigner/stellar/soroban';
import { Address, Keypair, nativeToScVal, StrKey, scValToBigInt, xdr } from '@stellar/stellar-sdk/base';
import { type AccountState, availableBalance, cloneAccount } from './state.ts';

/**
 * Soroban in the simulator: one built-in contract, a test escrow, run in TypeScript (no WASM), with the checks
 * stellar-core and soroban-env-host apply to its invocations:
 * - the transaction's shape and resource fee (stellar-core TransactionFrame.cpp `commonValidPreSeqNum`);
 * - the footprint and declared resources against a fixed resource model (below);
 * - authorization as the host does it (soroban-env-host src/auth.rs `maybe_authorize_invocation`: match the call
 *   to an entry's root invocation, authenticate, then `verify_and_consume_nonce`; for G accounts
 *   builtin_contracts/account_contract.rs `check_account_authentication`, reused from `@cosigner/stellar/soroban`).
 */

/** Prefix of the escrow contract id preimage: id = sha256(utf8(ESCROW_ID_LABEL + networkPassphrase)). */
export const ESCROW_ID_LABEL = 'cosigner/ledger-sim/escrow/v1:';

/** The escrow contract's 32-byte id on the network `networkPassphrase`. */
export function escrowContractIdBytes(networkPassphrase: string): Buffer {
  return createHash('sha256').update(`${ESCROW_ID_LABEL}${networkPassphrase}`, 'utf8').digest();
}

/**
 * The StrKey `C...` address of the built-in escrow contract that exists from genesis on the simulated network
 * `networkPassphrase`: sha256(utf8("cosigner/ledger-sim/escrow/v1:" + networkPassphrase)).
 */
export function escrowContractId(networkPassphrase: string): string {
  return StrKey.encodeContract(escrowContractIdBytes(networkPassphrase));
}

/**
 * Longest entry lifetime in ledgers: stellar-core `InitialSorobanNetworkConfig::MAXIMUM_ENTRY_LIFETIME` (61 days),
 * what a fresh network starts with (pubnet has since voted 3,110,400). An authorization entry's expiration ledger
 * may be at most `ledger + MAX_ENTRY_TTL - 1` (soroban-env-host `max_live_until_ledger`).
 */
export const MAX_ENTRY_TTL = 1_054_080;
/** Shortest temporary entry lifetime (InitialSorobanNetworkConfig::MINIMUM_TEMP_ENTRY_LIFETIME): a nonce lives at least this long. */
export const MIN_TEMP_ENTRY_TTL = 16;

/** The last ledger an authorization entry may name as its expiration when applied in ledger `ledgerSeq`. */
export function maxSignatureExpirationLedger(ledgerSeq: number): number {
  return ledgerSeq + MAX_ENTRY_TTL - 1;
}

/** What every escrow call needs in the sim's fixed resource model (core meters real execution; the sim does not). */
export const CALL_RESOURCES = Object.freeze({ instructions: 1_000_000, diskReadBytes: 1_000, writeBytes: 1_000 });

/** Per-transaction network limits (pubnet-like ConfigSettings); above them a transaction is txSOROBAN_INVALID. */
export const NETWORK_LIMITS = Object.freeze({
  instructions: 100_000_000,
  diskReadBytes: 200_000,
  writeBytes: 132_096,
  footprintEntries: 100,
  writeEntries: 50,
});

/** Fee rates in stroops (pubnet-like ConfigSettingContractLedgerCostV0 / ComputeV0 values). */
export const FEE_RATES = Object.freeze({
  per10kInstructions: 25n,
  perEntry: 6_250n,
  perWriteEntry: 10_000n,
  perKbDiskRead: 1_786n,
  perKbWrite: 11_800n,
});

function ceilDiv(a: bigint, b: bigint): bigint {
  return (a + b - 1n) / b;
}

/**
 * The resource fee the declared `resources` cost in the sim's fixed model (all non-refundable; no tx-size, event
 * or rent fee): ceil(instructions * 25 / 10000) + 6250 per footprint entry + 10000 per read-write entry
 * + ceil(diskReadBytes * 1786 / 1024) + ceil(writeBytes * 11800 / 1024).
 */
export function sorobanResourceFee(resources: xdr.SorobanResources): bigint {
  const ro = BigInt(resources.footprint.readOnly.length);
  const rw = BigInt(resources.footprint.readWrite.length);
  return (
    ceilDiv(BigInt(resources.instructions) * FEE_RATES.per10kInstructions, 10_000n) +
    (ro + rw) * FEE_RATES.perEntry +
    rw * FEE_RATES.perWriteEntry +
    ceilDiv(BigInt(resources.diskReadBytes) * FEE_RATES.perKbDiskRead, 1024n) +
    ceilDiv(BigInt(resources.writeBytes) * FEE_RATES.perKbWrite, 1024n)
  );
}

export type SorobanTxCheck =
  | { ok: true; soroban: false }
  | { ok: true; soroban: true; resourceFee: bigint }
  | { ok: false; code: 'txMalformed' | 'txSorobanInvalid' | 'txInsufficientFee'; diagnostic: string };

/** The declared resource fee of a v1 transaction (0 for a classic one): the part of `fee` that is not inclusion fee. */
export function declaredResourceFee(tx: xdr.Transaction): bigint {
  return tx.ext.type === 'sorobanData' ? tx.ext.sorobanData.resourceFee : 0n;
}

/**
 * The state-independent Soroban checks of TransactionFrame::commonValidPreSeqNum, in core's order: a Soroban
 * operation must be alone and carry SorobanTransactionData (txMALFORMED; so must a classic tx not carry it), the
 * declared resources must fit the network limits (txSOROBAN_INVALID), the declared resource fee must not exceed
 * the tx fee (txSOROBAN_INVALID) and must cover what the declared resources cost (txINSUFFICIENT_FEE).
 */
export function checkSorobanTx(tx: xdr.Transaction): SorobanTxCheck {
  const fail = (
    code: 'txMalformed' | 'txSorobanInvalid' | 'txInsufficientFee',
    diagnostic: string,
  ): SorobanTxCheck => ({
    ok: false,
    code,
    diagnostic,
  });
  // The shape (a Soroban operation alone, with its data; no data on a classic one) is packages/stellar's; the
  // numeric network limits and the fee rules below are the simulator's own.
  const shape = sorobanShape(tx);
  if (shape.kind === 'classic') {
    return shape.hasData
      ? fail('txMalformed', 'soroban: SorobanTransactionData on a transaction without a Soroban operation')
      : { ok: true, soroban: false };
  }
  if (shape.kind === 'malformed') {
    return shape.problem === 'operationCount'
      ? fail(
          'txMalformed',
          `soroban: a Soroban transaction holds exactly one operation (this one has ${shape.operations})`,
        )
      : fail('txMalformed', 'soroban: the transaction carries no SorobanTransactionData (simulate it first)');
  }
  const { data, resources } = shape;
  const r = data.resources;
  const over: [string, number, number][] = [
    ['instructions', resources.instructions, NETWORK_LIMITS.instructions],
    ['disk read bytes', resources.diskReadBytes, NETWORK_LIMITS.diskReadBytes],
    ['write bytes', resources.writeBytes, NETWORK_LIMITS.writeBytes],
    ['footprint entries', resources.footprintEntries, NETWORK_LIMITS.footprintEntries],
    ['read-write entries', resources.readWriteEntries, NETWORK_LIMITS.writeEntries],
  ];
  for (const [what, n, max] of over) {
    if (n > max) return fail('txSorobanInvalid', `resources: ${what} ${n} above the network limit ${max}`);
  }
  if (data.resourceFee < 0n || data.resourceFee > BigInt(tx.fee)) {
    return fail(
      'txSorobanInvalid',
      `fee: resourceFee ${data.resourceFee} is negative or above the transaction fee ${tx.fee}`,
    );
  }
  const required = sorobanResourceFee(r);
  if (data.resourceFee < required) {
    return fail(
      'txInsufficientFee',
      `fee: resourceFee ${data.resourceFee} below the ${required} the declared resources cost`,
    );
  }
  return { ok: true, soroban: true, resourceFee: data.resourceFee };
}

/** The accounts an invocation reads and changes; the engine passes its copy-on-write view. */
export interface AccountsView {
  get(id: string): AccountState | undefined;
}

/** What an invocation runs against. */
export interface InvokeEnv {
  networkPassphrase: string;
  /** The ledger the transaction is applied in (the host's ledger sequence). */
  ledgerSeq: number;
  /** The operation's source account: the address SOURCE_ACCOUNT credentials authorize (the host's invoker). */
  sourceAccount: string;
  accounts: AccountsView;
  escrow: ReadonlyMap<string, bigint>;
  nonces: ReadonlyMap<string, number>;
}

export type InvokeCode = 'success' | 'trapped' | 'resourceLimitExceeded';

export interface InvokeResult {
  code: InvokeCode;
  diagnostic?: string;
  returnValue?: xdr.ScVal;
  /** sha256(InvokeHostFunctionSuccessPreImage{returnValue, events: []}), the success result's hash. */
  successHash?: Buffer;
  /** To apply only when the transaction succeeds: escrow balances to set and nonces to record. */
  escrowWrites: Map<string, bigint>;
  nonceWrites: Map<string, number>;
}

/** A host failure inside the sim: ends the invocation with an InvokeHostFunctionResult code and a reason. */
class HostFailure extends Error {
  constructor(
    readonly code: Exclude<InvokeCode, 'success'>,
    message: string,
  ) {
    super(message);
  }
}

function trap(message: string): never {
  throw new HostFailure('trapped', message);
}

/** The contract's view of the host: footprint-checked storage access and require_auth. */
interface Host {
  read(key: xdr.LedgerKey, what: string): void;
  write(key: xdr.LedgerKey, what: string): void;
  requireAuth(address: string, fn: string, args: readonly xdr.ScVal[]): void;
}

function keyId(k: xdr.LedgerKey): string {
  return k.toXdr('base64');
}

function contractDataKey(contract: xdr.ScAddress, key: xdr.ScVal, temporary: boolean): xdr.LedgerKey {
  return xdr.LedgerKey.contractData(
    new xdr.LedgerKeyContractData({
      contract,
      key,
      durability: temporary ? xdr.ContractDataDurability.temporary : xdr.ContractDataDurability.persistent,
    }),
  );
}

function escrowAddress(networkPassphrase: string): xdr.ScAddress {
  return Address.contract(escrowContractIdBytes(networkPassphrase)).toScAddress();
}

/** The escrow instance entry (ContractData, LEDGER_KEY_CONTRACT_INSTANCE, persistent). */
export function escrowInstanceKey(networkPassphrase: string): xdr.LedgerKey {
  return contractDataKey(escrowAddress(networkPassphrase), xdr.ScVal.scvLedgerKeyContractInstance(), false);
}

/** The escrow balance entry of `depositor` (ContractData, Vec[Symbol("Balance"), Address], persistent). */
export function escrowBalanceKey(networkPassphrase: string, depositor: string): xdr.LedgerKey {
  const key = xdr.ScVal.scvVec([xdr.ScVal.scvSymbol('Balance'), Address.fromString(depositor).toScVal()]);
  return contractDataKey(escrowAddress(networkPassphrase), key, false);
}

/** The nonce entry the host writes for `address` (ContractData of the address, LEDGER_KEY_NONCE, temporary). */
export function nonceKey(address: string, nonce: bigint): xdr.LedgerKey {
  const key = xdr.ScVal.scvLedgerKeyNonce(new xdr.ScNonceKey({ nonce }));
  return contractDataKey(Address.fromString(address).toScAddress(), key, true);
}

/** A classic account's ledger key. */
export function accountKey(id: string): xdr.LedgerKey {
  return xdr.LedgerKey.account(new xdr.LedgerKeyAccount({ accountId: Keypair.fromPublicKey(id).xdrAccountId() }));
}

function renderArg(v: xdr.ScVal): string {
  if (v.type === 'scvAddress') return Address.fromScAddress(v.address).toString();
  if (v.type === 'scvI128') return scValToBigInt(v).toString();
  return v.type;
}

function describeCall(fn: string, args: readonly xdr.ScVal[]): string {
  return `escrow.${fn}(${args.map(renderArg).join(', ')})`;
}

const SIGNATURES: Record<string, string[]> = {
  deposit: ['from: Address', 'amount: i128'],
  release: ['from: Address', 'to: Address', 'amount: i128'],
  balance: ['of: Address'],
};

/** A G account address argument; anything else traps, as the contract's type conversion would. */
function accountArg(fn: string, v: xdr.ScVal, name: string): string {
  if (v.type !== 'scvAddress' || v.address.type !== 'scAddressTypeAccount') {
    trap(`escrow: ${fn}: ${name} must be a G account address (got ${renderArg(v)})`);
  }
  return Address.fromScAddress(v.address).toString();
}

function amountArg(fn: string, v: xdr.ScVal): bigint {
  if (v.type !== 'scvI128') trap(`escrow: ${fn}: amount must be an i128 (got ${v.type})`);
  const n = scValToBigInt(v);
  if (n <= 0n) trap(`escrow: ${fn}: amount must be positive (got ${n})`);
  return n;
}

/**
 * The escrow contract. deposit/release call `from.require_auth()` for their own arguments, as a Soroban contract's
 * `from.require_auth()` authorizes the current call (contract, function, args). Lumens cannot overflow an int64
 * here: every balance is bounded by the network's total coins (1e18 < 2^63).
 */
function runEscrow(
  fn: string,
  args: readonly xdr.ScVal[],
  host: Host,
  env: InvokeEnv,
  writes: InvokeResult,
): xdr.ScVal {
  const expected = SIGNATURES[fn];
  if (expected === undefined) trap(`escrow: no function ${fn} (the escrow has deposit, release, balance)`);
  if (args.length !== expected.length) {
    trap(`escrow: ${fn} takes (${expected.join(', ')}), got ${args.length} argument(s)`);
  }
  const escrowed = (who: string): bigint => writes.escrowWrites.get(who) ?? env.escrow.get(who) ?? 0n;
  const i128 = (n: bigint): xdr.ScVal => nativeToScVal(n, { type: 'i128' });
  if (fn === 'balance') {
    const of = accountArg(fn, args[0]!, 'of');
    host.read(escrowBalanceKey(env.networkPassphrase, of), `escrow balance of ${of}`);
    return i128(escrowed(of));
  }
  const from = accountArg(fn, args[0]!, 'from');
  if (fn === 'deposit') {
    const amount = amountArg(fn, args[1]!);
    host.requireAuth(from, fn, args);
    host.write(accountKey(from), `account ${from}`);
    host.write(escrowBalanceKey(env.networkPassphrase, from), `escrow balance of ${from}`);
    const acct = env.accounts.get(from);
    if (acct === undefined) trap(`escrow: deposit: account ${from} does not exist`);
    const available = availableBalance(acct);
    if (available < amount) {
      trap(`escrow: deposit: ${from} has ${available} stroops above its reserve, below the ${amount} to deposit`);
    }
    acct.balance -= amount;
    writes.escrowWrites.set(from, escrowed(from) + amount);
    return i128(escrowed(from));
  }
  const to = accountArg(fn, args[1]!, 'to');
  const amount = amountArg(fn, args[2]!);
  host.requireAuth(from, fn, args);
  host.write(escrowBalanceKey(env.networkPassphrase, from), `escrow balance of ${from}`);
  host.write(accountKey(to), `account ${to}`);
  const held = escrowed(from);
  if (held < amount) trap(`escrow: release: ${from} has ${held} stroops in escrow, below the ${amount} to release`);
  const dest = env.accounts.get(to);
  if (dest === undefined) trap(`escrow: release: destination account ${to} does not exist`);
  dest.balance += amount;
  writes.escrowWrites.set(from, held - amount);
  return i128(held - amount);
}

/** The address an entry authorizes for: SOURCE_ACCOUNT credentials stand for the invoker. */
function entryAddress(entry: xdr.SorobanAuthorizationEntry, invoker: string): string {
  const a = authCredentials(entry);
  return a.credentials === 'sourceAccount' ? invoker : a.address;
}

/** Does the entry's root invocation equal the call (contract, function name, args; XDR equality as the host compares)? */
function matchesCall(
  entry: xdr.SorobanAuthorizationEntry,
  escrow: xdr.ScAddress,
  fn: string,
  args: readonly xdr.ScVal[],
): boolean {
  const f = entry.rootInvocation.function;
  if (f.type !== 'sorobanAuthorizedFunctionTypeContractFn') return false;
  const c = f.contractFn;
  return (
    Buffer.from(c.contractAddress.toXdr()).equals(Buffer.from(escrow.toXdr())) &&
    c.functionName.toString() === fn &&
    c.args.length === args.length &&
    c.args.every((a, i) => Buffer.from(a.toXdr()).equals(Buffer.from(args[i]!.toXdr())))
  );
}

function footprintSets(fp: xdr.LedgerFootprint): { ro: Set<string>; rw: Set<string> } {
  return { ro: new Set(fp.readOnly.map(keyId)), rw: new Set(fp.readWrite.map(keyId)) };
}

function newResult(): InvokeResult {
  return { code: 'success', escrowWrites: new Map(), nonceWrites: new Map() };
}

function successHash(returnValue: xdr.ScVal): Buffer {
  const pre = new xdr.InvokeHostFunctionSuccessPreImage({ returnValue, events: [] });
  return createHash('sha256').update(pre.toXdr()).digest();
}

/**
 * Runs an invokeHostFunction operation of a transaction that passed validation, in enforcing mode. Account
 * changes go through `env.accounts` (the engine's copy-on-write view, dropped on failure); escrow and nonce
 * changes come back in `escrowWrites`/`nonceWrites` for the engine to apply when the transaction succeeds.
 */
export function invokeHostFunction(
  op: xdr.InvokeHostFunctionOp,
  data: xdr.SorobanTransactionData,
  env: InvokeEnv,
): InvokeResult {
  const out = newResult();
  const escrow = escrowAddress(env.networkPassphrase);
  const { ro, rw } = footprintSets(data.resources.footprint);
  const used = new Set<xdr.SorobanAuthorizationEntry>();
  const host: Host = {
    read(key, what) {
      const id = keyId(key);
      if (!ro.has(id) && !rw.has(id)) {
        throw new HostFailure('resourceLimitExceeded', `footprint: missing key ${what}`);
      }
    },
    write(key, what) {
      if (!rw.has(keyId(key)))
        throw new HostFailure('resourceLimitExceeded', `footprint: missing read-write key ${what}`);
    },
    requireAuth(address, fn, args) {
      const entry = op.auth.find(
        (e) => !used.has(e) && entryAddress(e, env.sourceAccount) === address && matchesCall(e, escrow, fn, args),
      );
      if (entry === undefined) {
        trap(`auth: no authorization entry for ${address} matches ${describeCall(fn, args)}`);
      }
      used.add(entry);
      authenticate(entry, address, env, host, out);
    },
  };
  try {
    const r = data.resources;
    const short: [string, number, number][] = [
      ['instructions', r.instructions, CALL_RESOURCES.instructions],
      ['disk read bytes', r.diskReadBytes, CALL_RESOURCES.diskReadBytes],
      ['write bytes', r.writeBytes, CALL_RESOURCES.writeBytes],
    ];
    for (const [what, n, need] of short) {
      if (n < need)
        throw new HostFailure('resourceLimitExceeded', `resources: ${what} ${n} below the ${need} this call needs`);
    }
    const call = callOf(op, env.networkPassphrase);
    host.read(escrowInstanceKey(env.networkPassphrase), 'escrow contract instance');
    const returnValue = runEscrow(call.fn, call.args, host, env, out);
    out.returnValue = returnValue;
    out.successHash = successHash(returnValue);
    return out;
  } catch (e) {
    if (!(e instanceof HostFailure)) throw e;
    return { code: e.code, diagnostic: e.message, escrowWrites: new Map(), nonceWrites: new Map() };
  }
}

/** The contract call an operation makes; anything but a call of the escrow traps. */
function callOf(op: xdr.InvokeHostFunctionOp, networkPassphrase: string): { fn: string; args: xdr.ScVal[] } {
  const hf = op.hostFunction;
  if (hf.type !== 'hostFunctionTypeInvokeContract') {
    trap(`escrow: only contract calls are supported (not ${hf.type}): the sim has no WASM`);
  }
  const target = Address.fromScAddress(hf.invokeContract.contractAddress).toString();
  const id = escrowContractId(networkPassphrase);
  if (target !== id) trap(`escrow: no contract ${target} on this network; the only contract is the escrow ${id}`);
  return { fn: hf.invokeContract.functionName.toString(), args: hf.invokeContract.args };
}

/**
 * Authenticates a matched entry in the host's order (auth.rs `maybe_authorize_invocation`): the signatures
 * (`check_account_authentication`), then `verify_and_consume_nonce`: expired, too late, nonce key outside the
 * footprint, nonce already used. SOURCE_ACCOUNT credentials need neither: the envelope signatures cover them.
 */
function authenticate(
  entry: xdr.SorobanAuthorizationEntry,
  address: string,
  env: InvokeEnv,
  host: Host,
  out: InvokeResult,
): void {
  const a = authCredentials(entry);
  if (a.credentials === 'sourceAccount') return;
  if (a.credentials === 'addressWithDelegates') {
    trap(`auth: ${address}: address-with-delegates credentials (CAP-71) are not supported by the simulator`);
  }
  const { creds } = a;
  const acct = env.accounts.get(address);
  if (acct === undefined) trap(`auth: ${address}: account does not exist`);
  const payload = authEntryPayload(entry, env.networkPassphrase);
  const check = checkAccountAuthSignatures(
    { accountId: acct.id, masterWeight: acct.masterWeight, thresholds: acct.thresholds, signers: acct.signers },
    payload,
    creds.signature,
  );
  if (!check.ok) trap(`auth: ${address}: ${check.reason}`);
  const exp = creds.signatureExpirationLedger;
  if (env.ledgerSeq > exp) trap(`auth: ${address}: entry expired at ledger ${exp} (current ${env.ledgerSeq})`);
  const max = maxSignatureExpirationLedger(env.ledgerSeq);
  if (exp > max) trap(`auth: ${address}: signature expiration ledger ${exp} is beyond the maximum ${max}`);
  host.write(nonceKey(address, creds.nonce), `nonce ${creds.nonce} of ${address}`);
  const k = nonceId(address, creds.nonce);
  if (env.nonces.has(k) || out.nonceWrites.has(k)) trap(`auth: ${address}: nonce ${creds.nonce} already used`);
  // consume_nonce: a temporary entry living until the expiration, at least the minimum temporary lifetime.
  out.nonceWrites.set(k, Math.max(exp, env.ledgerSeq + MIN_TEMP_ENTRY_TTL - 1));
}

/** How LedgerState.nonces names a consumed nonce. */
export function nonceId(address: string, nonce: bigint): string {
  return `${address} ${nonce}`;
}

export type SimulationResult =
  | {
      ok: true;
      transactionData: xdr.SorobanTransactionData;
      minResourceFee: bigint;
      auth: xdr.SorobanAuthorizationEntry[];
      returnValue: xdr.ScVal;
    }
  | { ok: false; error: string };

/** A throwaway copy-on-write view: simulation changes nothing. */
function overlay(base: ReadonlyMap<string, AccountState>): AccountsView {
  const copies = new Map<string, AccountState>();
  return {
    get(id) {
      const c = copies.get(id);
      if (c !== undefined) return c;
      const b = base.get(id);
      if (b === undefined) return undefined;
      const copy = cloneAccount(b);
      copies.set(id, copy);
      return copy;
    },
  };
}

/** A random nonce as the host's recording mode draws it: uniform in 0..=i64::MAX (auth.rs `new_recording`). */
function randomNonce(): bigint {
  return randomBytes(8).readBigUInt64BE() >> 1n;
}

/**
 * simulateTransaction for an invokeHostFunction operation, in recording mode (soroban-simulation): runs the call
 * without checking signatures, records the footprint and one authorization entry per `require_auth` (ADDRESS
 * credentials with a fresh random nonce and signatureExpirationLedger 0 to fill, an empty signature; SOURCE_ACCOUNT
 * credentials when the address is the invoker, as the host records the invoker). When the operation already carries
 * a matching entry, that entry is kept and its nonce goes in the footprint. Resources are the fixed model's.
 */
export function simulateInvocation(
  op: xdr.InvokeHostFunctionOp,
  env: Omit<InvokeEnv, 'accounts'> & { accounts: ReadonlyMap<string, AccountState> },
): SimulationResult {
  const view: InvokeEnv = { ...env, accounts: overlay(env.accounts) };
  const escrow = escrowAddress(env.networkPassphrase);
  const ro = new Map<string, xdr.LedgerKey>();
  const rw = new Map<string, xdr.LedgerKey>();
  const auth: xdr.SorobanAuthorizationEntry[] = [];
  const out = newResult();
  const host: Host = {
    read(key) {
      if (!rw.has(keyId(key))) ro.set(keyId(key), key);
    },
    write(key) {
      ro.delete(keyId(key));
      rw.set(keyId(key), key);
    },
    requireAuth(address, fn, args) {
      const given = op.auth.find(
        (e) => entryAddress(e, env.sourceAccount) === address && matchesCall(e, escrow, fn, args),
      );
      const invocation = new xdr.SorobanAuthorizedInvocation({
        function: xdr.SorobanAuthorizedFunction.sorobanAuthorizedFunctionTypeContractFn(
          new xdr.InvokeContractArgs({ contractAddress: escrow, functionName: fn, args: [...args] }),
        ),
        subInvocations: [],
      });
      let entry = given;
      if (entry === undefined && address === env.sourceAccount) {
        entry = new xdr.SorobanAuthorizationEntry({
          credentials: xdr.SorobanCredentials.sorobanCredentialsSourceAccount(),
          rootInvocation: invocation,
        });
      }
      if (entry === undefined) {
        // emulate_authentication: the account is loaded, so a missing one fails the simulation.
        if (view.accounts.get(address) === undefined) trap(`auth: ${address}: account does not exist`);
        entry = new xdr.SorobanAuthorizationEntry({
          credentials: xdr.SorobanCredentials.sorobanCredentialsAddress(
            new xdr.SorobanAddressCredentials({
              address: Address.fromString(address).toScAddress(),
              nonce: randomNonce(),
              signatureExpirationLedger: 0,
              signature: xdr.ScVal.scvVoid(),
            }),
          ),
          rootInvocation: invocation,
        });
      }
      auth.push(entry);
      const a = authCredentials(entry);
      if (a.credentials === 'address' || a.credentials === 'addressV2')
        host.write(nonceKey(address, a.creds.nonce), 'nonce');
    },
  };
  try {
    const call = callOf(op, env.networkPassphrase);
    host.read(escrowInstanceKey(env.networkPassphrase), 'escrow contract instance');
    const returnValue = runEscrow(call.fn, call.args, host, view, out);
    const resources = new xdr.SorobanResources({
      footprint: new xdr.LedgerFootprint({ readOnly: [...ro.values()], readWrite: [...rw.values()] }),
      ...CALL_RESOURCES,
    });
    const minResourceFee = sorobanResourceFee(resources);
    const transactionData = new xdr.SorobanTransactionData({
      ext: xdr.SorobanTransactionDataExt.v0(),
      resources,
      resourceFee: minResourceFee,
    });
    return { ok: true, transactionData, minResourceFee, auth, returnValue };
  } catch (e) {
    if (!(e instanceof HostFailure)) throw e;
    return { ok: false, error: e.message };
  }
}
