/**
 * FROST signing cost per role, in one process, against native 2-of-3 multisig. Run: `pnpm bench frost` (or
 * `pnpm exec tsx bench/frost.bench.ts`). Prints figures and writes bench/results/frost.json. Never run by tests.
 *
 * Per signature of a 32-byte transaction hash, the CPU time (process.cpuUsage, user + system) of each role:
 * - node round 1: `commitNonces` at each of the t signers (two nonces and their commitments, RFC 9591 5.1);
 * - node round 2: `signShare` at each of the t signers (the commitment list checked once, every point subgroup-
 *   checked; its own commitment derived again from the nonces; binding factors, group commitment, Lagrange
 *   coefficient, the share, RFC 9591 5.2);
 * - coordinator: `aggregate` (the commitment list checks, the sum, then plain Ed25519 verification under
 *   stellar-core's rules against the group key: what the network will check; shares are verified only when it
 *   fails);
 * - native 2-of-3, the reference: two node:crypto Ed25519 signs (the nodes) and two verifications under
 *   stellar-core's rules (the coordinator), as the cluster does today.
 * With the durable nonce discipline (signer.ts over a SQLite nonce store, synchronous=FULL), the 2-of-3 node
 * rounds are measured a second time: the record before the commitment leaves and the mark before the share
 * leaves are part of a node's real cost (and a node there compares the list with the commitment it holds, and
 * does not subgroup-check its own nonce x G points again).
 *
 * Groups come from the trusted-dealer key generation of @noble/curves (`trustedDealer`): the shares and public data
 * have the same shape and size as a DKG's, and 14-of-20 key generation would take minutes; key generation is not
 * what is measured. Settings: BENCH_N (signatures per group, default 200; 14-of-20 uses BENCH_N / 4).
 */
import { createPrivateKey, createPublicKey, sign as cryptoSign, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteNonceStore } from '@cosigner/frost/nonce-store';
import { aggregate, commitNonces, signShare } from '@cosigner/frost/rounds';
import { FrostSigner } from '@cosigner/frost/signer';
import { checkGroup, frost, type GroupPublic, identifierOf, type KeyShare, verifyEd25519 } from '@cosigner/frost/suite';
import { verifyEd25519 as stellarVerify } from '@cosigner/stellar/verify';
import { Keypair } from '@stellar/stellar-sdk';

const N = Number(process.env.BENCH_N ?? 200);

/** A t-of-n group from the dealer, in the package's JSON-safe form, checked like one from the wire. */
function dealerGroup(n: number, t: number): { group: GroupPublic; shares: KeyShare[] } {
  const ids = Array.from({ length: n }, (_, i) => identifierOf(i + 1));
  const d = frost.trustedDealer({ min: t, max: n }, ids);
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
  const group = checkGroup({
    threshold: t,
    participants: ids.map((_, i) => i + 1),
    groupPublicKey: hex(d.public.commitments[0]!),
    commitments: d.public.commitments.map(hex),
    verifyingShares: Object.fromEntries(ids.map((id, i) => [String(i + 1), hex(d.public.verifyingShares[id]!)])),
  });
  return { group, shares: ids.map((id, i) => ({ index: i + 1, signingShare: d.secretShares[id]!.signingShare })) };
}

/** CPU milliseconds (user + system) that `fn` takes. */
function cpu(fn: () => void): number {
  const before = process.cpuUsage();
  fn();
  const d = process.cpuUsage(before);
  return (d.user + d.system) / 1000;
}

