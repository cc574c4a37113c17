import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Account } from './accounts.ts';
import { awsError } from './aws-errors.ts';
import { signPrehashed, signPure, verifyPrehashed, verifyPure } from './ed25519.ts';
import type { Input } from './input.ts';
import { withNodeSealingGrant } from './node-sealing.ts';
import {
  type Caller,
  defaultPolicy,
  identityAllows,
  isAuthorized,
  type PolicyStatement,
  parsePolicy,
} from './policy.ts';
import { type AliasRecord, aliasArn, type KeyRecord, type KeyStore, type Tag } from './store.ts';

/** What an operation may touch. `audit` collects the key ARN and algorithm for the audit line. */
export interface OpContext {
  caller: Caller;
  account: Account;
  /** The region of the request's SigV4 credential scope: keys live in it, as with a regional KMS endpoint. */
  region: string;
  store: KeyStore;
  now: number;
  audit: { keyArn?: string; signingAlgorithm?: string; encryptionAlgorithm?: string };
}

export type Operation = (ctx: OpContext, input: Input) => Promise<Record<string, unknown> | undefined>;

// Enumerations exactly as in the KMS API reference (and @aws-sdk/client-kms models/enums).
const KEY_SPECS = [
  'RSA_2048',
  'RSA_3072',
  'RSA_4096',
  'ECC_NIST_P256',
  'ECC_NIST_P384',
  'ECC_NIST_P521',
  'ECC_SECG_P256K1',
  'ECC_NIST_EDWARDS25519',
  'SYMMETRIC_DEFAULT',
  'HMAC_224',
  'HMAC_256',
  'HMAC_384',
  'HMAC_512',
  'SM2',
  'ML_DSA_44',
  'ML_DSA_65',
  'ML_DSA_87',
  'ML_KEM_512',
  'ML_KEM_768',
  'ML_KEM_1024',
] as const;
const CMK_SPECS = KEY_SPECS.filter((s) => !s.startsWith('ML_') && s !== 'ECC_NIST_EDWARDS25519');
const KEY_USAGES = [
  'SIGN_VERIFY',
  'ENCRYPT_DECRYPT',
  'GENERATE_VERIFY_MAC',
  'KEY_AGREEMENT',
  'ENCAPSULATE_DECAPSULATE',
] as const;
const ORIGINS = ['AWS_KMS', 'EXTERNAL', 'AWS_CLOUDHSM', 'EXTERNAL_KEY_STORE'] as const;
const SIGNING_ALGORITHMS = [
  'RSASSA_PSS_SHA_256',
  'RSASSA_PSS_SHA_384',
  'RSASSA_PSS_SHA_512',
  'RSASSA_PKCS1_V1_5_SHA_256',
  'RSASSA_PKCS1_V1_5_SHA_384',
  'RSASSA_PKCS1_V1_5_SHA_512',
  'ECDSA_SHA_256',
  'ECDSA_SHA_384',
  'ECDSA_SHA_512',
  'SM2DSA',
  'ML_DSA_SHAKE_256',
  'ED25519_SHA_512',
  'ED25519_PH_SHA_512',
] as const;
const MESSAGE_TYPES = ['RAW', 'DIGEST', 'EXTERNAL_MU'] as const;
const ENCRYPTION_ALGORITHMS = ['SYMMETRIC_DEFAULT', 'RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256', 'SM2PKE'] as const;
const DATA_KEY_SPECS = ['AES_256', 'AES_128'] as const;
const ED25519_ALGORITHMS = ['ED25519_SHA_512', 'ED25519_PH_SHA_512'];

