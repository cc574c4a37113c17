import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame, FRAME_DOMAIN } from '../src/frame.ts';
import {
  DKG_STATEMENT_DOMAIN,
  openStatement,
  peekStatementAuthor,
  rosterDigest,
  signStatement,
} from '../src/frost-dkg.ts';
import { generateIdentity } from '../src/identity.ts';
import { ReplayGuard } from '../src/replay.ts';

describe('FROST key-generation statements', () => {
  const a = generateIdentity().identity;
  const b = generateIdentity().identity;
  const payload = {
    kind: 'transport-key' as const,
    transportKey: 'ab'.repeat(32),
    dkgId: 'd1',
    roster: 'cd'.repeat(32),
    from: 1,
    nodeId: 'n1',
  };

  it('verifies under the author key only, and never throws on bad input', () => {
    const st = signStatement(a, payload);
    expect(openStatement(a.publicKey, st)).toEqual(payload);
    expect(openStatement(b.publicKey, st)).toBeUndefined();
    expect(openStatement(a.publicKey, { ...st, p: st.p.replace('n1', 'n2') })).toBeUndefined();
    expect(openStatement(a.publicKey, { p: st.p, s: 'AAAA' })).toBeUndefined();
    expect(openStatement(a.publicKey, { p: 1, s: st.s } as never)).toBeUndefined();
    expect(openStatement(a.publicKey, undefined as never)).toBeUndefined();
    // Signed, but not a JSON object.
    for (const p of ['[1]', 'not json', 'null']) {
      const s = a.sign(Buffer.concat([DKG_STATEMENT_DOMAIN, Buffer.from(p)])).toString('base64');
      expect(openStatement(a.publicKey, { p, s })).toBeUndefined();
    }
    expect(peekStatementAuthor(st)).toBe('n1');
    expect(peekStatementAuthor({ p: '{', s: '' })).toBeUndefined();
    expect(peekStatementAuthor({ p: '{"nodeId":1}', s: '' })).toBeUndefined();
  });

  it('is domain-separated from protocol frames: neither signature passes for the other', () => {
    expect(DKG_STATEMENT_DOMAIN.equals(FRAME_DOMAIN)).toBe(false);
    const frame = JSON.parse(
      encodeFrame(a, { type: 'ping', body: { nonce: '1' }, from: 'n1', to: 'coordinator', session: 's' }),
    ) as { p: string; s: string };
    expect(openStatement(a.publicKey, frame)).toBeUndefined();
    const st = signStatement(a, payload);
    expect(() =>
      decodeFrame(JSON.stringify(st), {
        trustedKeys: [a.publicKey],
        sender: 'node',
        self: 'coordinator',
        session: 's',
        replay: new ReplayGuard({ ttlMs: 1000 }),
      }),
    ).toThrow(expect.objectContaining({ code: 'PROTOCOL_BAD_SIGNATURE' }));
  });

  it('binds the roster: session, threshold, indices, node ids and identity keys, whatever the order given', () => {
    const r = [
      { index: 2, nodeId: 'n2', identityKey: b.publicKeyB64 },
      { index: 1, nodeId: 'n1', identityKey: a.publicKeyB64 },
    ];
    const d = rosterDigest('d1', 2, r);
    expect(d).toMatch(/^[0-9a-f]{64}$/);
    expect(rosterDigest('d1', 2, [...r].reverse())).toBe(d);
    expect(rosterDigest('d2', 2, r)).not.toBe(d);
    expect(rosterDigest('d1', 3, r)).not.toBe(d);
    expect(rosterDigest('d1', 2, [r[0]!, { ...r[1]!, identityKey: b.publicKeyB64 }])).not.toBe(d);
    expect(rosterDigest('d1', 2, [r[0]!, { ...r[1]!, index: 3 }])).not.toBe(d);
  });

  it('frost-dkg frames go coordinator to node only, frost-dkg-reply node to coordinator only', () => {
    const replay = new ReplayGuard({ ttlMs: 60_000 });
    const down = encodeFrame(a, {
      type: 'frost-dkg',
      body: { dkgId: 'd1', step: 'abort' },
      from: 'coordinator',
      to: 'n1',
      session: 's',
    });
    const opts = { trustedKeys: [a.publicKey], self: 'n1', session: 's', replay };
    expect(decodeFrame(down, { ...opts, sender: 'coordinator' }).envelope.type).toBe('frost-dkg');
    const up = encodeFrame(a, {
      type: 'frost-dkg-reply',
      body: { dkgId: 'd1', step: 'start', statements: [signStatement(a, payload)] },
      from: 'n1',
      to: 'coordinator',
      session: 's',
    });
    const coord = { ...opts, self: 'coordinator' };
    expect(decodeFrame(up, { ...coord, sender: 'node' }).envelope.type).toBe('frost-dkg-reply');
    expect(() => decodeFrame(up, { ...coord, sender: 'coordinator' })).toThrow(
      expect.objectContaining({ code: 'PROTOCOL_MALFORMED' }),
    );
    const bad = encodeFrame(a, {
      type: 'frost-dkg',
      body: { dkgId: 'd1', step: 'round9' } as never,
      from: 'coordinator',
      to: 'n1',
      session: 's',
    });
    expect(() => decodeFrame(bad, { ...opts, sender: 'coordinator' })).toThrow(
      expect.objectContaining({ code: 'PROTOCOL_SCHEMA' }),
    );
  });
});
