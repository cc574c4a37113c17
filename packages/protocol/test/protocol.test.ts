import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Keypair } from '@stellar/stellar-sdk';
import { afterAll, describe, expect, it } from 'vitest';
import { type DecodeOptions, decodeFrame, encodeFrame, FRAME_DOMAIN, MAX_FRAME_BYTES } from '../src/frame.ts';
import {
  generateIdentity,
  identityFromPem,
  loadOrCreateIdentity,
  parsePublicKeyB64,
  publicKeyObject,
  verifyWith,
} from '../src/identity.ts';
import { ReplayGuard, TokenBucket } from '../src/replay.ts';

const coord = generateIdentity().identity;
const node = generateIdentity().identity;
const stranger = generateIdentity().identity;
const SESSION = 'sess-1';
const stellarKey = Keypair.random().publicKey();

function opts(over: Partial<DecodeOptions> = {}): DecodeOptions {
  return {
    trustedKeys: [coord.publicKey],
    sender: 'coordinator',
    self: 'node-a',
    session: SESSION,
    replay: new ReplayGuard({ ttlMs: 60_000 }),
    ...over,
  };
}

function proposalFrame(
  over: { id?: string; ts?: number; to?: string; session?: string | null; signer?: typeof coord } = {},
) {
  return encodeFrame(over.signer ?? coord, {
    type: 'proposal',
    from: 'coordinator',
    to: over.to ?? 'node-a',
    session: over.session === undefined ? SESSION : over.session,
    id: over.id,
    ts: over.ts,
    body: { proposalId: 'p1', kind: 'transaction', networkPassphrase: 'Test', xdr: 'AAAA' },
  });
}

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