// KMS API reference limits: Message 1-4096, Signature 1-6144, Plaintext 1-4096, CiphertextBlob 1-6144,
// Policy 1-131072, Description 0-8192, AliasName 1-256, Limit 1-1000 (ListKeys/ListAliases), window 7-30 days.
const MESSAGE = { min: 1, max: 4096 };
const KEY_ID = { required: true, min: 1, max: 2048 };
const DAY_MS = 86_400_000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const KEY_ARN = /^arn:aws:kms:([a-z0-9-]+):(\d{12}):key\/(.+)$/;
const ALIAS_ARN = /^arn:aws:kms:([a-z0-9-]+):(\d{12}):(alias\/.+)$/;

function notFound(accountId: string, region: string, keyId: string): Error {
  return awsError('NotFoundException', `Key 'arn:aws:kms:${region}:${accountId}:key/${keyId}' does not exist`);
}

/**
 * Resolve a KeyId the way KMS does: a bare key id or alias name is looked up in the caller's account and the
 * request's region; another account's key needs its full ARN (KMS developer guide, "Key identifiers"). Only
 * the operations that accept an alias pass `allowAlias`. A key past its deletion date is deleted here.
 */
async function findKey(ctx: OpContext, keyId: string, allowAlias: boolean): Promise<KeyRecord> {
  let accountId = ctx.caller.accountId;
  let region = ctx.region;
  let id = keyId;
  const keyArn = KEY_ARN.exec(keyId);
  const aliasArnMatch = ALIAS_ARN.exec(keyId);
  if (keyArn) [, region, accountId, id] = keyArn as unknown as [string, string, string, string];
  else if (allowAlias && (aliasArnMatch || keyId.startsWith('alias/'))) {
    let name = keyId;
    if (aliasArnMatch) [, region, accountId, name] = aliasArnMatch as unknown as [string, string, string, string];
    const alias = ctx.store.alias(accountId, region, name);
    if (!alias) {
      throw awsError('NotFoundException', `Alias ${aliasArn({ region, accountId, aliasName: name })} is not found.`);
    }
    id = alias.targetKeyId;
  }
  if (!UUID.test(id)) throw awsError('NotFoundException', `Invalid keyId '${keyId}'`);
  const key = ctx.store.keys.get(id);
  if (!key || key.accountId !== accountId || key.region !== region) throw notFound(accountId, region, id);
  if (key.state === 'PendingDeletion' && key.deletionDate !== undefined && key.deletionDate <= ctx.now) {
    ctx.store.purge(key.keyId);
    await ctx.store.persist();
    throw notFound(accountId, region, id);
  }
  ctx.audit.keyArn = key.arn;
  return key;
}

function denied(caller: Caller, action: string, resource: string, kind: 'identity' | 'resource'): Error {
  return awsError(
    'AccessDeniedException',
    `User: ${caller.arn} is not authorized to perform: ${action} on resource: ${resource} because no ${kind}-based policy allows the ${action} action`,
  );
}

// The parsed policy of each key, re-parsed when its text changes (PutKeyPolicy).
const parsedPolicies = new WeakMap<KeyRecord, { text: string; statements: PolicyStatement[] }>();
function keyPolicy(key: KeyRecord): PolicyStatement[] {
  const cached = parsedPolicies.get(key);
  if (cached?.text === key.policy) return cached.statements;
  const statements = parsePolicy(key.policy);
  parsedPolicies.set(key, { text: key.policy, statements });
  return statements;
}

/** Key-scoped authorization: the key policy decides (policy.ts). @throws AccessDeniedException */
function authorize(ctx: OpContext, key: KeyRecord, action: string): void {
  if (!isAuthorized(keyPolicy(key), ctx.caller, key.accountId, action)) {
    throw denied(ctx.caller, action, key.arn, 'resource');
  }
}

/** Account-scoped operations (CreateKey, ListKeys, ListAliases) are decided by the identity policy. */
function authorizeIdentity(ctx: OpContext, action: string): void {
  if (!identityAllows(ctx.caller.role, action)) throw denied(ctx.caller, action, '*', 'identity');
}

