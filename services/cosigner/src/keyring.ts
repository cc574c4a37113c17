import type { Signer, SignerConfig, SignerKind } from '@cosigner/keys/signer';
import type Database from 'better-sqlite3';
import type { Logger } from 'pino';
import type { AuditLog } from './audit.ts';
import { nodeErrors } from './errors.ts';

/**
 * The node's keyring: the key it signs with now (active), at most one key it is switching to (pending), and the
 * keys it used before (retired), kept in the signing ledger's SQLite file (migrations/002_keyring.sql) so a
 * rotation survives a crash at any step. It IS the node's Signer: it signs with exactly one key, the active one,
 * and a switch waits until no signature is being computed, so a decision never names one key while carrying a
 * signature of the other.
 *
 * It also holds the node's roster: Stellar keys of cluster members that this node's own operator accepted
 * (`cosigner node roster allow`). With `signerChanges.clusterMembers` the policy lets the node sign adding and
 * removing those keys, and this node's own keys. Only the private admin API writes the roster; the coordinator
 * cannot.
 *
 * After a rotation the node config still names the old key: the keyring's active key wins at start-up (the
 * audit log records `keyring.loaded` with both), so a restart never falls back to a disabled key.
 */

export type KeyState = 'active' | 'pending' | 'retired';

export interface KeyringEntry {
  address: string;
  kind: SignerKind;
  keyId: string;
  state: KeyState;
  createdAt: number;
  updatedAt: number;
}

export interface RosterEntry {
  address: string;
  nodeId: string | null;
  addedBy: string;
  addedAt: number;
}

interface KeyRow {
  address: string;
  kind: string;
  key_id: string;
  config: string;
  state: KeyState;
  created_at: number;
  updated_at: number;
}

interface RosterRow {
  address: string;
  node_id: string | null;
  added_by: string;
  added_at: number;
}

export type OpenSigner = (config: SignerConfig) => Promise<Signer>;

