import { type Keypair, Operation } from '@stellar/stellar-sdk';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkAuth } from '../src/quorum.ts';
import { selectMinimalSignatures } from '../src/sigset.ts';
import type { AccountAuth, AuthCheckResult, DecoratedSig } from '../src/types.ts';
import { account, accountsMap, buildTx, decode, fastSign, newKeys, pay } from './helpers.ts';

/*
 * Property tests against a brute-force reference.
 *
 * The reference is an abstract model of stellar-core's SignatureChecker (src/transactions/SignatureChecker.cpp)
 * and TransactionFrame's check order, over signer ids and weights only: no crypto, no hints. It is written apart
 * from src/quorum.ts so that the two can disagree.
 */

// Key pool: 0 = account X (source), 1 = account Y (op source), 2..5 = added signers.
const KEYS = newKeys(6);
const key = (i: number) => KEYS[i]!;

interface AccountGen {
  masterWeight: number;
  low: number;
  med: number;
  high: number;
  signers: { k: number; weight: number }[];
}
type OpKind = 'pay' | 'bump' | 'setSigner';
interface Scenario {
  x: AccountGen;
  y: AccountGen;
  ops: { kind: OpKind; onY: boolean }[];
}

const accountGen = fc.record({
  masterWeight: fc.nat(3),
  low: fc.nat(4),
  med: fc.nat(4),
  high: fc.nat(4),
  signers: fc.uniqueArray(
    fc.record({
      k: fc.integer({ min: 2, max: 5 }),
      weight: fc.oneof(fc.integer({ min: 1, max: 3 }), fc.constant(300)),
    }),
    {
      selector: (s) => s.k,
      maxLength: 4,
    },
  ),
});
const scenarioGen: fc.Arbitrary<Scenario> = fc.record({
  x: accountGen,
  y: accountGen,
  ops: fc.array(fc.record({ kind: fc.constantFrom<OpKind>('pay', 'bump', 'setSigner'), onY: fc.boolean() }), {
    minLength: 1,
    maxLength: 3,
  }),
});

function toAuth(owner: Keypair, a: AccountGen): AccountAuth {
  return account(owner, {
    masterWeight: a.masterWeight,
    thresholds: { low: a.low, medium: a.med, high: a.high },
    signers: a.signers.map((s) => ({ key: key(s.k).publicKey(), weight: s.weight })),
  });
}

const LEVEL: Record<OpKind, 'low' | 'med' | 'high'> = { pay: 'med', bump: 'low', setSigner: 'high' };

function build(s: Scenario) {
  const ops = s.ops.map((o) => {
    const source = o.onY ? key(1).publicKey() : undefined;
    if (o.kind === 'pay') return pay(key(5).publicKey(), source);
    if (o.kind === 'bump') return Operation.bumpSequence({ bumpTo: '999', source });
    return Operation.setOptions({ signer: { ed25519PublicKey: key(4).publicKey(), weight: 1 }, source });
  });
  const d = decode(buildTx({ source: key(0).publicKey(), ops }));
  const accounts = accountsMap(toAuth(key(0), s.x), toAuth(key(1), s.y));
  return { d, accounts };
}

/** A signature in the abstract model: whose key, and whether it verifies. */
interface AbstractSig {
  k: number;
  good: boolean;
}

/** The reference: core's checker over signer ids. Returns the same shape as checkAuth (code + opIndex). */
function reference(s: Scenario, sigs: AbstractSig[]): { code: string; opIndex?: number } {
  const signersOf = (owner: number, a: AccountGen) => [
    ...(a.masterWeight > 0 ? [{ k: owner, w: a.masterWeight }] : []),
    ...a.signers.map((x) => ({ k: x.k, w: Math.min(255, x.weight) })),
  ];
  const used = sigs.map(() => false);
  const check = (signers: { k: number; w: number }[], needed: number): boolean => {
    const list = [...signers];
    let total = 0;
    for (let i = 0; i < sigs.length; i++) {
      const sig = sigs[i]!;
      if (!sig.good) continue;
      const at = list.findIndex((x) => x.k === sig.k);
      if (at < 0) continue;
      used[i] = true;
      total += list[at]!.w;
      if (total >= needed) return true;
      list.splice(at, 1);
    }
    return false;
  };
  if (sigs.length > 20) return { code: 'txBAD_AUTH' };
  if (!check(signersOf(0, s.x), s.x.low)) return { code: 'txBAD_AUTH' };
  for (const [i, op] of s.ops.entries()) {
    const a = op.onY ? s.y : s.x;
    if (!check(signersOf(op.onY ? 1 : 0, a), a[LEVEL[op.kind]])) return { code: 'txFAILED', opIndex: i };
  }
  if (used.some((u) => !u)) return { code: 'txBAD_AUTH_EXTRA' };
  return { code: 'ok' };
}

