import { describe, expect, it } from 'vitest';
import { createTransportKey } from '../src/channel.ts';
import { toHex } from '../src/input.ts';
import { planNewGroup, planNewMembership } from '../src/reshare.ts';
import { makeSession, runDkg } from './helpers.ts';

const code = (c: string, details?: Record<string, unknown>) =>
  expect.objectContaining(details ? { code: c, details: expect.objectContaining(details) } : { code: c });

const old = (() => {
  const { session, secrets } = makeSession(3, 2, 'membership-old');
  return runDkg(session, secrets).outputs[0]!.group;
})();
const oldNodes = ['node-1', 'node-2', 'node-3'];

describe('planNewMembership: the new-group checks an operator runs before the nodes make their transport keys', () => {
  it('numbers the members as planNewGroup does and names who joins, leaves and stays', () => {
    const members = ['node-5', 'node-2', 'node-4', 'node-3'];
    const plan = planNewMembership({ oldGroup: old, oldNodes, members, threshold: 3 });
    expect(plan).toEqual({
      participants: ['node-2', 'node-3', 'node-4', 'node-5'],
      threshold: 3,
      joining: ['node-4', 'node-5'],
      leaving: ['node-1'],
      staying: ['node-2', 'node-3'],
    });
    const full = planNewGroup({
      sessionId: 's',
      oldGroup: old,
      oldNodes,
      members: members.map((nodeId) => ({ nodeId, transportKey: toHex(createTransportKey().publicKey) })),
      threshold: 3,
    });
    expect(full.session.members.map((m) => m.nodeId)).toEqual(plan.participants);
    expect([full.joining, full.leaving, full.staying]).toEqual([plan.joining, plan.leaving, plan.staying]);
  });

  it('refuses what planNewGroup refuses, naming the field', () => {
    const base = { oldGroup: old, oldNodes, members: ['node-1', 'node-2', 'node-4'] };
    expect(() =>
      planNewMembership({ ...base, members: ['node-1', 'node-2', 'node-3', 'node-4'], threshold: 2 }),
    ).toThrow(
      code('FROST_GROUP_CHANGE_UNSAFE', { problems: [expect.objectContaining({ code: 'GROUP_DISJOINT_QUORUMS' })] }),
    );
    expect(
      planNewMembership({
        ...base,
        members: ['node-1', 'node-2', 'node-3', 'node-4'],
        threshold: 2,
        allowDisjointQuorums: true,
      }).threshold,
    ).toBe(2);
    expect(() => planNewMembership({ ...base, members: oldNodes, threshold: 2 })).toThrow(
      code('FROST_OUT_OF_RANGE', { field: 'members' }),
    );
    expect(planNewMembership({ ...base, members: oldNodes, threshold: 3 }).joining).toEqual([]);
    expect(() => planNewMembership({ ...base, oldNodes: ['node-1', 'node-1', 'node-3'], threshold: 2 })).toThrow(
      code('FROST_OUT_OF_RANGE', { field: 'oldNodes' }),
    );
    expect(() => planNewMembership({ ...base, members: ['node-1', 'node-1', 'node-2'], threshold: 2 })).toThrow(
      code('FROST_OUT_OF_RANGE', { field: 'members' }),
    );
    expect(() => planNewMembership({ ...base, members: ['node-1'], threshold: 2 })).toThrow(
      code('FROST_OUT_OF_RANGE', { field: 'members' }),
    );
    expect(() =>
      planNewMembership({ ...base, members: Array.from({ length: 256 }, (_, i) => `n${i}`), threshold: 200 }),
    ).toThrow(code('FROST_OUT_OF_RANGE', { field: 'members' }));
    expect(() => planNewMembership({ ...base, threshold: 4 })).toThrow(
      code('FROST_OUT_OF_RANGE', { field: 'threshold' }),
    );
    expect(() => planNewMembership({ ...base, members: ['bad id', 'node-2'], threshold: 2 })).toThrow(
      code('FROST_OUT_OF_RANGE', { field: 'members[0]' }),
    );
  });
});
