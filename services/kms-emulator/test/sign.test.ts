import { createHash, verify } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '@cosigner/testkit/process';
import { ed25519ph } from '@noble/curves/ed25519.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../src/audit.ts';
import { b64, type Harness, harness, signAs } from './helpers.ts';

const SPKI_PREFIX = '302a300506032b6570032100';

describe('kms-emulator Sign, Verify, GetPublicKey (ECC_NIST_EDWARDS25519)', () => {
  let h: Harness;
  let keyId: string;
  let arn: string;

  beforeEach(async () => {
    h = await harness();
    const r = await h.call(h.admin(), 'CreateKey', {
      KeySpec: 'ECC_NIST_EDWARDS25519',
      KeyUsage: 'SIGN_VERIFY',
      Description: 'node key',
    });
    expect(r.status).toBe(200);
    const md = r.body.KeyMetadata as Record<string, unknown>;
    keyId = String(md.KeyId);
    arn = String(md.Arn);
  });
  afterEach(() => h.close());

  it('creates a key with AWS metadata: UUID id, ARN, spec, usage, algorithms', async () => {
    expect(keyId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(arn).toBe(`arn:aws:kms:us-east-1:111111111111:key/${keyId}`);
    const d = await h.call(h.node(), 'DescribeKey', { KeyId: keyId });
    expect(d.body.KeyMetadata).toMatchObject({
      AWSAccountId: '111111111111',
      KeySpec: 'ECC_NIST_EDWARDS25519',
      KeyUsage: 'SIGN_VERIFY',
      KeyState: 'Enabled',
      Enabled: true,
      Origin: 'AWS_KMS',
      KeyManager: 'CUSTOMER',
      Description: 'node key',
      SigningAlgorithms: ['ED25519_SHA_512', 'ED25519_PH_SHA_512'],
      CreationDate: Date.UTC(2026, 10, 28, 12) / 1000,
    });
  });

  it('returns a 44-byte DER SPKI public key and a raw RFC 8032 signature that node:crypto verifies', async () => {
    const pk = await h.call(h.node(), 'GetPublicKey', { KeyId: keyId });
    expect(pk.status).toBe(200);
    const spki = Buffer.from(String(pk.body.PublicKey), 'base64');
    expect(spki.length).toBe(44);
    expect(spki.subarray(0, 12).toString('hex')).toBe(SPKI_PREFIX);
    expect(pk.body).toMatchObject({ KeyId: arn, KeySpec: 'ECC_NIST_EDWARDS25519', KeyUsage: 'SIGN_VERIFY' });
    expect(pk.headers['x-amzn-requestid']).toMatch(/^[0-9a-f-]{36}$/);

    const msg = createHash('sha256').update('a stellar transaction').digest();
    const s = await signAs(h, keyId, msg, 'RAW');
    expect(s.status).toBe(200);
    expect(s.body).toMatchObject({ KeyId: arn, SigningAlgorithm: 'ED25519_SHA_512' });
    const sig = Buffer.from(String(s.body.Signature), 'base64');
    expect(sig.length).toBe(64);
    expect(verify(null, msg, { key: spki, format: 'der', type: 'spki' }, sig)).toBe(true);
    expect(verify(null, Buffer.alloc(32), { key: spki, format: 'der', type: 'spki' }, sig)).toBe(false);

    const v = await h.call(h.node(), 'Verify', {
      KeyId: keyId,
      Message: b64(msg),
      Signature: b64(sig),
      SigningAlgorithm: 'ED25519_SHA_512',
    });
    expect(v.body).toEqual({ KeyId: arn, SignatureValid: true, SigningAlgorithm: 'ED25519_SHA_512' });
    sig[0]! ^= 1;
    const bad = await h.call(h.node(), 'Verify', {
      KeyId: keyId,
      Message: b64(msg),
      Signature: b64(sig),
      SigningAlgorithm: 'ED25519_SHA_512',
    });
    expect(bad.status).toBe(400);
    expect(bad.body.__type).toBe('KMSInvalidSignatureException');
    const short = await h.call(h.node(), 'Verify', {
      KeyId: keyId,
      Message: b64(msg),
      Signature: b64(sig.subarray(0, 10)),
      SigningAlgorithm: 'ED25519_SHA_512',
    });
    expect(short.body.__type).toBe('KMSInvalidSignatureException');
  });

  it('signs ED25519_PH_SHA_512 over a SHA-512 DIGEST as Ed25519ph (RFC 8032 HashEdDSA)', async () => {
    const message = Buffer.from('a long document');
    const digest = createHash('sha512').update(message).digest();
    const s = await signAs(h, keyId, digest, 'DIGEST');
    expect(s.status).toBe(200);
    const sig = Buffer.from(String(s.body.Signature), 'base64');
    const pk = await h.call(h.node(), 'GetPublicKey', { KeyId: keyId });
    const raw = Buffer.from(String(pk.body.PublicKey), 'base64').subarray(12);
    expect(ed25519ph.verify(sig, message, raw)).toBe(true);
    const v = await h.call(h.node(), 'Verify', {
      KeyId: keyId,
      Message: b64(digest),
      MessageType: 'DIGEST',
      Signature: b64(sig),
      SigningAlgorithm: 'ED25519_PH_SHA_512',
    });
    expect(v.body.SignatureValid).toBe(true);
    const bad = await h.call(h.node(), 'Verify', {
      KeyId: keyId,
      Message: b64(Buffer.alloc(64)),
      MessageType: 'DIGEST',
      Signature: b64(sig),
      SigningAlgorithm: 'ED25519_PH_SHA_512',
    });
    expect(bad.body.__type).toBe('KMSInvalidSignatureException');
  });

  it('answers the message-type rules and limits as ValidationException', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        { SigningAlgorithm: 'ED25519_PH_SHA_512', MessageType: 'RAW', Message: b64('x') },
        /requires MessageType DIGEST/,
      ],
      [
        { SigningAlgorithm: 'ED25519_SHA_512', MessageType: 'DIGEST', Message: b64(Buffer.alloc(64)) },
        /requires MessageType RAW/,
      ],
      [
        { SigningAlgorithm: 'ED25519_SHA_512', MessageType: 'EXTERNAL_MU', Message: b64('x') },
        /requires MessageType RAW/,
      ],
      [
        { SigningAlgorithm: 'ED25519_PH_SHA_512', MessageType: 'DIGEST', Message: b64(Buffer.alloc(32)) },
        /Digest is invalid length/,
      ],
      [
        { SigningAlgorithm: 'ED25519_SHA_512', Message: b64(Buffer.alloc(4097)) },
        /^1 validation error detected: Value {2}at 'message' failed to satisfy constraint: Member must have length less than or equal to 4096$/,
      ],
      [{ SigningAlgorithm: 'ED25519_SHA_512', Message: '' }, /Member must have length greater than or equal to 1/],
      [
        { SigningAlgorithm: 'NOPE', Message: b64('x') },
        /Value 'NOPE' at 'signingAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: \[RSASSA_PSS_SHA_256/,
      ],
      [{ Message: b64('x') }, /Value null at 'signingAlgorithm' failed to satisfy constraint: Member must not be null/],
      [{ SigningAlgorithm: 'ED25519_SHA_512', MessageType: 'HEX', Message: b64('x') }, /at 'messageType'/],
    ];
    for (const [input, re] of cases) {
      const r = await h.call(h.node(), 'Sign', { KeyId: keyId, ...input });
      expect(r.status, JSON.stringify(input).slice(0, 80)).toBe(400);
      expect(r.body.__type).toBe('ValidationException');
      expect(String(r.body.message)).toMatch(re);
    }
    const two = await h.call(h.node(), 'Sign', {});
    expect(two.body.message).toMatch(
      /^3 validation errors detected: Value null at 'keyId'.*; Value null at 'message'.*; Value null at 'signingAlgorithm'/,
    );
    const max = await h.call(h.node(), 'Sign', {
      KeyId: keyId,
      Message: b64(Buffer.alloc(4096, 9)),
      SigningAlgorithm: 'ED25519_SHA_512',
    });
    expect(max.status).toBe(200);
  });

  it('answers DryRun with DryRunOperationException (412) once every other check passed', async () => {
    const input = { KeyId: keyId, Message: b64('m'), SigningAlgorithm: 'ED25519_SHA_512', DryRun: true };
    const r = await h.call(h.node(), 'Sign', input);
    expect(r.status).toBe(412);
    expect(r.body.__type).toBe('DryRunOperationException');
    expect((await h.call(h.node(1), 'Sign', { ...input, KeyId: arn })).body.__type).toBe('AccessDeniedException');
  });

  it('refuses an algorithm of another key family as InvalidKeyUsageException', async () => {
    const r = await h.call(h.node(), 'Sign', { KeyId: keyId, Message: b64('x'), SigningAlgorithm: 'ECDSA_SHA_256' });
    expect(r.body).toMatchObject({ __type: 'InvalidKeyUsageException' });
  });

  it('answers wrong JSON types, malformed JSON and bad base64 as SerializationException', async () => {
    for (const input of [{ KeyId: 5 }, { KeyId: keyId, Message: 7, SigningAlgorithm: 'ED25519_SHA_512' }]) {
      const r = await h.call(h.node(), 'Sign', input);
      expect(r.body.__type).toBe('SerializationException');
    }
    const bad64 = await h.call(h.node(), 'Sign', {
      KeyId: keyId,
      Message: 'not base64!',
      SigningAlgorithm: 'ED25519_SHA_512',
    });
    expect(bad64.body.__type).toBe('SerializationException');
    for (const rawBody of ['{"KeyId":', '[1,2]', '"x"', 'null']) {
      const r = await h.call(h.node(), 'Sign', undefined, { rawBody });
      expect(r.status, rawBody).toBe(400);
      expect(r.body.__type).toBe('SerializationException');
    }
    // An empty body is an empty structure: the missing members are then named.
    const empty = await h.call(h.node(), 'DescribeKey', undefined, { rawBody: '' });
    expect(empty.body.__type).toBe('ValidationException');
  });

  it('answers DisabledException on a disabled key and KMSInvalidStateException while pending deletion', async () => {
    expect((await h.call(h.admin(), 'DisableKey', { KeyId: keyId })).status).toBe(200);
    const input = { KeyId: keyId, Message: b64('m'), SigningAlgorithm: 'ED25519_SHA_512' };
    const d = await h.call(h.node(), 'Sign', input);
    expect(d.body).toEqual({ __type: 'DisabledException', message: `${arn} is disabled.` });
    expect((await h.call(h.node(), 'GetPublicKey', { KeyId: keyId })).body.__type).toBe('DisabledException');
    expect((await h.call(h.node(), 'DescribeKey', { KeyId: keyId })).body.KeyMetadata).toMatchObject({
      KeyState: 'Disabled',
      Enabled: false,
    });
    expect((await h.call(h.admin(), 'EnableKey', { KeyId: keyId })).status).toBe(200);
    expect((await h.call(h.node(), 'Sign', input)).status).toBe(200);

    const s = await h.call(h.admin(), 'ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 });
    expect(s.body).toEqual({
      KeyId: arn,
      DeletionDate: h.clock.now / 1000 + 7 * 86400,
      KeyState: 'PendingDeletion',
      PendingWindowInDays: 7,
    });
    const p = await h.call(h.node(), 'Sign', input);
    expect(p.body).toEqual({ __type: 'KMSInvalidStateException', message: `${arn} is pending deletion.` });
    for (const op of ['EnableKey', 'DisableKey', 'ScheduleKeyDeletion', 'PutKeyPolicy', 'TagResource']) {
      const extra = op === 'PutKeyPolicy' ? { Policy: '{}' } : op === 'TagResource' ? { Tags: [] } : {};
      const r = await h.call(h.admin(), op, { KeyId: keyId, ...extra });
      expect(r.body.__type, op).toBe('KMSInvalidStateException');
    }
    const c = await h.call(h.admin(), 'CancelKeyDeletion', { KeyId: keyId });
    expect(c.body).toEqual({ KeyId: arn });
    expect((await h.call(h.node(), 'Sign', input)).body.__type).toBe('DisabledException');
    expect((await h.call(h.admin(), 'CancelKeyDeletion', { KeyId: keyId })).body.__type).toBe(
      'KMSInvalidStateException',
    );
  });

  it('checks the deletion window (7-30 days, default 30) and deletes the key once it has passed', async () => {
    for (const days of [6, 31]) {
      const r = await h.call(h.admin(), 'ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: days });
      expect(r.body.__type).toBe('ValidationException');
    }
    expect((await h.call(h.admin(), 'CreateAlias', { AliasName: 'alias/doomed', TargetKeyId: keyId })).status).toBe(
      200,
    );
    const s = await h.call(h.admin(), 'ScheduleKeyDeletion', { KeyId: keyId });
    expect(s.body.PendingWindowInDays).toBe(30);
    h.clock.now += 30 * 86_400_000;
    const gone = await h.call(h.admin(), 'DescribeKey', { KeyId: keyId });
    expect(gone.body).toEqual({ __type: 'NotFoundException', message: `Key '${arn}' does not exist` });
    const aliases = await h.call(h.admin(), 'ListAliases', {});
    expect(aliases.body.Aliases).toEqual([]);
  });

  it('writes audit lines with account, principal, key and algorithm, never the message or signature', async () => {
    const msg = Buffer.alloc(32, 0xab);
    const s = await h.call(h.node(), 'Sign', { KeyId: keyId, Message: b64(msg), SigningAlgorithm: 'ED25519_SHA_512' });
    await h.call(h.node(2), 'Sign', { KeyId: arn, Message: b64(msg), SigningAlgorithm: 'ED25519_SHA_512' });
    // Written before each answer (audit.ts): the file holds both lines while the app still runs.
    const text = await readFile(h.auditPath, 'utf8');
    const lines = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const sign = lines.find((l) => l.eventName === 'Sign' && l.errorCode === undefined)!;
    expect(sign).toMatchObject({
      eventSource: 'kms.amazonaws.com',
      accountId: '111111111111',
      principalArn: 'arn:aws:iam::111111111111:role/cosigner-node',
      accessKeyId: h.node().accessKeyId,
      keyArn: arn,
      signingAlgorithm: 'ED25519_SHA_512',
      awsRegion: 'us-east-1',
    });
    expect(sign.eventTime).toBe(new Date(h.clock.now).toISOString());
    const denied = lines.find((l) => l.accountId === '333333333333')!;
    expect(denied).toMatchObject({ errorCode: 'AccessDeniedException', keyArn: arn });
    for (const secret of [b64(msg), msg.toString('hex'), String(s.body.Signature)]) expect(text).not.toContain(secret);
    for (const l of lines) {
      expect(Object.keys(l).every((k) => !/message|plaintext|signature$|secret/i.test(k))).toBe(true);
    }
  });

  it('reports an audit line it cannot write (a full disk, a closed log) to onError instead of throwing', async () => {
    const dir = await tempDir('kms-audit-');
    const errors: Error[] = [];
    const audit = await AuditLog.open(join(dir, 'audit.jsonl'), (e) => errors.push(e));
    const event = {
      eventTime: 't',
      eventSource: 'kms.amazonaws.com',
      eventName: 'Sign',
      requestId: 'r',
      sourceIPAddress: 'ip',
    } as const;
    audit.write(event);
    await audit.close();
    await audit.close();
    audit.write(event);
    expect(errors.map((e) => e.message)).toEqual(['the audit log is closed']);
    expect((await readFile(join(dir, 'audit.jsonl'), 'utf8')).trim().split('\n')).toHaveLength(1);
    await rm(dir, { recursive: true, force: true });
    // /dev/full answers every write with ENOSPC, as a full disk does.
    const full = await AuditLog.open('/dev/full', (e) => errors.push(e));
    expect(() => full.write(event)).not.toThrow();
    expect((errors.at(-1) as NodeJS.ErrnoException).code).toBe('ENOSPC');
    await full.close();
  });
});
