import type { SignerConfiguration } from '@cosigner/policy/lockout';
import { decodeEnvelope } from '@cosigner/stellar/decode';
import { checkAuth } from '@cosigner/stellar/quorum';
import {
  Account,
  Asset,
  Keypair,
  Networks,
  Operation,
  type Transaction,
  TransactionBuilder,
  type xdr,
} from '@stellar/stellar-sdk';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createTransportKey } from '../src/channel.ts';
import { toHex } from '../src/input.ts';
import { checkGroupKeyChange, groupParty, planGroupKeyChange, planNewGroup } from '../src/reshare.ts';
import { aggregate, commitNonces, signShare } from '../src/rounds.ts';
import type { GroupPublic, KeyShare } from '../src/suite.ts';
import { makeSession, runDkg } from './helpers.ts';

const code = (c: string, details?: Record<string, unknown>) =>
  expect.objectContaining(details ? { code: c, details: expect.objectContaining(details) } : { code: c });

function sign(g: GroupPublic, shares: KeyShare[], message: Uint8Array): Buffer {
  const commits = shares.map((s) => commitNonces(s));
  const commitments = commits.map((c) => c.commitment);
  const sigShares = Object.fromEntries(
    shares.map((s, i) => [String(s.index), signShare(g, s, commits[i]!.nonces, commitments, message)]),
  );
  return Buffer.from(aggregate(g, commitments, message, sigShares));
}

function tx(source: string, ops: xdr.Operation[]): Transaction {
  const b = new TransactionBuilder(new Account(source, '41'), { fee: '200', networkPassphrase: Networks.TESTNET });
  for (const op of ops) b.addOperation(op);
  return b.setTimeout(300).build();
}

/** stellar-core's authorization check of `t` (signed) against an account with this configuration. */
function authorized(t: Transaction, c: SignerConfiguration): boolean {
  const accounts = new Map([
    [
      c.account,
      {
        accountId: c.account,
        masterWeight: c.masterWeight,
        thresholds: { low: c.thresholds.low, medium: c.thresholds.med, high: c.thresholds.high },
        signers: c.signers.map((s) => ({ key: s.key, weight: s.weight })),
      },
    ],
  ]);
  return checkAuth(decodeEnvelope(t.toEnvelope().toXDR('base64'), Networks.TESTNET), accounts).ok;
}

// The old group: 2-of-3 of node-1..3, from a key generation.
const old = (() => {
  const { session, secrets } = makeSession(3, 2, 'reshare-old');
  const { outputs } = runDkg(session, secrets);
  return { group: outputs[0]!.group, address: outputs[0]!.address, shares: outputs.map((o) => o.share) };
})();
const member = (nodeId: string) => ({ nodeId, transportKey: toHex(createTransportKey().publicKey) });

