import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createLogger } from '@cosigner/runtime/logger';
import { tempDir } from '@cosigner/testkit/process';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import type { FastifyInstance } from 'fastify';
import { type AccountPrincipal, type AccountsFile, generateAccounts } from '../src/accounts.ts';
import { build } from '../src/app.ts';
import { AuditLog } from '../src/audit.ts';
import { KeyStore } from '../src/store.ts';

export interface Reply {
  status: number;
  body: Record<string, unknown>;
  raw: string;
  headers: Record<string, unknown>;
}

export interface CallOptions {
  region?: string;
  /** Signing time (ms); defaults to the app clock. */
  at?: number;
  /** Sign with this secret instead of the principal's. */
  secret?: string;
  /** Send this body instead of the signed one (tampering). */
  sendBody?: string;
  /** Raw body instead of JSON.stringify(input). */
  rawBody?: string;
  target?: string | null;
  extraHeaders?: Record<string, string>;
  /** Headers to drop after signing. */
  drop?: string[];
  accessKeyId?: string;
}

/** An emulator app on a temp data dir, a movable clock and a SigV4-signing caller, for app.inject() tests. */
export interface Harness {
  app: FastifyInstance;
  accounts: AccountsFile;
  store: KeyStore;
  dataDir: string;
  masterKey: Buffer;
  clock: { now: number };
  auditPath: string;
  /** The admin and node principals of account i. */
  admin(i?: number): AccountPrincipal;
  node(i?: number): AccountPrincipal;
  call(who: AccountPrincipal, op: string, input?: unknown, o?: CallOptions): Promise<Reply>;
  close(): Promise<void>;
}

export const START = Date.UTC(2026, 10, 28, 12, 0, 0);

export async function sign(
  who: { accessKeyId: string; secretAccessKey: string },
  body: string,
  headers: Record<string, string>,
  region: string,
  at: number,
): Promise<Record<string, string>> {
  const signer = new SignatureV4({
    credentials: { accessKeyId: who.accessKeyId, secretAccessKey: who.secretAccessKey },
    region,
    service: 'kms',
    sha256: Hash.bind(null, 'sha256'),
  });
  const req = await signer.sign(
    new HttpRequest({ method: 'POST', protocol: 'http:', hostname: 'localhost', path: '/', headers, body }),
    { signingDate: new Date(at) },
  );
  return req.headers as Record<string, string>;
}

export async function harness(o: { accounts?: AccountsFile; bodyLimit?: number } = {}): Promise<Harness> {
  const dataDir = await tempDir('kms-emu-test-');
  const accounts = o.accounts ?? generateAccounts(3);
  const masterKey = Buffer.alloc(32, 7);
  const store = await KeyStore.open(dataDir, masterKey);
  const auditPath = join(dataDir, 'audit.jsonl');
  const audit = await AuditLog.open(auditPath);
  const clock = { now: START };
  const logger = createLogger({ name: 'kms-test', level: 'silent' });
  const app = await build({ accounts, store, audit, now: () => clock.now, bodyLimit: o.bodyLimit, logger });
  const pick =
    (role: string) =>
    (i = 0) =>
      accounts.accounts[i]!.principals.find((p) => p.role === role)!;
  return {
    app,
    accounts,
    store,
    dataDir,
    masterKey,
    clock,
    auditPath,
    admin: pick('admin'),
    node: pick('node'),
    async call(who, op, input = {}, c = {}) {
      const body = c.rawBody ?? JSON.stringify(input);
      const headers: Record<string, string> = {
        host: 'localhost',
        'content-type': 'application/x-amz-json-1.1',
        ...(c.target === null ? {} : { 'x-amz-target': c.target ?? `TrentService.${op}` }),
        ...c.extraHeaders,
      };
      const signed = await sign(
        { accessKeyId: c.accessKeyId ?? who.accessKeyId, secretAccessKey: c.secret ?? who.secretAccessKey },
        body,
        headers,
        c.region ?? 'us-east-1',
        c.at ?? clock.now,
      );
      for (const h of c.drop ?? []) delete signed[h];
      const res = await app.inject({ method: 'POST', url: '/', headers: signed, payload: c.sendBody ?? body });
      let parsed: Record<string, unknown> = {};
      if (res.body !== '') parsed = JSON.parse(res.body) as Record<string, unknown>;
      return { status: res.statusCode, body: parsed, raw: res.body, headers: res.headers };
    },
    async close() {
      await app.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export const b64 = (b: Uint8Array | string): string => Buffer.from(b).toString('base64');

/**
 * Sign with node principal 0 of the harness: `RAW` with ED25519_SHA_512 (the message itself), `DIGEST` with
 * ED25519_PH_SHA_512 (a SHA-512 digest, Ed25519ph), the two ways a client asks KMS for an Ed25519 signature.
 */
export function signAs(h: Harness, keyId: string, message: Uint8Array, type: 'RAW' | 'DIGEST'): Promise<Reply> {
  return h.call(h.node(), 'Sign', {
    KeyId: keyId,
    Message: b64(message),
    SigningAlgorithm: type === 'RAW' ? 'ED25519_SHA_512' : 'ED25519_PH_SHA_512',
    MessageType: type,
  });
}