function shape(r: AuthCheckResult): { code: string; opIndex?: number } {
  if (r.ok) return { code: 'ok' };
  return r.code === 'txFAILED' ? { code: r.code, opIndex: r.opIndex } : { code: r.code };
}

function realSigs(hash: Buffer, sigs: AbstractSig[]): DecoratedSig[] {
  return sigs.map((s) => ({
    hint: Buffer.from(key(s.k).signatureHint()),
    signature: fastSign(key(s.k), s.good ? hash : Buffer.from('some other message')),
  }));
}

function permutations<T>(xs: T[]): T[][] {
  if (xs.length <= 1) return [xs];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p]));
}

function subsets<T>(xs: T[]): T[][] {
  return xs.reduce<T[][]>((acc, x) => acc.concat(acc.map((s) => [...s, x])), [[]]);
}

const sigsGen = fc.array(
  fc.record({
    k: fc.nat(5),
    good: fc.oneof({ weight: 9, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  }),
  {
    maxLength: 6,
  },
);

describe('property: checkAuth equals the brute-force model of core', () => {
  it('same verdict (code and opIndex) for random accounts, operations and signature lists', () => {
    fc.assert(
      fc.property(scenarioGen, sigsGen, (s, sigs) => {
        const { d, accounts } = build(s);
        expect(shape(checkAuth(d, accounts, realSigs(d.hash, sigs)))).toEqual(reference(s, sigs));
      }),
      { numRuns: 150 },
    );
  });
});

describe('property: selectMinimalSignatures against exhaustive search', () => {
  it('finds the fewest signatures any order of any subset could pass with, or null when none can', () => {
    fc.assert(
      fc.property(
        scenarioGen,
        fc.uniqueArray(fc.nat(5), { maxLength: 5 }),
        fc.array(fc.nat(5), { maxLength: 2 }),
        (s, keys, badOnes) => {
          const { d, accounts } = build(s);
          const candidates = [
            ...badOnes.map((k) => ({
              publicKey: key(k).publicKey(),
              signature: Buffer.from(key(k).sign(Buffer.from('x'))),
            })),
            ...keys.map((k) => ({ publicKey: key(k).publicKey(), signature: fastSign(key(k), d.hash) })),
          ];
          const copy = candidates.map((c) => ({ ...c }));
          const sel = selectMinimalSignatures(d, accounts, candidates);
          expect(candidates).toEqual(copy);

          // Exhaustive: the smallest subset of good keys that some order makes the model accept.
          let best: number | null = null;
          for (const sub of subsets(keys)) {
            if (best !== null && sub.length >= best) continue;
            const ok = permutations(sub).some(
              (p) =>
                reference(
                  s,
                  p.map((k) => ({ k, good: true })),
                ).code === 'ok',
            );
            if (ok) best = sub.length;
          }
          if (best === null) {
            expect(sel).toBeNull();
            return;
          }
          expect(sel).not.toBeNull();
          expect(sel!.length).toBe(best);
          expect(checkAuth(d, accounts, sel!)).toEqual({ ok: true });
          // Minimal: no single signature can be dropped.
          for (let i = 0; i < sel!.length; i++)
            expect(
              checkAuth(
                d,
                accounts,
                sel!.filter((_, j) => j !== i),
              ).ok,
            ).toBe(false);
          // Safe in any order (core checks signatures against signers greedily): every permutation passes the model.
          const selectedKeys = sel!.map((g) => KEYS.findIndex((k) => Buffer.from(k.signatureHint()).equals(g.hint)));
          for (const p of permutations(selectedKeys))
            expect(
              reference(
                s,
                p.map((k) => ({ k, good: true })),
              ).code,
            ).toBe('ok');
        },
      ),
      { numRuns: 150 },
    );
  });
});