describe('frames', () => {
  it('round-trips a signed proposal and names the key that signed it', () => {
    const { envelope, signer } = decodeFrame(proposalFrame(), opts());
    expect(envelope.type).toBe('proposal');
    expect(envelope.body).toMatchObject({ proposalId: 'p1' });
    expect(signer.equals(coord.publicKey)).toBe(true);
  });

  it('accepts any of several trusted keys (rotation)', () => {
    const rotated = generateIdentity().identity;
    const { signer } = decodeFrame(
      proposalFrame({ signer: rotated }),
      opts({ trustedKeys: [coord.publicKey, rotated.publicKey] }),
    );
    expect(signer.equals(rotated.publicKey)).toBe(true);
  });

  it('refuses a forged signature, a tampered payload and an untrusted key', () => {
    expect(codeOf(() => decodeFrame(proposalFrame({ signer: stranger }), opts()))).toBe('PROTOCOL_BAD_SIGNATURE');
    const f = JSON.parse(proposalFrame()) as { p: string; s: string };
    const tampered = JSON.stringify({ p: f.p.replace('"p1"', '"p2"'), s: f.s });
    expect(codeOf(() => decodeFrame(tampered, opts()))).toBe('PROTOCOL_BAD_SIGNATURE');
    const noDomain = JSON.stringify({ p: f.p, s: coord.sign(Buffer.from(f.p)).toString('base64') });
    expect(codeOf(() => decodeFrame(noDomain, opts()))).toBe('PROTOCOL_BAD_SIGNATURE');
  });

  it('refuses replays, stale and future frames', () => {
    const o = opts();
    const frame = proposalFrame();
    decodeFrame(frame, o);
    expect(codeOf(() => decodeFrame(frame, o))).toBe('PROTOCOL_REPLAY');
    expect(codeOf(() => decodeFrame(proposalFrame({ ts: Date.now() - 60_000 }), opts()))).toBe('PROTOCOL_STALE');
    expect(codeOf(() => decodeFrame(proposalFrame({ ts: Date.now() + 60_000 }), opts()))).toBe('PROTOCOL_STALE');
  });

  it('refuses frames for another node or another session', () => {
    expect(codeOf(() => decodeFrame(proposalFrame({ to: 'node-b' }), opts()))).toBe('PROTOCOL_WRONG_RECIPIENT');
    expect(codeOf(() => decodeFrame(proposalFrame({ to: '*' }), opts()))).toBe('PROTOCOL_WRONG_RECIPIENT');
    expect(codeOf(() => decodeFrame(proposalFrame({ session: 'old' }), opts()))).toBe('PROTOCOL_WRONG_SESSION');
    expect(codeOf(() => decodeFrame(proposalFrame({ session: null }), opts()))).toBe('PROTOCOL_WRONG_SESSION');
  });

  it('runs the handshake outside a session, with hello broadcast', () => {
    const hello = encodeFrame(coord, {
      type: 'hello',
      from: 'coordinator',
      to: '*',
      session: null,
      body: { challenge: 'AAAA', coordinatorKey: coord.publicKeyB64, networkPassphrase: 'Test', serverTime: 1 },
    });
    expect(decodeFrame(hello, opts({ session: null })).envelope.type).toBe('hello');
    const auth = encodeFrame(node, {
      type: 'auth',
      from: 'node-a',
      to: 'coordinator',
      session: null,
      body: {
        nodeId: 'node-a',
        identityKey: node.publicKeyB64,
        stellarKey,
        challenge: 'AAAA',
        networkPassphrase: 'Test',
        version: '0.1.0',
      },
    });
    const got = decodeFrame(
      auth,
      opts({ trustedKeys: [node.publicKey], sender: 'node', self: 'coordinator', session: null }),
    );
    expect(got.envelope.body).toMatchObject({ stellarKey });
    const badSessionHello = encodeFrame(coord, {
      type: 'welcome',
      from: 'coordinator',
      to: 'node-a',
      session: 'x',
      body: { sessionId: 'x', heartbeatMs: 1000 },
    });
    expect(codeOf(() => decodeFrame(badSessionHello, opts()))).toBe('PROTOCOL_WRONG_SESSION');
  });

  it('refuses a message type from the wrong side', () => {
    const decision = encodeFrame(coord, {
      type: 'decision',
      from: 'coordinator',
      to: 'node-a',
      session: SESSION,
      body: { proposalId: 'p', hash: 'a'.repeat(64), outcome: 'approve', reasons: [], signerKey: stellarKey },
    });
    expect(codeOf(() => decodeFrame(decision, opts()))).toBe('PROTOCOL_MALFORMED');
  });

  it('checks the body schema', () => {
    const bad = encodeFrame(node, {
      type: 'decision',
      from: 'node-a',
      to: 'coordinator',
      session: SESSION,
      // biome-ignore lint/suspicious/noExplicitAny: deliberately wrong body
      body: { proposalId: 'p', hash: 'nothex', outcome: 'approve', reasons: [], signerKey: stellarKey } as any,
    });
    const o = opts({ trustedKeys: [node.publicKey], sender: 'node', self: 'coordinator' });
    expect(codeOf(() => decodeFrame(bad, o))).toBe('PROTOCOL_SCHEMA');
  });

  it('refuses malformed and oversize frames', () => {
    const o = opts();
    expect(codeOf(() => decodeFrame('not json', o))).toBe('PROTOCOL_MALFORMED');
    expect(codeOf(() => decodeFrame('{"p":1}', o))).toBe('PROTOCOL_MALFORMED');
    expect(codeOf(() => decodeFrame('null', o))).toBe('PROTOCOL_MALFORMED');
    expect(codeOf(() => decodeFrame(Buffer.alloc(MAX_FRAME_BYTES + 1, 32), o))).toBe('PROTOCOL_TOO_LARGE');
    const signRaw = (p: string) =>
      JSON.stringify({ p, s: coord.sign(Buffer.concat([FRAME_DOMAIN, Buffer.from(p)])).toString('base64') });
    expect(codeOf(() => decodeFrame(signRaw('{oops'), o))).toBe('PROTOCOL_MALFORMED');
    expect(codeOf(() => decodeFrame(signRaw('{"v":2}'), o))).toBe('PROTOCOL_MALFORMED');
    expect(codeOf(() => decodeFrame(signRaw('null'), o))).toBe('PROTOCOL_MALFORMED');
    const unknownType = {
      v: 1,
      id: 'x',
      ts: Date.now(),
      from: 'c',
      to: 'node-a',
      session: SESSION,
      type: 'toString',
      body: {},
    };
    expect(codeOf(() => decodeFrame(signRaw(JSON.stringify(unknownType)), o))).toBe('PROTOCOL_MALFORMED');
  });
});

