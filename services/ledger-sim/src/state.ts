import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Keypair } from '@stellar/stellar-sdk/base';
import { ledgerErrors } from './errors.ts';

/**
 * The simulator's ledger state, in memory: accounts, closed ledger headers and every transaction it applied,
 * with an optional JSON snapshot so a restart keeps them. Amounts are stroops (bigint), like core's int64.
 */

/** Network constants of a fresh stellar-core standalone network (Config.cpp defaults, protocol >= 11). */
export const BASE_FEE = 100n;
/** 0.5 XLM: every account and subentry locks one base reserve (LedgerManagerImpl, protocol >= 10). */
export const BASE_RESERVE = 5_000_000n;
/** 100 billion XLM in stroops: the root account's balance at genesis (LedgerManager GENESIS_LEDGER_TOTAL_COINS). */
export const TOTAL_COINS = 1_000_000_000_000_000_000n;
export const PROTOCOL_VERSION = 23;
export const INT64_MAX = 2n ** 63n - 1n;
/** Transactions kept per ledger close (core MAX_TX_SET_SIZE default, in operations). */
export const MAX_TX_SET_SIZE = 100;
/** Closed ledger headers kept in memory and in the snapshot (older ones are history, not needed to validate). */
export const MAX_LEDGERS_KEPT = 1000;

/** Account flags (xdr AccountFlags). */
export const AUTH_REQUIRED_FLAG = 0x1;
export const AUTH_REVOCABLE_FLAG = 0x2;
export const AUTH_IMMUTABLE_FLAG = 0x4;
export const AUTH_CLAWBACK_ENABLED_FLAG = 0x8;
export const MASK_ACCOUNT_FLAGS = 0xf;

export interface Trustline {
  code: string;
  issuer: string;
  balance: bigint;
  limit: bigint;
  lastModifiedLedger: number;
}

export interface AccountState {
  id: string;
  balance: bigint;
  seq: bigint;
  /** Ledger and close time at which `seq` last changed (AccountEntryExtensionV3, CAP-21 minSeqAge/minSeqLedgerGap). */
  seqLedger: number;
  seqTime: bigint;
  masterWeight: number;
  thresholds: { low: number; medium: number; high: number };
  /** Added signers, sorted by key as core keeps them (SetOptionsOpFrame, std::sort on SignerKey). */
  signers: { key: string; weight: number }[];
  flags: number;
  homeDomain: string;
  inflationDest: string | null;
  data: Map<string, Buffer>;
  /** Keyed by `code:issuer`. */
  trustlines: Map<string, Trustline>;
  lastModifiedLedger: number;
  lastModifiedTime: number;
}

export interface LedgerHeader {
  sequence: number;
  hash: string;
  prevHash: string;
  /** Unix seconds. */
  closedAt: number;
  successfulTxCount: number;
  failedTxCount: number;
  operationCount: number;
  txSetOperationCount: number;
  feePool: bigint;
  totalCoins: bigint;
}

/** One applied transaction, as Horizon's transaction resource needs it. */
export interface TxRecord {
  hash: string;
  /** For fee bumps, the inner transaction's hash (Horizon also finds the record by it). */
  innerHash?: string;
  ledger: number;
  /** Unix seconds. */
  createdAt: number;
  /** Application order since genesis, used as Horizon's paging token. */
  order: number;
  successful: boolean;
  sourceAccount: string;
  sourceAccountSequence: string;
  feeAccount: string;
  feeCharged: bigint;
  maxFee: bigint;
  operationCount: number;
  envelopeXdr: string;
  resultXdr: string;
  /** Every account the transaction names (sources, destinations, signers changed), for /accounts/:id/transactions. */
  accounts: string[];
  /** Soroban transactions: why the invocation failed, in plain words (Horizon extras.diagnostic). */
  diagnostic?: string;
  /** Soroban transactions that succeeded: the base64 ScVal the contract returned (RPC getTransaction returnValue). */
  returnValue?: string;
}

