import { type KeyObject, randomBytes } from 'node:crypto';
import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { writePrivateFile } from '@cosigner/runtime/secrets';
import { ed25519FromSeed, ed25519Seed, ed25519Spki, generateEd25519 } from './ed25519.ts';
import { kmsErrors } from './errors.ts';
import { type SealedBlob, seal, unseal } from './sealing.ts';

export type KeySpecName = 'ECC_NIST_EDWARDS25519' | 'SYMMETRIC_DEFAULT';
export type KeyUsageName = 'SIGN_VERIFY' | 'ENCRYPT_DECRYPT';
export type KeyStateName = 'Enabled' | 'Disabled' | 'PendingDeletion';

export interface Tag {
  TagKey: string;
  TagValue: string;
}

/** Everything about a key except its material. This is what keys.json holds, next to the sealed material. */
export interface KeyMeta {
  keyId: string;
  accountId: string;
  region: string;
  arn: string;
  createdAt: number;
  description: string;
  keySpec: KeySpecName;
  keyUsage: KeyUsageName;
  state: KeyStateName;
  deletionDate?: number;
  pendingWindowInDays?: number;
  policy: string;
  tags: Tag[];
}

/** A key in memory: its material is unsealed once at load and never written out in clear. */
export interface KeyRecord extends KeyMeta {
  /** Ed25519 private key (SIGN_VERIFY) ... */
  privateKey?: KeyObject;
  /** ... and its DER SPKI, or the 32-byte AES-256 key (ENCRYPT_DECRYPT). */
  publicKeyDer?: Buffer;
  symmetricKey?: Buffer;
}

export interface AliasRecord {
  aliasName: string;
  accountId: string;
  region: string;
  targetKeyId: string;
  createdAt: number;
  updatedAt: number;
}

interface StoreFile {
  version: 1;
  keys: (KeyMeta & { sealed: SealedBlob })[];
  aliases: AliasRecord[];
}

export function keyArn(region: string, accountId: string, keyId: string): string {
  return `arn:aws:kms:${region}:${accountId}:key/${keyId}`;
}

export function aliasArn(a: { region: string; accountId: string; aliasName: string }): string {
  return `arn:aws:kms:${a.region}:${a.accountId}:${a.aliasName}`;
}

/** A random (version 4) UUID, the form of KMS key ids. */
function uuid(): string {
  const b = randomBytes(16);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * The emulator's keys and aliases, persisted to `<dataDir>/keys.json` (mode 0600). Key material is sealed
 * with AES-256-GCM under the master key, bound to the key ARN; the file never holds a plaintext key. Each
 * change rewrites the file (write to a temporary name, then rename, so a crash leaves the old or the new
 * file whole); writes are serialised and a mutating call answers only after its write is done.
 */
export class KeyStore {
  readonly keys = new Map<string, KeyRecord>();
  readonly aliases = new Map<string, AliasRecord>();
  private writing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly path: string,
    private readonly masterKey: Buffer,
  ) {}

  /** Open (or start) the store under `dataDir`. @throws KMS_STORE_INVALID, KMS_STORE_UNSEAL_FAILED */
  static async open(dataDir: string, masterKey: Buffer): Promise<KeyStore> {
    const store = new KeyStore(join(dataDir, 'keys.json'), masterKey);
    let text: string;
    try {
      text = await readFile(store.path, 'utf8');
    } catch {
      return store;
    }
    let file: StoreFile;
    try {
      file = JSON.parse(text) as StoreFile;
      if (file.version !== 1 || !Array.isArray(file.keys) || !Array.isArray(file.aliases)) throw new Error('shape');
    } catch (e) {
      throw kmsErrors.error('KMS_STORE_INVALID', { path: store.path }, { cause: e });
    }
    for (const { sealed, ...meta } of file.keys) {
      const material = unseal(masterKey, sealed, meta.arn);
      const rec: KeyRecord = { ...meta };
      if (meta.keySpec === 'ECC_NIST_EDWARDS25519') {
        rec.privateKey = ed25519FromSeed(material);
        rec.publicKeyDer = ed25519Spki(rec.privateKey);
      } else rec.symmetricKey = material;
      store.keys.set(meta.keyId, rec);
    }
    for (const a of file.aliases) store.aliases.set(aliasKey(a.accountId, a.region, a.aliasName), a);
    return store;
  }

  /** Create a key with fresh material. The caller persists. */
  create(meta: Omit<KeyMeta, 'keyId' | 'arn'>): KeyRecord {
    const keyId = uuid();
    const rec: KeyRecord = { ...meta, keyId, arn: keyArn(meta.region, meta.accountId, keyId) };
    if (meta.keySpec === 'ECC_NIST_EDWARDS25519') {
      rec.privateKey = generateEd25519();
      rec.publicKeyDer = ed25519Spki(rec.privateKey);
    } else rec.symmetricKey = randomBytes(32);
    this.keys.set(keyId, rec);
    return rec;
  }

  alias(accountId: string, region: string, aliasName: string): AliasRecord | undefined {
    return this.aliases.get(aliasKey(accountId, region, aliasName));
  }

  putAlias(a: AliasRecord): void {
    this.aliases.set(aliasKey(a.accountId, a.region, a.aliasName), a);
  }

  /** Remove a key whose deletion date has passed, and the aliases that point at it (KMS does both). */
  purge(keyId: string): void {
    this.keys.delete(keyId);
    for (const [k, a] of this.aliases) if (a.targetKeyId === keyId) this.aliases.delete(k);
  }

  /** Write the current state; resolves once it is on disk. */
  persist(): Promise<void> {
    const next = this.writing.then(() => this.write());
    this.writing = next.catch(() => undefined);
    return next;
  }

  private async write(): Promise<void> {
    const file: StoreFile = {
      version: 1,
      keys: [...this.keys.values()].map(({ privateKey, publicKeyDer, symmetricKey, ...meta }) => ({
        ...meta,
        sealed: seal(this.masterKey, privateKey ? ed25519Seed(privateKey) : symmetricKey!, meta.arn),
      })),
      aliases: [...this.aliases.values()],
    };
    const tmp = `${this.path}.tmp`;
    await writePrivateFile(tmp, JSON.stringify(file));
    await rename(tmp, this.path);
  }
}

function aliasKey(accountId: string, region: string, aliasName: string): string {
  return `${accountId}/${region}/${aliasName}`;
}
