import { generateIdentity } from '@cosigner/protocol/identity';
import { describe, expect, it } from 'vitest';
import { culprits, openPackages, RELAY, signOwn } from '../src/frost/statements.ts';

// The node's checks of relayed statements shared by key generation and share refresh (src/frost/statements.ts),
// with real ed25519 identities generated at run time.
describe('relayed FROST statements (statements.ts)', () => {
  const a = generateIdentity().identity;
  const b = generateIdentity().identity;
  const roster = [
    { index: 1, nodeId: 'n1', identityKey: a.publicKeyB64 },
    { index: 2, nodeId: 'n2', identityKey: b.publicKeyB64 },
    { index: 3, nodeId: 'n3', identityKey: generateIdentity().identity.publicKeyB64 },
  ];
  const naming = { idField: 'refreshId', what: 'share-refresh' };
  const fromN1 = (to: number) =>
    signOwn(a, { id: 'r1', roster: 'digest', me: roster[0]! }, [
      { kind: 'refresh-round2', to, message: { to } } as never,
    ]);

  it('opens a package addressed to this node', () => {
    const out = openPackages(naming, { id: 'r1', roster: 'digest', me: roster[1]! }, fromN1(2), 'refresh-round2', [
      roster[0]!,
    ]);
    expect([...out.keys()]).toEqual(['n1']);
    expect((out.get('n1') as { to?: unknown }).to).toBe(2);
  });

  it('refuses a package addressed to another participant, naming the session and blaming the relay', () => {
    let err: unknown;
    try {
      openPackages(naming, { id: 'r1', roster: 'digest', me: roster[1]! }, fromN1(3), 'refresh-round2', [roster[0]!]);
    } catch (e) {
      err = e;
    }
    const e = err as { code: string; message: string; details: unknown };
    expect(e.code).toBe('NODE_FROST_RELAY_TAMPERED');
    expect(e.details).toEqual({ refreshId: 'r1', reason: 'the package from n1 is for another participant' });
    expect(e.message).toBe('Relayed share-refresh statements refused: the package from n1 is for another participant.');
    expect(culprits(err as never, roster)).toEqual([RELAY]);
  });
});