describe('identity keys', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('creates a private key file once, then loads the same identity', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'proto-'));
    dirs.push(dir);
    const path = join(dir, 'sub', 'identity.pem');
    const a = await loadOrCreateIdentity(path);
    expect(a.created).toBe(true);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const b = await loadOrCreateIdentity(path);
    expect(b.created).toBe(false);
    expect(b.identity.publicKey.equals(a.identity.publicKey)).toBe(true);
  });

  it('refuses a world-readable key file and a non-ed25519 key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'proto-'));
    dirs.push(dir);
    const path = join(dir, 'identity.pem');
    await writeFile(path, generateIdentity().pem);
    await chmod(path, 0o644);
    await expect(loadOrCreateIdentity(path)).rejects.toMatchObject({ code: 'RUNTIME_FILE_NOT_PRIVATE' });
    expect(codeOf(() => identityFromPem('garbage'))).toBe('PROTOCOL_BAD_KEY');
    const { generateKeyPairSync } = await import('node:crypto');
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' });
    expect(codeOf(() => identityFromPem(ec.toString()))).toBe('PROTOCOL_BAD_KEY');
  });

  it('verifies, and never throws on a bad signature length', () => {
    const sig = node.sign(Buffer.from('x'));
    expect(verifyWith(node.publicKey, Buffer.from('x'), sig)).toBe(true);
    expect(verifyWith(node.publicKey, Buffer.from('y'), sig)).toBe(false);
    expect(verifyWith(node.publicKey, Buffer.from('x'), sig.subarray(1))).toBe(false);
    expect(codeOf(() => publicKeyObject(Buffer.alloc(31)))).toBe('PROTOCOL_BAD_KEY');
  });

  it('parses base64 public keys strictly', () => {
    expect(parsePublicKeyB64(node.publicKeyB64, 'k').equals(node.publicKey)).toBe(true);
    expect(codeOf(() => parsePublicKeyB64('AAAA', 'coordinatorKey'))).toBe('PROTOCOL_BAD_KEY');
  });
});

describe('replay guard and token bucket', () => {
  it('forgets ids after their window and bounds its size', () => {
    const g = new ReplayGuard({ ttlMs: 100, maxEntries: 2 });
    expect(g.accept('a', 0)).toBe(true);
    expect(g.accept('a', 1)).toBe(false);
    expect(g.accept('b', 1)).toBe(true);
    expect(g.accept('c', 2)).toBe(false);
    expect(g.accept('c', 150)).toBe(true);
    expect(g.size).toBe(1);
  });

  it('limits rate with a burst', () => {
    const b = new TokenBucket(10, 2, 0);
    expect(b.take(0)).toBe(true);
    expect(b.take(0)).toBe(true);
    expect(b.take(0)).toBe(false);
    expect(b.take(100)).toBe(true);
  });
});

describe('peekSender', () => {
  it('reads the claimed sender without trusting it, and never throws', async () => {
    const { peekSender } = await import('../src/frame.ts');
    expect(peekSender(proposalFrame())).toBe('coordinator');
    expect(peekSender('garbage')).toBeUndefined();
    expect(peekSender('{"p":"{}"}')).toBeUndefined();
    expect(peekSender('{"p":1}')).toBeUndefined();
  });
});