/** Cryptographic operations need an Enabled key (KMS developer guide, "Key states of AWS KMS keys"). */
function requireEnabled(key: KeyRecord): void {
  if (key.state === 'Disabled') throw awsError('DisabledException', `${key.arn} is disabled.`);
  requireNotPendingDeletion(key);
}

function requireNotPendingDeletion(key: KeyRecord): void {
  if (key.state === 'PendingDeletion') throw awsError('KMSInvalidStateException', `${key.arn} is pending deletion.`);
}

function requireUsage(key: KeyRecord, usage: KeyRecord['keyUsage'], op: string): void {
  if (key.keyUsage !== usage) {
    throw awsError('InvalidKeyUsageException', `${key.arn} key usage is ${key.keyUsage} which is not valid for ${op}.`);
  }
}

function keyMetadata(key: KeyRecord): Record<string, unknown> {
  const signing = key.keyUsage === 'SIGN_VERIFY';
  return {
    AWSAccountId: key.accountId,
    KeyId: key.keyId,
    Arn: key.arn,
    CreationDate: key.createdAt / 1000,
    Enabled: key.state === 'Enabled',
    Description: key.description,
    KeyUsage: key.keyUsage,
    KeyState: key.state,
    Origin: 'AWS_KMS',
    KeyManager: 'CUSTOMER',
    // CustomerMasterKeySpec is deprecated and has no value for the newer specs (API reference, KeyMetadata).
    ...(signing ? {} : { CustomerMasterKeySpec: key.keySpec }),
    KeySpec: key.keySpec,
    ...(signing ? { SigningAlgorithms: ED25519_ALGORITHMS } : { EncryptionAlgorithms: ['SYMMETRIC_DEFAULT'] }),
    MultiRegion: false,
    ...(key.deletionDate === undefined
      ? {}
      : { DeletionDate: key.deletionDate / 1000, PendingDeletionWindowInDays: key.pendingWindowInDays }),
  };
}

function checkTags(tags: Tag[]): void {
  for (const t of tags) {
    if (t.TagKey.toLowerCase().startsWith('aws:')) {
      throw awsError('TagException', 'Tags beginning with aws: are reserved for AWS use.');
    }
  }
}

/** The lockout safety check of CreateKey and PutKeyPolicy (API reference, BypassPolicyLockoutSafetyCheck). */
function checkLockout(ctx: OpContext, policyText: string, keyAccountId: string, bypass: boolean | undefined): void {
  const statements = parsePolicy(policyText);
  if (!bypass && !isAuthorized(statements, ctx.caller, keyAccountId, 'kms:PutKeyPolicy')) {
    throw awsError(
      'MalformedPolicyDocumentException',
      'The new key policy will not allow you to update the key policy in the future.',
    );
  }
}

/** Page through `items` after `marker` (the last item's id of the previous page). @throws InvalidMarkerException */
function page<T>(items: T[], id: (t: T) => string, limit: number | undefined, marker: string | undefined) {
  let start = 0;
  if (marker !== undefined) {
    start = items.findIndex((t) => id(t) === marker) + 1;
    if (start === 0)
      throw awsError(
        'InvalidMarkerException',
        'The marker that specifies where pagination should next begin is not valid.',
      );
  }
  const slice = items.slice(start, start + (limit ?? 100));
  const truncated = start + slice.length < items.length;
  return { slice, truncated, ...(truncated ? { NextMarker: id(slice[slice.length - 1]!) } : {}) };
}

function signingInputs(ctx: OpContext, input: Input, withSignature: boolean) {
  const keyId = input.string('KeyId', KEY_ID);
  const message = input.blob('Message', { required: true, ...MESSAGE });
  const messageType = input.string('MessageType', { values: MESSAGE_TYPES }) ?? 'RAW';
  const signature = withSignature ? input.blob('Signature', { required: true, min: 1, max: 6144 }) : undefined;
  const algorithm = input.string('SigningAlgorithm', { required: true, values: SIGNING_ALGORITHMS });
  const dryRun = input.bool('DryRun') ?? false;
  input.done();
  ctx.audit.signingAlgorithm = algorithm;
  return { keyId: keyId!, message: message!, messageType, signature, algorithm: algorithm!, dryRun };
}