interface Roles {
  round1: number;
  round2: number;
  aggregate: number;
  total: number;
  /** p50 of the wall time of one whole signature (both rounds at every signer, then aggregate). */
  wallP50: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Both rounds and aggregation, `n` times, with the first t shares; CPU ms per signature per role. */
function frostRoles(group: GroupPublic, shares: KeyShare[], n: number): Roles {
  const signers = shares.slice(0, group.threshold);
  const key = Buffer.from(group.groupPublicKey, 'hex');
  let r1 = 0;
  let r2 = 0;
  let agg = 0;
  const walls: number[] = [];
  for (let i = 0; i < n + 5; i++) {
    const message = randomBytes(32);
    const start = performance.now();
    let commits: ReturnType<typeof commitNonces>[] = [];
    const c1 = cpu(() => {
      commits = signers.map((s) => commitNonces(s));
    });
    const commitments = commits.map((c) => c.commitment);
    let sigShares: Record<string, Uint8Array> = {};
    const c2 = cpu(() => {
      sigShares = Object.fromEntries(
        signers.map((s, j) => [String(s.index), signShare(group, s, commits[j]!.nonces, commitments, message)]),
      );
    });
    let signature: Uint8Array = new Uint8Array();
    const c3 = cpu(() => {
      signature = aggregate(group, commitments, message, sigShares);
    });
    const wall = performance.now() - start;
    if (!verifyEd25519(key, message, signature)) throw new Error('bench: the aggregate does not verify');
    if (i < 5) continue; // warm-up
    r1 += c1;
    r2 += c2;
    agg += c3;
    walls.push(wall);
  }
  return { round1: r1 / n, round2: r2 / n, aggregate: agg / n, total: (r1 + r2 + agg) / n, wallP50: median(walls) };
}

/** The same 2-of-3 through FrostSigner and its SQLite nonce stores (one per node, in a temporary directory). */
function durableRoles(group: GroupPublic, shares: KeyShare[], n: number): Roles {
  const dir = mkdtempSync(join(tmpdir(), 'frost-bench-'));
  const stores = shares.slice(0, group.threshold).map((s) => SqliteNonceStore.open(join(dir, `${s.index}.sqlite`)));
  const signers = stores.map((store, j) => new FrostSigner({ group, share: shares[j]!, store }));
  let r1 = 0;
  let r2 = 0;
  let agg = 0;
  const walls: number[] = [];
  try {
    for (let i = 0; i < n + 5; i++) {
      const message = randomBytes(32);
      const round = `bench-${i}`;
      const start = performance.now();
      let commitments: ReturnType<FrostSigner['commit']>[] = [];
      const c1 = cpu(() => {
        commitments = signers.map((s) => s.commit(round));
      });
      let sigShares: Record<string, Uint8Array> = {};
      const c2 = cpu(() => {
        sigShares = Object.fromEntries(signers.map((s) => [String(s.index), s.sign(round, commitments, message)]));
      });
      const c3 = cpu(() => {
        aggregate(group, commitments, message, sigShares);
      });
      const wall = performance.now() - start;
      if (i < 5) continue;
      r1 += c1;
      r2 += c2;
      agg += c3;
      walls.push(wall);
    }
  } finally {
    for (const s of signers) s.close();
    for (const s of stores) s.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return { round1: r1 / n, round2: r2 / n, aggregate: agg / n, total: (r1 + r2 + agg) / n, wallP50: median(walls) };
}

/** Native 2-of-3: two nodes sign with node:crypto, the coordinator verifies both under stellar-core's rules. */
function nativeRoles(n: number): { sign: number; verify: number; total: number; wallP50: number } {
  const nodes = [Keypair.random(), Keypair.random()].map((kp) => {
    const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), kp.rawSecretKey()]);
    return { key: createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }), public: kp.rawPublicKey() };
  });
  createPublicKey(nodes[0]!.key); // the KeyObject path is warm before timing
  let s = 0;
  let v = 0;
  const walls: number[] = [];
  for (let i = 0; i < n + 5; i++) {
    const message = randomBytes(32);
    const start = performance.now();
    let sigs: Buffer[] = [];
    const c1 = cpu(() => {
      sigs = nodes.map((node) => cryptoSign(null, message, node.key));
    });
    const c2 = cpu(() => {
      for (let j = 0; j < nodes.length; j++) {
        if (!stellarVerify(nodes[j]!.public, message, sigs[j]!)) throw new Error('bench: native signature invalid');
      }
    });
    const wall = performance.now() - start;
    if (i < 5) continue;
    s += c1;
    v += c2;
    walls.push(wall);
  }
  return { sign: s / n, verify: v / n, total: (s + v) / n, wallP50: median(walls) };
}