/** The subentries that lock a reserve each: trustlines, signers and data entries (core numSubEntries). */
export function numSubEntries(a: AccountState): number {
  return a.trustlines.size + a.signers.length + a.data.size;
}

/** Core's getMinBalance: (2 + numSubEntries) * baseReserve (protocol >= 9, no sponsorship). */
export function minBalance(a: AccountState, extraSubentries = 0): bigint {
  return BigInt(2 + numSubEntries(a) + extraSubentries) * BASE_RESERVE;
}

/** Native balance the account may spend: balance above its reserve (core getAvailableBalance; no liabilities here). */
export function availableBalance(a: AccountState): bigint {
  return a.balance - minBalance(a);
}

/** A starting sequence number for accounts created in `ledgerSeq` (core getStartingSequenceNumber). */
export function startingSequence(ledgerSeq: number): bigint {
  return BigInt(ledgerSeq) << 32n;
}

export function newAccount(id: string, balance: bigint, ledgerSeq: number, nowSec: number): AccountState {
  return {
    id,
    balance,
    seq: startingSequence(ledgerSeq),
    seqLedger: 0,
    seqTime: 0n,
    masterWeight: 1,
    thresholds: { low: 0, medium: 0, high: 0 },
    signers: [],
    flags: 0,
    homeDomain: '',
    inflationDest: null,
    data: new Map(),
    trustlines: new Map(),
    lastModifiedLedger: ledgerSeq,
    lastModifiedTime: nowSec,
  };
}

export function cloneAccount(a: AccountState): AccountState {
  return {
    ...a,
    thresholds: { ...a.thresholds },
    signers: a.signers.map((s) => ({ ...s })),
    data: new Map(a.data),
    trustlines: new Map([...a.trustlines].map(([k, t]) => [k, { ...t }])),
  };
}

/** The network root key: stellar-core derives it from the passphrase (SecretKey::fromSeed(sha256(passphrase))). */
export function rootKeypair(networkPassphrase: string): Keypair {
  return Keypair.fromRawEd25519Seed(createHash('sha256').update(networkPassphrase, 'utf8').digest());
}

function headerHash(h: Omit<LedgerHeader, 'hash'>, txHashes: readonly string[]): string {
  return createHash('sha256')
    .update(JSON.stringify([h.sequence, h.prevHash, h.closedAt, h.feePool.toString(), txHashes]))
    .digest('hex');
}

/**
 * Accounts, closed ledgers and the open ledger that submitted transactions land in. The open ledger's
 * sequence is the last closed one + 1, as in core, where a transaction is validated and applied against the
 * ledger being closed.
 */
export class LedgerState {
  readonly accounts = new Map<string, AccountState>();
  readonly ledgers: LedgerHeader[] = [];
  readonly txs: TxRecord[] = [];
  readonly txByHash = new Map<string, TxRecord>();
  /** The built-in escrow contract's balances: depositor G address -> stroops held for it (see soroban.ts). */
  readonly escrow = new Map<string, bigint>();
  /**
   * Consumed Soroban authorization nonces, `${address} ${nonce}` -> the ledger their entry lives until. The host
   * stores each as a temporary ContractData entry (auth.rs `consume_nonce`); the sim drops it once it expires.
   */
  readonly nonces = new Map<string, number>();
  feePool = 0n;
  /** Transactions applied in the open ledger, for its header when it closes. */
  private openTxs: TxRecord[] = [];

  constructor(
    readonly networkPassphrase: string,
    nowSec: number,
  ) {
    // Genesis (LedgerManagerImpl::startNewLedger): ledger 1 holds only the root account with every lumen.
    const root = newAccount(rootKeypair(networkPassphrase).publicKey(), TOTAL_COINS, 1, nowSec);
    root.seq = 0n;
    this.accounts.set(root.id, root);
    const genesis = {
      sequence: 1,
      prevHash: '0'.repeat(64),
      closedAt: nowSec,
      successfulTxCount: 0,
      failedTxCount: 0,
      operationCount: 0,
      txSetOperationCount: 0,
      feePool: 0n,
      totalCoins: TOTAL_COINS,
    };
    this.ledgers.push({ ...genesis, hash: headerHash(genesis, []) });
  }