/**
 * Checks shared by Sign and Verify, in the order KMS applies them: the key policy, the key state, the key
 * usage, the algorithm against the key spec, then the message type: for ECC_NIST_EDWARDS25519, ED25519_SHA_512
 * requires MessageType RAW and ED25519_PH_SHA_512 requires DIGEST, a 64-byte SHA-512 digest (API reference,
 * Sign, MessageType).
 */
async function signingKey(
  ctx: OpContext,
  op: 'Sign' | 'Verify',
  p: { keyId: string; message: Buffer; messageType: string; algorithm: string; dryRun: boolean },
): Promise<KeyRecord> {
  const key = await findKey(ctx, p.keyId, true);
  authorize(ctx, key, `kms:${op}`);
  requireEnabled(key);
  requireUsage(key, 'SIGN_VERIFY', op);
  if (!ED25519_ALGORITHMS.includes(p.algorithm)) {
    throw awsError(
      'InvalidKeyUsageException',
      `Algorithm ${p.algorithm} is incompatible with key spec ${key.keySpec}.`,
    );
  }
  const wanted = p.algorithm === 'ED25519_SHA_512' ? 'RAW' : 'DIGEST';
  if (p.messageType !== wanted) {
    throw awsError('ValidationException', `${p.algorithm} requires MessageType ${wanted}, not ${p.messageType}.`);
  }
  if (wanted === 'DIGEST' && p.message.length !== 64) {
    throw awsError('ValidationException', `Digest is invalid length for algorithm ${p.algorithm}.`);
  }
  // DryRun checks everything above and then stops (API reference, Sign/Verify DryRun, HTTP 412).
  if (p.dryRun) {
    throw awsError('DryRunOperationException', 'The request would have succeeded, but the DryRun option is set.');
  }
  return key;
}

// Ciphertext of the symmetric operations: version 1 | key id (16 bytes) | IV (12) | GCM tag (16) | ciphertext.
// The encryption context and the key ARN are the GCM additional data, so a changed context fails to decrypt
// (KMS developer guide, "Encryption context").
const CT_VERSION = 1;
function contextAad(key: KeyRecord, context: Record<string, string> | undefined): Buffer {
  const sorted = Object.entries(context ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Buffer.from(JSON.stringify([key.arn, sorted]), 'utf8');
}

function encryptWith(key: KeyRecord, plaintext: Buffer, context: Record<string, string> | undefined): Buffer {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key.symmetricKey!, iv);
  c.setAAD(contextAad(key, context));
  const ct = Buffer.concat([c.update(plaintext), c.final()]);
  return Buffer.concat([
    Buffer.from([CT_VERSION]),
    Buffer.from(key.keyId.replaceAll('-', ''), 'hex'),
    iv,
    c.getAuthTag(),
    ct,
  ]);
}

function invalidCiphertext(): Error {
  return awsError('InvalidCiphertextException', 'The ciphertext is invalid.');
}