const started = new Date().toISOString();
const load = loadavg()[0]!;
const g3 = dealerGroup(3, 2);
const g20 = dealerGroup(20, 14);
const native = nativeRoles(N * 5);
const frost3 = frostRoles(g3.group, g3.shares, N);
const durable3 = durableRoles(g3.group, g3.shares, N);
const frost20 = frostRoles(g20.group, g20.shares, Math.max(10, Math.floor(N / 4)));

const r = (x: number) => Math.round(x * 1000) / 1000;
const ratio = (x: number) => Math.round((x / native.total) * 10) / 10;
const results = {
  started,
  node: process.version,
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  loadavg1: r(load),
  samples: { native: N * 5, frost2of3: N, frost14of20: Math.max(10, Math.floor(N / 4)) },
  cpuMsPerSignature: {
    native2of3: { nodesSign: r(native.sign), coordinatorVerify: r(native.verify), total: r(native.total) },
    frost2of3: {
      nodeRound1: r(frost3.round1),
      nodeRound2: r(frost3.round2),
      coordinatorAggregate: r(frost3.aggregate),
      total: r(frost3.total),
    },
    frost2of3Durable: {
      nodeRound1: r(durable3.round1),
      nodeRound2: r(durable3.round2),
      coordinatorAggregate: r(durable3.aggregate),
      total: r(durable3.total),
    },
    frost14of20: {
      nodeRound1: r(frost20.round1),
      nodeRound2: r(frost20.round2),
      coordinatorAggregate: r(frost20.aggregate),
      total: r(frost20.total),
    },
  },
  wallP50Ms: {
    native2of3: r(native.wallP50),
    frost2of3: r(frost3.wallP50),
    frost2of3Durable: r(durable3.wallP50),
    frost14of20: r(frost20.wallP50),
  },
  ratiosToNative2of3: {
    frost2of3: ratio(frost3.total),
    frost2of3Durable: ratio(durable3.total),
    frost14of20: ratio(frost20.total),
  },
};

console.log(
  `frost bench on ${results.cpu} (${results.cores} cores), node ${results.node}, loadavg ${results.loadavg1}`,
);
console.log('CPU ms per signature (all signers of a role summed; per signer: divide by t)');
const row = (
  label: string,
  x: { nodeRound1: number; nodeRound2: number; coordinatorAggregate: number; total: number },
  t: number,
) =>
  console.log(
    `  ${label.padEnd(22)} round 1 ${x.nodeRound1.toFixed(3)} (${(x.nodeRound1 / t).toFixed(3)} per node)  round 2 ${x.nodeRound2.toFixed(3)} (${(x.nodeRound2 / t).toFixed(3)} per node)  aggregate ${x.coordinatorAggregate.toFixed(3)}  total ${x.total.toFixed(3)}`,
  );
const c = results.cpuMsPerSignature;
console.log(
  `  ${'native 2-of-3'.padEnd(22)} nodes sign ${c.native2of3.nodesSign.toFixed(3)} (2 signs)  coordinator verify ${c.native2of3.coordinatorVerify.toFixed(3)} (2 verifies)  total ${c.native2of3.total.toFixed(3)}`,
);
row('FROST 2-of-3', c.frost2of3, 2);
row('FROST 2-of-3 durable', c.frost2of3Durable, 2);
row('FROST 14-of-20', c.frost14of20, 14);
console.log(
  `wall p50 per signature, one process: native ${results.wallP50Ms.native2of3} ms, FROST 2-of-3 ${results.wallP50Ms.frost2of3} ms (durable ${results.wallP50Ms.frost2of3Durable}), 14-of-20 ${results.wallP50Ms.frost14of20} ms`,
);
console.log(
  `total CPU / native 2-of-3: FROST 2-of-3 ${results.ratiosToNative2of3.frost2of3}x, durable ${results.ratiosToNative2of3.frost2of3Durable}x, 14-of-20 ${results.ratiosToNative2of3.frost14of20}x`,
);
const out = new URL('./results/frost.json', import.meta.url);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
console.log(`wrote ${out.pathname}`);