  get lastClosed(): LedgerHeader {
    return this.ledgers[this.ledgers.length - 1]!;
  }

  /** The sequence of the ledger being built: transactions submitted now are applied in it. */
  get openSequence(): number {
    return this.lastClosed.sequence + 1;
  }

  recordTx(r: TxRecord): void {
    this.txs.push(r);
    this.txByHash.set(r.hash, r);
    if (r.innerHash !== undefined) this.txByHash.set(r.innerHash, r);
    this.openTxs.push(r);
  }

  /** Closes the open ledger at `nowSec` (never before the previous close time) and opens the next one. */
  close(nowSec: number): LedgerHeader {
    const prev = this.lastClosed;
    const txs = this.openTxs;
    this.openTxs = [];
    const h = {
      sequence: prev.sequence + 1,
      prevHash: prev.hash,
      closedAt: Math.max(nowSec, prev.closedAt),
      successfulTxCount: txs.filter((t) => t.successful).length,
      failedTxCount: txs.filter((t) => !t.successful).length,
      operationCount: txs.filter((t) => t.successful).reduce((n, t) => n + t.operationCount, 0),
      txSetOperationCount: txs.reduce((n, t) => n + t.operationCount, 0),
      feePool: this.feePool,
      totalCoins: TOTAL_COINS,
    };
    const header = {
      ...h,
      hash: headerHash(
        h,
        txs.map((t) => t.hash),
      ),
    };
    this.ledgers.push(header);
    // A temporary entry whose live-until ledger has passed is gone (state archival deletes temporary entries):
    // the nonce could be used again, but only by an entry whose own expiration had passed too.
    for (const [k, liveUntil] of this.nonces) if (liveUntil < this.openSequence) this.nonces.delete(k);
    if (this.ledgers.length > MAX_LEDGERS_KEPT) this.ledgers.splice(0, this.ledgers.length - MAX_LEDGERS_KEPT);
    return header;
  }

  /** Sum of every balance, the escrow and the fee pool: always TOTAL_COINS (lumens are neither made nor lost). */
  totalLumens(): bigint {
    let sum = this.feePool;
    for (const a of this.accounts.values()) sum += a.balance;
    for (const v of this.escrow.values()) sum += v;
    return sum;
  }

  toSnapshot(): Snapshot {
    return {
      version: 1,
      networkPassphrase: this.networkPassphrase,
      feePool: this.feePool.toString(),
      ledgers: this.ledgers.map((l) => ({ ...l, feePool: l.feePool.toString(), totalCoins: l.totalCoins.toString() })),
      accounts: [...this.accounts.values()].map((a) => ({
        ...a,
        balance: a.balance.toString(),
        seq: a.seq.toString(),
        seqTime: a.seqTime.toString(),
        data: [...a.data].map(([k, v]) => [k, v.toString('base64')] as [string, string]),
        trustlines: [...a.trustlines.values()].map((t) => ({
          ...t,
          balance: t.balance.toString(),
          limit: t.limit.toString(),
        })),
      })),
      transactions: this.txs.map((t) => ({ ...t, feeCharged: t.feeCharged.toString(), maxFee: t.maxFee.toString() })),
      soroban: {
        escrow: [...this.escrow].map(([k, v]) => [k, v.toString()] as [string, string]),
        nonces: [...this.nonces],
      },
    };
  }