describe('a new group (nodes added or removed): fresh key generation, then the account swaps the keys', () => {
  it('plans the key generation of the new group and refuses a group whose quorums can be disjoint', () => {
    const members = ['node-5', 'node-2', 'node-4', 'node-3'].map(member);
    const plan = planNewGroup({
      sessionId: 'reshare-new',
      oldGroup: old.group,
      oldNodes: ['node-1', 'node-2', 'node-3'],
      members,
      threshold: 3,
    });
    expect(plan.session.members.map((m) => [m.index, m.nodeId])).toEqual([
      [1, 'node-2'],
      [2, 'node-3'],
      [3, 'node-4'],
      [4, 'node-5'],
    ]);
    expect(plan).toMatchObject({ joining: ['node-4', 'node-5'], leaving: ['node-1'], staying: ['node-2', 'node-3'] });
    const base = { sessionId: 's', oldGroup: old.group, oldNodes: ['node-1', 'node-2', 'node-3'], members };
    // 2 of 4: {1,2} and {3,4} could each sign a different transaction for one sequence number.
    expect(() => planNewGroup({ ...base, threshold: 2 })).toThrow(
      code('FROST_GROUP_CHANGE_UNSAFE', {
        problems: [expect.objectContaining({ code: 'GROUP_DISJOINT_QUORUMS', field: 'threshold' })],
      }),
    );
    expect(planNewGroup({ ...base, threshold: 2, allowDisjointQuorums: true }).session.threshold).toBe(2);
    // The same nodes and threshold: that is a refresh.
    expect(() => planNewGroup({ ...base, members: ['node-1', 'node-2', 'node-3'].map(member), threshold: 2 })).toThrow(
      code('FROST_OUT_OF_RANGE', { field: 'members' }),
    );
    // The same nodes with a higher threshold is a new group.
    expect(
      planNewGroup({ ...base, members: ['node-1', 'node-2', 'node-3'].map(member), threshold: 3 }).joining,
    ).toEqual([]);
    expect(() => planNewGroup({ ...base, oldNodes: ['node-1', 'node-1', 'node-3'], threshold: 3 })).toThrow(
      code('FROST_OUT_OF_RANGE', { field: 'oldNodes' }),
    );
    expect(() => planNewGroup({ ...base, members: [...members, members[0]!], threshold: 3 })).toThrow(
      code('FROST_OUT_OF_RANGE', { field: 'session.members' }),
    );
    expect(() => planNewGroup({ ...base, members: [{ nodeId: 'bad id' } as never], threshold: 3 })).toThrow(
      code('FROST_OUT_OF_RANGE', { field: 'members[0].nodeId' }),
    );
    expect(() => planNewGroup({ ...base, threshold: 5 })).toThrow(code('FROST_OUT_OF_RANGE'));
  });

  it('property: a new t-of-n group is accepted exactly when any two sets of t of its nodes share one (2t > n)', () => {
    const keys = Array.from({ length: 12 }, () => toHex(createTransportKey().publicKey));
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 12 }).chain((n) => fc.tuple(fc.constant(n), fc.integer({ min: 2, max: n }))),
        ([n, t]) => {
          const members = Array.from({ length: n }, (_, i) => ({ nodeId: `n-${i}`, transportKey: keys[i]! }));
          const plan = () =>
            planNewGroup({
              sessionId: 'p',
              oldGroup: old.group,
              oldNodes: ['node-1', 'node-2', 'node-3'],
              members,
              threshold: t,
            });
          if (2 * t > n) expect(plan().session.threshold).toBe(t);
          else expect(plan).toThrow(code('FROST_GROUP_CHANGE_UNSAFE'));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('the old quorum signs one transaction that swaps the keys; after it, the new group pays and the old cannot', () => {
    const members = ['node-2', 'node-3', 'node-4', 'node-5'].map((id) => ({ id, key: createTransportKey() }));
    const plan = planNewGroup({
      sessionId: 'reshare-dkg',
      oldGroup: old.group,
      oldNodes: ['node-1', 'node-2', 'node-3'],
      members: members.map((m) => ({ nodeId: m.id, transportKey: toHex(m.key.publicKey) })),
      threshold: 3,
    });
    const secrets = new Map(
      plan.session.members.map((m) => [m.index, members.find((x) => x.id === m.nodeId)!.key.secretKey]),
    );
    const { outputs } = runDkg(plan.session, secrets);
    const fresh = { group: outputs[0]!.group, address: outputs[0]!.address, shares: outputs.map((o) => o.share) };
    expect(fresh.address).not.toBe(old.address);

    // An account whose only signer is the old group key.
    const account = Keypair.random().publicKey();
    const current: SignerConfiguration = {
      account,
      masterWeight: 0,
      thresholds: { low: 1, med: 1, high: 1 },
      signers: [{ key: old.address, weight: 1 }],
    };
    const change = planGroupKeyChange({ current, oldGroup: old.group, newGroup: fresh.group });
    expect(change).toMatchObject({ account, oldKey: old.address, newKey: fresh.address, weight: 1 });
    expect(change.after.signers).toEqual([{ key: fresh.address, weight: 1, node: groupParty(fresh.address) }]);
    const swap = tx(account, change.operations);
    checkGroupKeyChange(swap, change);
    // The old quorum (any 2 of the old 3) signs it; stellar-core's check accepts it against the current signers.
    swap.addSignature(old.address, sign(old.group, [old.shares[0]!, old.shares[2]!], swap.hash()).toString('base64'));
    expect(authorized(swap, current)).toBe(true);
    // Afterwards a payment signed by 3 of the new group passes, one signed by the old group does not.
    const pay = () =>
      tx(account, [
        Operation.payment({ destination: Keypair.random().publicKey(), asset: Asset.native(), amount: '5' }),
      ]);
    const byNew = pay();
    byNew.addSignature(fresh.address, sign(fresh.group, fresh.shares.slice(1), byNew.hash()).toString('base64'));
    expect(authorized(byNew, change.after)).toBe(true);
    const byOld = pay();
    byOld.addSignature(old.address, sign(old.group, old.shares.slice(0, 2), byOld.hash()).toString('base64'));
    expect(authorized(byOld, change.after)).toBe(false);

    // What a reviewing node refuses: anything but exactly that change.
    const [remove, add] = change.operations as [xdr.Operation, xdr.Operation];
    const other = Keypair.random().publicKey();
    const cases: [Transaction, string][] = [
      [tx(other, change.operations), 'source'],
      [tx(account, [add]), 'operations'],
      [
        tx(account, [remove, Operation.setOptions({ signer: { ed25519PublicKey: fresh.address, weight: 2 } })]),
        'operations[1].signer',
      ],
      [tx(account, [add, remove]), 'operations[0].signer'],
      [
        tx(account, [remove, Operation.payment({ destination: other, asset: Asset.native(), amount: '1' })]),
        'operations[1].type',
      ],
      [
        tx(account, [
          remove,
          Operation.setOptions({ signer: { ed25519PublicKey: fresh.address, weight: 1 }, source: other }),
        ]),
        'operations[1].source',
      ],
      [
        tx(account, [
          remove,
          Operation.setOptions({ signer: { ed25519PublicKey: fresh.address, weight: 1 }, highThreshold: 9 }),
        ]),
        'operations[1].highThreshold',
      ],
    ];
    for (const [t, field] of cases) {
      expect(() => checkGroupKeyChange(t, change)).toThrow(code('FROST_GROUP_CHANGE_MISMATCH', { field }));
    }
  });

  it('refuses a change that would lock the account, let one party sign alone or allow disjoint quorums', () => {
    const next = (() => {
      const { session, secrets } = makeSession(3, 2, 'reshare-next');
      return runDkg(session, secrets).outputs[0]!.group;
    })();
    const account = Keypair.random().publicKey();
    const recovery = Keypair.random().publicKey();
    const mixed: SignerConfiguration = {
      account,
      masterWeight: 0,
      thresholds: { low: 2, med: 2, high: 2 },
      signers: [
        { key: old.address, weight: 1 },
        { key: recovery, weight: 1 },
      ],
    };
    // Mixed mode: the group beside a recovery key; the new key keeps the old one's weight.
    expect(planGroupKeyChange({ current: mixed, oldGroup: old.group, newGroup: next }).weight).toBe(1);
    // At weight 2 the group reaches the thresholds alone: that is what a t-of-n group is for, and allowed.
    expect(planGroupKeyChange({ current: mixed, oldGroup: old.group, newGroup: next, weight: 2 }).weight).toBe(2);
    const problems = (p: Parameters<typeof planGroupKeyChange>[0]) => {
      try {
        planGroupKeyChange(p);
      } catch (e) {
        return (e as { details: { problems: { code: string; field: string }[] } }).details.problems;
      }
      throw new Error('expected a refusal');
    };
    // A recovery key that reaches the thresholds alone is a single party.
    expect(
      problems({
        current: { ...mixed, signers: [mixed.signers[0]!, { key: recovery, weight: 2 }] },
        oldGroup: old.group,
        newGroup: next,
      }),
    ).toEqual([expect.objectContaining({ code: 'LOCKOUT_SINGLE_PARTY' })]);
    // HIGH above what is left: locked for ever.
    expect(
      problems({ current: { ...mixed, thresholds: { low: 2, med: 2, high: 3 } }, oldGroup: old.group, newGroup: next }),
    ).toEqual([expect.objectContaining({ code: 'LOCKOUT_UNREACHABLE', field: 'thresholds.high' })]);
    // The group with weight 1 beside three native nodes at 2 of 5: {group, a} and {b, c} are disjoint.
    const natives = ['a', 'b', 'c'].map((n) => ({ key: Keypair.random().publicKey(), weight: 1, node: n }));
    const wide: SignerConfiguration = { ...mixed, signers: [mixed.signers[0]!, ...natives] };
    expect(problems({ current: wide, oldGroup: old.group, newGroup: next }).map((p) => p.code)).toEqual([
      'DISJOINT_QUORUMS',
      'DISJOINT_QUORUMS',
      'DISJOINT_QUORUMS',
    ]);
    expect(
      planGroupKeyChange({ current: wide, oldGroup: old.group, newGroup: next, allowDisjointQuorums: true }).newKey,
    ).toBeTruthy();
    // The old key is not a signer; the new one already is; the old and new are the same group.
    expect(
      problems({ current: { ...mixed, signers: [{ key: recovery, weight: 2 }] }, oldGroup: old.group, newGroup: next }),
    ).toEqual([expect.objectContaining({ code: 'KEY', field: 'oldGroup' })]);
    expect(problems({ current: mixed, oldGroup: old.group, newGroup: old.group })).toEqual([
      expect.objectContaining({ code: 'KEY', field: 'newGroup' }),
    ]);
    expect(() => planGroupKeyChange({ current: mixed, oldGroup: old.group, newGroup: next, weight: 256 })).toThrow(
      code('FROST_OUT_OF_RANGE', { field: 'weight' }),
    );
    expect(() =>
      planGroupKeyChange({ current: { ...mixed, account: 'nope' }, oldGroup: old.group, newGroup: next }),
    ).toThrow(code('FROST_OUT_OF_RANGE', { field: 'current.account' }));
    expect(() =>
      planGroupKeyChange({ current: mixed, oldGroup: { ...old.group, threshold: 1 }, newGroup: next }),
    ).toThrow(code('FROST_OUT_OF_RANGE', { field: 'group.threshold' }));
  });
});