const entryOf = (r: KeyRow): KeyringEntry => ({
  address: r.address,
  kind: r.kind as SignerKind,
  keyId: r.key_id,
  state: r.state,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/**
 * What is stored for a key: its backend settings without credentials. Static credentials exist only for the
 * KMS emulator (config.ts refuses them in production) and are taken from the node config again at start-up.
 */
function storable(config: SignerConfig): SignerConfig {
  if (config.type !== 'aws-kms' || !config.credentials) return config;
  const { credentials: _dropped, ...rest } = config;
  return rest;
}

/**
 * A stored key's settings joined with the node config's: the stored record says WHICH key (its id, region, module,
 * token, file), the node config says HOW TO REACH the backend now (KMS endpoint, credentials, timeout). The
 * endpoint of a KMS emulator changes with every restart of a development cluster, and an operator may move a node
 * to another VPC endpoint; a key recorded with an endpoint that no longer answers would stop the node at start-up
 * ("The key backend is unavailable"). The key must still derive the address recorded for it (`expectedAddress`):
 * the node refuses to start rather than sign with another key that happens to sit behind the same id elsewhere.
 */
export function withBase(stored: SignerConfig, base: SignerConfig, address?: string): SignerConfig {
  const expect = address ? { expectedAddress: address } : {};
  if (stored.type === 'aws-kms' && base.type === 'aws-kms') {
    const { endpoint: _e, credentials: _c, timeoutMs: _t, ...key } = stored;
    return {
      ...key,
      ...(base.endpoint ? { endpoint: base.endpoint } : {}),
      ...(base.credentials ? { credentials: base.credentials } : {}),
      ...(base.timeoutMs ? { timeoutMs: base.timeoutMs } : {}),
      ...expect,
    };
  }
  return { ...stored, ...expect };
}

/**
 * The settings of a new key in the same backend as `base`: only the key's id changes (KMS key id/ARN/alias,
 * PKCS#11 CKA_ID hex, local key file). The expected address is the one the new key must derive.
 */
export function successorConfig(base: SignerConfig, keyId: string, expectedAddress?: string): SignerConfig {
  const expect = expectedAddress ? { expectedAddress } : {};
  switch (base.type) {
    case 'aws-kms': {
      const { expectedAddress: _a, ...rest } = base;
      return { ...rest, keyId, ...expect };
    }
    case 'pkcs11': {
      const { expectedAddress: _a, ...rest } = base;
      return { ...rest, keyIdHex: keyId, ...expect };
    }
    case 'local':
      return { type: 'local', keyFile: keyId, ...expect };
  }
}

export interface KeyringOptions {
  db: Database.Database;
  audit: AuditLog;
  logger: Logger;
  /** The key the node config names: used (and recorded as active) when the keyring is empty. */
  base: SignerConfig;
  open: OpenSigner;
  now?: () => number;
}

export class Keyring implements Signer {
  readonly #o: KeyringOptions;
  #active: Signer;
  #pending: Signer | undefined;
  #inflight = 0;
  #drained: (() => void)[] = [];
  readonly #listeners: ((address: string) => void)[] = [];

  private constructor(o: KeyringOptions, active: Signer, pending: Signer | undefined) {
    this.#o = o;
    this.#active = active;
    this.#pending = pending;
  }

  /**
   * Open the active key (the stored one, else the config's) and a pending one if a rotation was interrupted.
   * @throws CosignerError KEYS_* from the backend (a pending key that no longer opens is dropped, not fatal)
   */
  static async open(o: KeyringOptions): Promise<Keyring> {
    const now = o.now ?? Date.now;
    const rows = o.db.prepare<[], KeyRow>('SELECT * FROM keyring').all();
    const activeRow = rows.find((r) => r.state === 'active');
    const pendingRow = rows.find((r) => r.state === 'pending');
    const active = await o.open(
      activeRow ? withBase(JSON.parse(activeRow.config) as SignerConfig, o.base, activeRow.address) : o.base,
    );
    if (!activeRow) {
      o.db
        .prepare(
          `INSERT INTO keyring (address, kind, key_id, config, state, created_at, updated_at)
           VALUES (?, ?, ?, ?, 'active', ?, ?)`,
        )
        .run(active.address, active.kind, active.keyId, JSON.stringify(storable(o.base)), now(), now());
    }
    let pending: Signer | undefined;
    if (pendingRow) {
      try {
        pending = await o.open(withBase(JSON.parse(pendingRow.config) as SignerConfig, o.base, pendingRow.address));
      } catch (e) {
        o.logger.warn({ address: pendingRow.address, code: (e as { code?: unknown }).code }, 'pending key unusable');
      }
    }
    o.audit.append('keyring.loaded', {
      active: active.address,
      configKey: activeRow ? 'overridden by the keyring' : 'active',
      pending: pending?.address ?? null,
    });
    return new Keyring(o, active, pending);
  }

  get kind(): SignerKind {
    return this.#active.kind;
  }
  get keyId(): string {
    return this.#active.keyId;
  }
  get publicKey(): Buffer {
    return this.#active.publicKey;
  }
  get address(): string {
    return this.#active.address;
  }
  get pendingAddress(): string | undefined {
    return this.#pending?.address;
  }

  /** Sign with the active key only. */
  async sign(payload: Uint8Array): Promise<Buffer> {
    this.#inflight += 1;
    try {
      return await this.#active.sign(payload);
    } finally {
      this.#inflight -= 1;
      if (this.#inflight === 0) for (const w of this.#drained.splice(0)) w();
    }
  }

  health(): Promise<{ ok: boolean; detail?: string }> {
    return this.#active.health();
  }

  /** Called with the new address after every switch (the node reconnects its coordinator session). */
  onSwitch(fn: (address: string) => void): void {
    this.#listeners.push(fn);
  }

  entries(): KeyringEntry[] {
    return this.#o.db.prepare<[], KeyRow>('SELECT * FROM keyring ORDER BY created_at, address').all().map(entryOf);
  }

  /**
   * Open a new key of this node's backend and hold it as pending (the active key keeps signing). Idempotent:
   * preparing the pending or the active key again returns it unchanged.
   * @throws CosignerError NODE_KEYRING_CONFLICT (another key is already pending, or the key was retired),
   *   KEYS_* when the backend cannot open the key or its address differs from `expectedAddress`
   */
  async prepare(keyId: string, opts: { expectedAddress?: string; by: string }): Promise<KeyringEntry> {
    const config = successorConfig(this.#o.base, keyId, opts.expectedAddress);
    const signer = await this.#o.open(withBase(config, this.#o.base));
    const known = this.#row(signer.address);
    if (known && known.state !== 'retired') {
      await signer.close();
      return entryOf(known);
    }
    if (known) {
      await signer.close();
      throw nodeErrors.error(
        'NODE_KEYRING_CONFLICT',
        { address: signer.address },
        { message: `Key ${signer.address} was retired by an earlier rotation; create a new key.` },
      );
    }
    if (this.#pending) {
      await signer.close();
      throw nodeErrors.error(
        'NODE_KEYRING_CONFLICT',
        { pending: this.#pending.address },
        { message: `Key ${this.#pending.address} is already pending: finish or abandon that rotation first.` },
      );
    }
    const now = (this.#o.now ?? Date.now)();
    const { db, audit } = this.#o;
    db.transaction(() => {
      db.prepare(
        `INSERT INTO keyring (address, kind, key_id, config, state, created_at, updated_at)
         VALUES (?, ?, ?, ?, 'pending', ?, ?)`,
      ).run(signer.address, signer.kind, signer.keyId, JSON.stringify(storable(config)), now, now);
      audit.append('keyring.prepared', {
        address: signer.address,
        kind: signer.kind,
        keyId: signer.keyId,
        by: opts.by,
      });
    }).immediate();
    this.#pending = signer;
    return entryOf(this.#row(signer.address) as KeyRow);
  }

  /**
   * Make the pending key (named by its address) the active one; the previous key is retired. Waits until no
   * signature is being computed, then switches in one step. Idempotent: activating the active key is a no-op.
   * @throws CosignerError NODE_KEYRING_NOT_FOUND (no such pending key)
   */
  async activate(address: string, by: string): Promise<KeyringEntry> {
    if (this.#active.address === address) return entryOf(this.#row(address) as KeyRow);
    const next = this.#pending;
    if (!next || next.address !== address) {
      throw nodeErrors.error(
        'NODE_KEYRING_NOT_FOUND',
        { address },
        { message: `No pending key ${address}: prepare it first.` },
      );
    }
    // Let every signature in flight finish with the key its decision will name; macrotask turns let the reviewer's
    // continuation (store, audit, reply) run before the switch.
    for (;;) {
      if (this.#inflight > 0) await new Promise<void>((r) => this.#drained.push(r));
      await new Promise<void>((r) => setImmediate(r));
      if (this.#inflight === 0 && this.#pending === next) break;
      /* v8 ignore next -- only another activate racing this one can take the pending key */
      if (this.#pending !== next) return entryOf(this.#row(address) as KeyRow);
    }
    const previous = this.#active;
    const now = (this.#o.now ?? Date.now)();
    const { db, audit } = this.#o;
    db.transaction(() => {
      db.prepare("UPDATE keyring SET state = 'retired', updated_at = ? WHERE state = 'active'").run(now);
      db.prepare("UPDATE keyring SET state = 'active', updated_at = ? WHERE address = ?").run(now, address);
      audit.append('keyring.activated', { address, previous: previous.address, by });
    }).immediate();
    this.#active = next;
    this.#pending = undefined;
    await previous.close();
    this.#o.logger.info({ address, previous: previous.address }, 'signing key switched');
    for (const fn of this.#listeners) fn(address);
    return entryOf(this.#row(address) as KeyRow);
  }

  /**
   * Drop a pending key that will not be used (the rotation was abandoned before the switch).
   * @throws CosignerError NODE_KEYRING_NOT_FOUND
   */
  async abandon(address: string, by: string): Promise<void> {
    const p = this.#pending;
    if (!p || p.address !== address) {
      throw nodeErrors.error('NODE_KEYRING_NOT_FOUND', { address }, { message: `No pending key ${address}.` });
    }
    const { db, audit } = this.#o;
    db.transaction(() => {
      db.prepare("UPDATE keyring SET state = 'retired', updated_at = ? WHERE address = ?").run(
        (this.#o.now ?? Date.now)(),
        address,
      );
      audit.append('keyring.abandoned', { address, by });
    }).immediate();
    this.#pending = undefined;
    await p.close();
  }

  roster(): RosterEntry[] {
    return this.#o.db
      .prepare<[], RosterRow>('SELECT * FROM roster ORDER BY added_at, address')
      .all()
      .map((r) => ({ address: r.address, nodeId: r.node_id, addedBy: r.added_by, addedAt: r.added_at }));
  }

  /** Accept a cluster member's key (idempotent). */
  allowMember(address: string, nodeId: string | null, by: string): RosterEntry {
    const { db, audit } = this.#o;
    db.transaction(() => {
      const r = db
        .prepare('INSERT OR IGNORE INTO roster (address, node_id, added_by, added_at) VALUES (?, ?, ?, ?)')
        .run(address, nodeId, by, (this.#o.now ?? Date.now)());
      if (r.changes > 0) audit.append('roster.allowed', { address, nodeId, by });
    }).immediate();
    return this.roster().find((e) => e.address === address) as RosterEntry;
  }

  /** Withdraw a key from the roster; true when it was there. */
  removeMember(address: string, by: string): boolean {
    const { db, audit } = this.#o;
    return db
      .transaction(() => {
        const r = db.prepare('DELETE FROM roster WHERE address = ?').run(address);
        if (r.changes > 0) audit.append('roster.removed', { address, by });
        return r.changes > 0;
      })
      .immediate();
  }

  /**
   * Whether `address` is on the roster or one of our own keys (the keys signer changes may add or remove under
   * `signerChanges.clusterMembers`): one indexed lookup, the policy's `members`.
   */
  isMember(address: string): boolean {
    return (
      this.#o.db
        .prepare('SELECT 1 FROM roster WHERE address = ? UNION ALL SELECT 1 FROM keyring WHERE address = ? LIMIT 1')
        .get(address, address) !== undefined
    );
  }

  async close(): Promise<void> {
    await this.#pending?.close();
    await this.#active.close();
  }

  #row(address: string): KeyRow | undefined {
    return this.#o.db.prepare<[string], KeyRow>('SELECT * FROM keyring WHERE address = ?').get(address);
  }
}