  /**
   * Rebuilds state from a snapshot this class wrote. Transactions still in the open ledger when the snapshot was
   * taken count as applied (they were), and land in the next ledger header.
   * @throws LEDGER_SNAPSHOT_CORRUPT, LEDGER_SNAPSHOT_WRONG_NETWORK
   */
  static fromSnapshot(s: unknown, networkPassphrase: string, nowSec: number): LedgerState {
    const snap = s as Snapshot;
    if (snap === null || typeof snap !== 'object' || snap.version !== 1) {
      throw ledgerErrors.error('LEDGER_SNAPSHOT_CORRUPT', { reason: 'not a version 1 snapshot' });
    }
    if (snap.networkPassphrase !== networkPassphrase) {
      throw ledgerErrors.error('LEDGER_SNAPSHOT_WRONG_NETWORK');
    }
    try {
      const st = new LedgerState(networkPassphrase, nowSec);
      st.accounts.clear();
      st.ledgers.length = 0;
      st.feePool = BigInt(snap.feePool);
      for (const l of snap.ledgers) {
        st.ledgers.push({ ...l, feePool: BigInt(l.feePool), totalCoins: BigInt(l.totalCoins) });
      }
      if (st.ledgers.length === 0) throw new Error('no ledgers');
      for (const a of snap.accounts) {
        st.accounts.set(a.id, {
          ...a,
          balance: BigInt(a.balance),
          seq: BigInt(a.seq),
          seqTime: BigInt(a.seqTime),
          thresholds: { ...a.thresholds },
          signers: a.signers.map((x) => ({ key: x.key, weight: x.weight })),
          data: new Map(a.data.map(([k, v]) => [k, Buffer.from(v, 'base64')])),
          trustlines: new Map(
            a.trustlines.map((t) => [
              `${t.code}:${t.issuer}`,
              { ...t, balance: BigInt(t.balance), limit: BigInt(t.limit) },
            ]),
          ),
        });
      }
      for (const t of snap.transactions) {
        const r: TxRecord = { ...t, feeCharged: BigInt(t.feeCharged), maxFee: BigInt(t.maxFee) };
        st.txs.push(r);
        st.txByHash.set(r.hash, r);
        if (r.innerHash !== undefined) st.txByHash.set(r.innerHash, r);
      }
      // Snapshots written before Soroban support have no soroban section: an empty escrow, no nonces.
      for (const [k, v] of snap.soroban?.escrow ?? []) st.escrow.set(k, BigInt(v));
      for (const [k, liveUntil] of snap.soroban?.nonces ?? []) {
        if (!Number.isInteger(liveUntil)) throw new Error('bad nonce entry');
        st.nonces.set(k, liveUntil);
      }
      if (st.totalLumens() !== TOTAL_COINS) throw new Error('lumens do not add up');
      return st;
    } catch (cause) {
      throw ledgerErrors.error('LEDGER_SNAPSHOT_CORRUPT', { reason: (cause as Error).message }, { cause });
    }
  }
}

type Str<T, K extends keyof T> = Omit<T, K> & { [P in K]: string };

/** The JSON form of LedgerState: bigints as decimal strings, data values as base64. */
export interface Snapshot {
  version: 1;
  networkPassphrase: string;
  feePool: string;
  ledgers: Str<LedgerHeader, 'feePool' | 'totalCoins'>[];
  accounts: (Omit<Str<AccountState, 'balance' | 'seq' | 'seqTime'>, 'data' | 'trustlines'> & {
    data: [string, string][];
    trustlines: Str<Trustline, 'balance' | 'limit'>[];
  })[];
  transactions: Str<TxRecord, 'feeCharged' | 'maxFee'>[];
  /** Absent in snapshots from before Soroban support. */
  soroban?: { escrow: [string, string][]; nonces: [string, number][] };
}

/** Writes the snapshot atomically (temporary file, then rename), so a crash never leaves half a file. */
export async function saveSnapshot(path: string, state: LedgerState): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(state.toSnapshot()), { mode: 0o600 });
  await rename(tmp, path);
}

/** Loads a snapshot, or returns undefined when there is none yet. @throws LEDGER_SNAPSHOT_CORRUPT */
export async function loadSnapshot(
  path: string,
  networkPassphrase: string,
  nowSec: number,
): Promise<LedgerState | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw ledgerErrors.error('LEDGER_SNAPSHOT_CORRUPT', { reason: 'unreadable' }, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw ledgerErrors.error('LEDGER_SNAPSHOT_CORRUPT', { reason: 'not JSON' }, { cause });
  }
  return LedgerState.fromSnapshot(json, networkPassphrase, nowSec);
}