function ciphertextKeyId(blob: Buffer): string {
  if (blob.length < 1 + 16 + 12 + 16 || blob[0] !== CT_VERSION) throw invalidCiphertext();
  const h = blob.subarray(1, 17).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function decryptWith(key: KeyRecord, blob: Buffer, context: Record<string, string> | undefined): Buffer {
  try {
    const d = createDecipheriv('aes-256-gcm', key.symmetricKey!, blob.subarray(17, 29));
    d.setAAD(contextAad(key, context));
    d.setAuthTag(blob.subarray(29, 45));
    return Buffer.concat([d.update(blob.subarray(45)), d.final()]);
  } catch {
    throw invalidCiphertext();
  }
}

async function encryptionKey(ctx: OpContext, keyId: string, action: string, algorithm: string | undefined) {
  const key = await findKey(ctx, keyId, true);
  authorize(ctx, key, action);
  requireEnabled(key);
  requireUsage(key, 'ENCRYPT_DECRYPT', action.slice(4));
  if (algorithm !== undefined && algorithm !== 'SYMMETRIC_DEFAULT') {
    throw awsError('InvalidKeyUsageException', `Algorithm ${algorithm} is incompatible with key spec ${key.keySpec}.`);
  }
  ctx.audit.encryptionAlgorithm = 'SYMMETRIC_DEFAULT';
  return key;
}

/** A key-id-only input (no alias), for the key-management operations. */
function keyOnly(input: Input): string {
  const keyId = input.string('KeyId', KEY_ID);
  input.done();
  return keyId!;
}

export const OPERATIONS: Record<string, Operation> = {
  async CreateKey(ctx, input) {
    const policy = input.string('Policy', { min: 1, max: 131072 });
    const description = input.string('Description', { max: 8192 }) ?? '';
    const usage = input.string('KeyUsage', { values: KEY_USAGES });
    const cmkSpec = input.string('CustomerMasterKeySpec', { values: CMK_SPECS });
    const keySpec = input.string('KeySpec', { values: KEY_SPECS });
    const origin = input.string('Origin', { values: ORIGINS }) ?? 'AWS_KMS';
    const bypass = input.bool('BypassPolicyLockoutSafetyCheck');
    const tags = input.tags('Tags', false) ?? [];
    const multiRegion = input.bool('MultiRegion');
    input.done();
    authorizeIdentity(ctx, 'kms:CreateKey');
    if (keySpec !== undefined && cmkSpec !== undefined) {
      throw awsError(
        'ValidationException',
        'You cannot specify KeySpec and CustomerMasterKeySpec in the same request.',
      );
    }
    const spec = keySpec ?? cmkSpec ?? 'SYMMETRIC_DEFAULT';
    if (spec !== 'ECC_NIST_EDWARDS25519' && spec !== 'SYMMETRIC_DEFAULT') {
      throw awsError('UnsupportedOperationException', `KeySpec ${spec} is not supported by this emulator.`);
    }
    if (origin !== 'AWS_KMS' || multiRegion) {
      throw awsError(
        'UnsupportedOperationException',
        'Only single-Region keys with Origin AWS_KMS are supported by this emulator.',
      );
    }
    const keyUsage = usage ?? 'ENCRYPT_DECRYPT';
    const wanted = spec === 'ECC_NIST_EDWARDS25519' ? 'SIGN_VERIFY' : 'ENCRYPT_DECRYPT';
    if (keyUsage !== wanted) {
      throw awsError('ValidationException', `KeyUsage ${keyUsage} is not compatible with KeySpec ${spec}.`);
    }
    checkTags(tags);
    if (policy !== undefined) checkLockout(ctx, policy, ctx.caller.accountId, bypass);
    const key = ctx.store.create({
      accountId: ctx.caller.accountId,
      region: ctx.region,
      createdAt: ctx.now,
      description,
      keySpec: spec,
      keyUsage: wanted,
      state: 'Enabled',
      policy: policy ?? withNodeSealingGrant(defaultPolicy(ctx.account, wanted), ctx.account, wanted),
      tags,
    });
    ctx.audit.keyArn = key.arn;
    try {
      await ctx.store.persist();
    } catch (e) {
      // A key that is not on disk would vanish at the next restart: do not hand it out at all.
      ctx.store.keys.delete(key.keyId);
      throw e;
    }
    return { KeyMetadata: keyMetadata(key) };
  },

  async DescribeKey(ctx, input) {
    const key = await findKey(ctx, keyOnly(input), true);
    authorize(ctx, key, 'kms:DescribeKey');
    return { KeyMetadata: keyMetadata(key) };
  },

  async ListKeys(ctx, input) {
    const limit = input.int('Limit', { min: 1, max: 1000 });
    const marker = input.string('Marker', { min: 1, max: 1024 });
    input.done();
    authorizeIdentity(ctx, 'kms:ListKeys');
    const keys = [...ctx.store.keys.values()]
      .filter((k) => k.accountId === ctx.caller.accountId && k.region === ctx.region)
      .sort((a, b) => a.createdAt - b.createdAt || (a.keyId < b.keyId ? -1 : 1));
    const p = page(keys, (k) => k.keyId, limit, marker);
    return {
      Keys: p.slice.map((k) => ({ KeyId: k.keyId, KeyArn: k.arn })),
      Truncated: p.truncated,
      ...(p.NextMarker ? { NextMarker: p.NextMarker } : {}),
    };
  },

  async CreateAlias(ctx, input) {
    const name = input.string('AliasName', { required: true, min: 1, max: 256 });
    const target = input.string('TargetKeyId', KEY_ID);
    input.done();
    if (!/^alias\/[a-zA-Z0-9/_-]+$/.test(name!) || name!.startsWith('alias/aws/')) {
      throw awsError(
        'InvalidAliasNameException',
        'Alias must start with the prefix "alias/", may use only alphanumerics, "/", "_" and "-", and must not begin with "alias/aws/".',
      );
    }
    const key = await findKey(ctx, target!, false);
    authorize(ctx, key, 'kms:CreateAlias');
    authorizeIdentity(ctx, 'kms:CreateAlias');
    if (key.accountId !== ctx.caller.accountId) throw denied(ctx.caller, 'kms:CreateAlias', key.arn, 'identity');
    requireNotPendingDeletion(key);
    const a: AliasRecord = {
      aliasName: name!,
      accountId: key.accountId,
      region: key.region,
      targetKeyId: key.keyId,
      createdAt: ctx.now,
      updatedAt: ctx.now,
    };
    if (ctx.store.alias(a.accountId, a.region, a.aliasName)) {
      throw awsError('AlreadyExistsException', `An alias with the name ${aliasArn(a)} already exists`);
    }
    ctx.store.putAlias(a);
    await ctx.store.persist();
    return undefined;
  },

  async ListAliases(ctx, input) {
    const keyId = input.string('KeyId', { min: 1, max: 2048 });
    const limit = input.int('Limit', { min: 1, max: 100 });
    const marker = input.string('Marker', { min: 1, max: 1024 });
    input.done();
    authorizeIdentity(ctx, 'kms:ListAliases');
    const key = keyId === undefined ? undefined : await findKey(ctx, keyId, false);
    const aliases = [...ctx.store.aliases.values()]
      .filter((a) => a.accountId === ctx.caller.accountId && a.region === ctx.region)
      .filter((a) => key === undefined || a.targetKeyId === key.keyId)
      .sort((a, b) => (a.aliasName < b.aliasName ? -1 : 1));
    const p = page(aliases, (a) => a.aliasName, limit, marker);
    return {
      Aliases: p.slice.map((a) => ({
        AliasName: a.aliasName,
        AliasArn: aliasArn(a),
        TargetKeyId: a.targetKeyId,
        CreationDate: a.createdAt / 1000,
        LastUpdatedDate: a.updatedAt / 1000,
      })),
      Truncated: p.truncated,
      ...(p.NextMarker ? { NextMarker: p.NextMarker } : {}),
    };
  },

  async EnableKey(ctx, input) {
    const key = await findKey(ctx, keyOnly(input), false);
    authorize(ctx, key, 'kms:EnableKey');
    requireNotPendingDeletion(key);
    key.state = 'Enabled';
    await ctx.store.persist();
    return undefined;
  },

  async DisableKey(ctx, input) {
    const key = await findKey(ctx, keyOnly(input), false);
    authorize(ctx, key, 'kms:DisableKey');
    requireNotPendingDeletion(key);
    key.state = 'Disabled';
    await ctx.store.persist();
    return undefined;
  },

  async ScheduleKeyDeletion(ctx, input) {
    const keyId = input.string('KeyId', KEY_ID);
    const days = input.int('PendingWindowInDays', { min: 7, max: 30 }) ?? 30;
    input.done();
    const key = await findKey(ctx, keyId!, false);
    authorize(ctx, key, 'kms:ScheduleKeyDeletion');
    requireNotPendingDeletion(key);
    key.state = 'PendingDeletion';
    key.deletionDate = ctx.now + days * DAY_MS;
    key.pendingWindowInDays = days;
    await ctx.store.persist();
    return { KeyId: key.arn, DeletionDate: key.deletionDate / 1000, KeyState: key.state, PendingWindowInDays: days };
  },

  async CancelKeyDeletion(ctx, input) {
    const key = await findKey(ctx, keyOnly(input), false);
    authorize(ctx, key, 'kms:CancelKeyDeletion');
    if (key.state !== 'PendingDeletion') {
      throw awsError('KMSInvalidStateException', `${key.arn} is not pending deletion.`);
    }
    // A cancelled deletion leaves the key Disabled (API reference, CancelKeyDeletion).
    key.state = 'Disabled';
    delete key.deletionDate;
    delete key.pendingWindowInDays;
    await ctx.store.persist();
    return { KeyId: key.arn };
  },

  async GetKeyPolicy(ctx, input) {
    const keyId = input.string('KeyId', KEY_ID);
    const name = input.string('PolicyName', { min: 1, max: 128 }) ?? 'default';
    input.done();
    const key = await findKey(ctx, keyId!, false);
    authorize(ctx, key, 'kms:GetKeyPolicy');
    if (name !== 'default') throw awsError('NotFoundException', 'No such policy exists');
    return { Policy: key.policy, PolicyName: 'default' };
  },

  async PutKeyPolicy(ctx, input) {
    const keyId = input.string('KeyId', KEY_ID);
    const policy = input.string('Policy', { required: true, min: 1, max: 131072 });
    const name = input.string('PolicyName', { min: 1, max: 128 }) ?? 'default';
    const bypass = input.bool('BypassPolicyLockoutSafetyCheck');
    input.done();
    const key = await findKey(ctx, keyId!, false);
    authorize(ctx, key, 'kms:PutKeyPolicy');
    requireNotPendingDeletion(key);
    if (name !== 'default') throw awsError('NotFoundException', 'No such policy exists');
    checkLockout(ctx, policy!, key.accountId, bypass);
    key.policy = policy!;
    await ctx.store.persist();
    return undefined;
  },

  async TagResource(ctx, input) {
    const keyId = input.string('KeyId', KEY_ID);
    const tags = input.tags('Tags', true);
    input.done();
    const key = await findKey(ctx, keyId!, false);
    authorize(ctx, key, 'kms:TagResource');
    requireNotPendingDeletion(key);
    checkTags(tags!);
    for (const t of tags!) {
      const existing = key.tags.find((x) => x.TagKey === t.TagKey);
      if (existing) existing.TagValue = t.TagValue;
      else key.tags.push({ ...t });
    }
    await ctx.store.persist();
    return undefined;
  },

  async ListResourceTags(ctx, input) {
    const key = await findKey(ctx, keyOnly(input), false);
    authorize(ctx, key, 'kms:ListResourceTags');
    return { Tags: key.tags.map((t) => ({ ...t })), Truncated: false };
  },

  async GetPublicKey(ctx, input) {
    const key = await findKey(ctx, keyOnly(input), true);
    authorize(ctx, key, 'kms:GetPublicKey');
    requireEnabled(key);
    if (key.keyUsage !== 'SIGN_VERIFY') {
      throw awsError('UnsupportedOperationException', `${key.arn} is a symmetric key; it has no public key.`);
    }
    return {
      KeyId: key.arn,
      PublicKey: key.publicKeyDer!.toString('base64'),
      KeySpec: key.keySpec,
      KeyUsage: key.keyUsage,
      SigningAlgorithms: ED25519_ALGORITHMS,
    };
  },

  async Sign(ctx, input) {
    const p = signingInputs(ctx, input, false);
    const key = await signingKey(ctx, 'Sign', p);
    const signature =
      p.algorithm === 'ED25519_SHA_512'
        ? signPure(key.privateKey!, p.message)
        : signPrehashed(key.privateKey!, p.message);
    return { KeyId: key.arn, Signature: signature.toString('base64'), SigningAlgorithm: p.algorithm };
  },

  async Verify(ctx, input) {
    const p = signingInputs(ctx, input, true);
    const key = await signingKey(ctx, 'Verify', p);
    const ok =
      p.algorithm === 'ED25519_SHA_512'
        ? verifyPure(key.publicKeyDer!, p.message, p.signature!)
        : verifyPrehashed(key.publicKeyDer!, p.message, p.signature!);
    // An invalid signature is an error, not SignatureValid: false (API reference, Verify).
    if (!ok) throw awsError('KMSInvalidSignatureException', 'The signature is not valid for this message and key.');
    return { KeyId: key.arn, SignatureValid: true, SigningAlgorithm: p.algorithm };
  },

  async Encrypt(ctx, input) {
    const keyId = input.string('KeyId', KEY_ID);
    const plaintext = input.blob('Plaintext', { required: true, min: 1, max: 4096 });
    const context = input.stringMap('EncryptionContext');
    const algorithm = input.string('EncryptionAlgorithm', { values: ENCRYPTION_ALGORITHMS });
    input.done();
    const key = await encryptionKey(ctx, keyId!, 'kms:Encrypt', algorithm);
    return {
      CiphertextBlob: encryptWith(key, plaintext!, context).toString('base64'),
      KeyId: key.arn,
      EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
    };
  },

  async Decrypt(ctx, input) {
    const blob = input.blob('CiphertextBlob', { required: true, min: 1, max: 6144 });
    const context = input.stringMap('EncryptionContext');
    const keyId = input.string('KeyId', { min: 1, max: 2048 });
    const algorithm = input.string('EncryptionAlgorithm', { values: ENCRYPTION_ALGORITHMS });
    input.done();
    const id = ciphertextKeyId(blob!);
    const owner = ctx.store.keys.get(id);
    if (!owner) throw invalidCiphertext();
    const key = await encryptionKey(ctx, owner.arn, 'kms:Decrypt', algorithm);
    if (keyId !== undefined && (await findKey(ctx, keyId, true)).keyId !== key.keyId) {
      ctx.audit.keyArn = key.arn;
      throw awsError(
        'IncorrectKeyException',
        'The key ID in the request does not identify a KMS key that can perform this operation.',
      );
    }
    return {
      KeyId: key.arn,
      Plaintext: decryptWith(key, blob!, context).toString('base64'),
      EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
    };
  },

  async GenerateDataKey(ctx, input) {
    const keyId = input.string('KeyId', KEY_ID);
    const spec = input.string('KeySpec', { values: DATA_KEY_SPECS });
    const bytes = input.int('NumberOfBytes', { min: 1, max: 1024 });
    const context = input.stringMap('EncryptionContext');
    input.done();
    if ((spec === undefined) === (bytes === undefined)) {
      throw awsError('ValidationException', 'Please specify either number of bytes or key spec, but not both.');
    }
    const key = await encryptionKey(ctx, keyId!, 'kms:GenerateDataKey', undefined);
    const plaintext = randomBytes(bytes ?? (spec === 'AES_128' ? 16 : 32));
    return {
      CiphertextBlob: encryptWith(key, plaintext, context).toString('base64'),
      Plaintext: plaintext.toString('base64'),
      KeyId: key.arn,
    };
  },
};
