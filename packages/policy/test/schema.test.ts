import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CosignerError } from '@cosigner/errors/errors';
import { Keypair, StrKey } from '@stellar/stellar-sdk';
import { describe, expect, it } from 'vitest';
import { policyErrors } from '../src/errors.ts';
import { loadPolicy, loadPolicyFile, parsePolicy } from '../src/schema.ts';
import { TESTNET } from './builders.ts';

const OPS = Keypair.random().publicKey();
const ISSUER = Keypair.random().publicKey();
const TOKEN = StrKey.encodeContract(Buffer.alloc(32, 7));

const valid = () => ({
  network: TESTNET,
  accounts: [OPS],
  operations: ['payment', 'invokeHostFunction'],
  assets: [
    { asset: 'native', maxPerTx: '100', velocity: [{ window: '24h', max: '1000' }] },
    { asset: `USDC:${ISSUER}`, maxPerTx: 50, velocity: [{ window: 3600, max: '10.5' }] },
    { asset: TOKEN, velocity: [{ window: '30m', max: '1' }] },
  ],
  contracts: [{ id: TOKEN, functions: [{ name: 'transfer', token: { asset: TOKEN }, maxAmount: '5' }] }],
});

function thrown(f: () => unknown): CosignerError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(CosignerError);
    return e as CosignerError;
  }
  throw new Error('expected a throw');
}

type Doc = Record<string, unknown> & ReturnType<typeof valid>;

describe('loadPolicy: a valid policy', () => {
  it('applies restrictive defaults, converts amounts to stroops and windows to seconds', () => {
    const p = parsePolicy(valid());
    expect(p.document.version).toBe(1);
    expect(p.assets.get('native')).toEqual({
      key: 'native',
      maxPerTx: 1_000_000_000n,
      velocity: [{ windowSeconds: 86_400, max: 10_000_000_000n }],
    });
    expect(p.assets.get(`USDC:${ISSUER}`)?.maxPerTx).toBe(500_000_000n);
    expect(p.assets.get(`USDC:${ISSUER}`)?.velocity[0]).toEqual({ windowSeconds: 3600, max: 105_000_000n });
    expect(p.assets.get(TOKEN)?.velocity[0]?.windowSeconds).toBe(1800);
    expect(p.contracts.get(TOKEN)?.get('transfer')?.maxAmount).toBe(50_000_000n);
    expect(p.contracts.get(TOKEN)?.get('transfer')?.token).toEqual({
      asset: TOKEN,
      decimals: 7,
      from: 0,
      to: 1,
      amount: 2,
    });
    expect(p.destinations.allow).toBeUndefined();
    expect(p.destinations.deny.size).toBe(0);
    expect(p.allowUnboundedOutflows.size).toBe(0);
    expect(p.validity.maxWindowSeconds).toBe(300);
    expect(p.soroban.maxAuthExpirationLedgers).toBe(720);
    expect(p.fees).toEqual({ maxFee: undefined, maxFeePerOp: undefined });
    expect([...p.signerChanges.allowedMasterWeights]).toEqual([0]);
    expect(p.signerChanges.accounts.size).toBe(0);
    expect(p.manualApproval.signerChanges).toBe(false);
  });

  it('is frozen, including its maps and sets', () => {
    const p = parsePolicy(valid());
    expect(Object.isFrozen(p)).toBe(true);
    expect(Object.isFrozen(p.document.assets[0])).toBe(true);
    expect(() => (p.accounts as Set<string>).add(Keypair.random().publicKey())).toThrow(/frozen/);
    expect(() => (p.assets as Map<string, unknown>).delete('native')).toThrow(/frozen/);
    expect(() => (p.assets as Map<string, unknown>).set('x', 1)).toThrow(/frozen/);
    expect(() => (p.operations as Set<string>).clear()).toThrow(/frozen/);
    expect(p.accounts.has(OPS)).toBe(true);
  });

  it('does not modify the caller object', () => {
    const doc = valid();
    const before = JSON.stringify(doc);
    parsePolicy(doc);
    expect(JSON.stringify(doc)).toBe(before);
  });

  it('reads YAML and JSON alike', () => {
    const yaml = `network: "${TESTNET}"\naccounts: [${OPS}]\noperations: [payment]\nassets:\n  - asset: native\n    velocity: [{ window: 1h, max: "5" }]\n`;
    expect(loadPolicy(yaml).assets.get('native')?.velocity[0]?.max).toBe(50_000_000n);
    expect(loadPolicy(JSON.stringify(valid())).accounts.has(OPS)).toBe(true);
  });

  it('loads the documented example policy in production mode', () => {
    const path = fileURLToPath(new URL('../examples/policy.yaml', import.meta.url));
    const p = loadPolicyFile(path, { production: true });
    expect(p.network).toBe(TESTNET);
    expect(p.accounts.size).toBe(2);
    expect(p.assets.get('native')?.maxPerTx).toBe(50_000_000_000n);
    for (const a of p.assets.values()) expect(a.velocity.length).toBeGreaterThan(0);
    expect(p.fees.maxFee).toBeDefined();
    expect(p.fees.maxFeeBump).toBeDefined();
    expect(p.manualApproval.signerChanges).toBe(true);
    // A rotation's new key cannot be listed before it exists: the example allows roster keys, lists none to add.
    expect(p.signerChanges.clusterMembers).toBe(true);
    expect(p.signerChanges.addKeys.size).toBe(0);
    // Every rule in the example carries a comment: the file is documentation.
    expect(readFileSync(path, 'utf8').match(/^\s*#/gm)?.length).toBeGreaterThan(30);
  });
});

describe('loadPolicy: production mode', () => {
  it('refuses a policy without a fee cap per transaction and per fee bump, naming the field', () => {
    const withFees = (fees: Record<string, unknown> | undefined) => {
      const doc = valid() as Record<string, unknown>;
      if (fees === undefined) delete doc.fees;
      else doc.fees = fees;
      return doc;
    };
    for (const [fees, field] of [
      [undefined, 'fees.maxFee'],
      [{ maxFeePerOp: 1000 }, 'fees.maxFee'],
      [{ maxFee: 10_000 }, 'fees.maxFeeBump'],
      [{ maxFeeBump: 10_000 }, 'fees.maxFee'],
    ] as const) {
      expect(() => parsePolicy(withFees(fees))).not.toThrow(); // development mode loads it
      const e = thrown(() => parsePolicy(withFees(fees), { production: true }));
      expect(e.code, JSON.stringify(fees)).toBe('POLICY_NO_FEE_CAP');
      expect(e.message).toContain(field);
      expect(e.details).toMatchObject({ field });
    }
    const ok = parsePolicy(withFees({ maxFee: 10_000, maxFeeBump: '20000' }), { production: true });
    expect(ok.fees).toMatchObject({ maxFee: 10_000n, maxFeeBump: 20_000n });
  });

  it('refuses an allowed asset without velocity limits, naming it', () => {
    const doc = valid();
    doc.assets[1] = { asset: `USDC:${ISSUER}`, maxPerTx: 50 } as (typeof doc.assets)[number];
    expect(parsePolicy(doc).assets.size).toBe(3);
    const e = thrown(() => parsePolicy(doc, { production: true }));
    expect(e.code).toBe('POLICY_NO_VELOCITY_LIMIT');
    expect(e.message).toContain('assets[1]');
    expect(e.details).toMatchObject({ field: 'assets[1].velocity', asset: `USDC:${ISSUER}` });
  });
});

describe('loadPolicy: the bad-config matrix names every invalid field', () => {
  const G = Keypair.random().publicKey();
  const badChecksum = `${OPS.slice(0, 55)}${OPS[55] === 'A' ? 'B' : 'A'}`;
  const cases: [string, (d: Doc) => void, string, RegExp?][] = [
    ['missing network', (d) => delete (d as Partial<Doc>).network, 'network', /required/],
    ['empty network', (d) => (d.network = ''), 'network'],
    ['accounts empty', (d) => (d.accounts = []), 'accounts'],
    ['account with a bad checksum', (d) => (d.accounts = [badChecksum]), 'accounts[0]', /G\.\.\. account/],
    ['account is a secret seed', (d) => (d.accounts = [Keypair.random().secret()]), 'accounts[0]'],
    ['unknown operation type', (d) => (d.operations = ['payment', 'paymnt']), 'operations[1]', /operation type/],
    ['operation "unknown" cannot be allowed', (d) => (d.operations = ['unknown']), 'operations[0]'],
    ['a float amount', (d) => (d.assets[1]!.maxPerTx = 1.5), 'assets[1].maxPerTx', /must be a decimal amount/],
    ['8 decimals', (d) => (d.assets[0]!.maxPerTx = '1.00000001'), 'assets[0].maxPerTx', /must be a decimal amount/],
    ['negative amount', (d) => (d.assets[0]!.maxPerTx = '-1'), 'assets[0].maxPerTx', /must be a decimal amount/],
    ['exponent amount', (d) => (d.assets[0]!.maxPerTx = '1e3'), 'assets[0].maxPerTx'],
    ['amount above int64', (d) => (d.assets[0]!.maxPerTx = '922337203685.4775808'), 'assets[0].maxPerTx'],
    [
      'velocity max not an amount',
      (d) => (d.assets[0]!.velocity = [{ window: '1h', max: 'lots' }]),
      'assets[0].velocity[0].max',
    ],
    [
      'velocity window unit',
      (d) => (d.assets[0]!.velocity = [{ window: '1w', max: '1' }]),
      'assets[0].velocity[0].window',
      /window/,
    ],
    [
      'velocity window zero',
      (d) => (d.assets[0]!.velocity = [{ window: 0, max: '1' }]),
      'assets[0].velocity[0].window',
    ],
    ['asset key malformed', (d) => (d.assets[1]!.asset = 'USDC'), 'assets[1].asset', /CODE:ISSUER/],
    ['asset code too long', (d) => (d.assets[1]!.asset = `ABCDEFGHIJKLM:${ISSUER}`), 'assets[1].asset'],
    ['asset listed twice', (d) => (d.assets[1]!.asset = 'native'), 'assets[1].asset', /twice/],
    [
      'unknown field in an asset',
      (d) => Object.assign(d.assets[0]!, { maxPerDay: '1' }),
      'assets[0].maxPerDay',
      /unknown field/,
    ],
    ['unknown top-level field', (d) => Object.assign(d, { velocity: [] }), 'velocity', /unknown field/],
    ['misspelt rule section', (d) => Object.assign(d, { destination: { deny: [] } }), 'destination', /unknown field/],
    [
      'deny list entry not an address',
      (d) => Object.assign(d, { destinations: { deny: ['bob'] } }),
      'destinations.deny[0]',
    ],
    [
      'allow list entry not an address',
      (d) => Object.assign(d, { destinations: { allow: [G, 'x'] } }),
      'destinations.allow[1]',
    ],
    ['contract id is an account', (d) => (d.contracts[0]!.id = G), 'contracts[0].id', /contract id/],
    ['contract without functions', (d) => (d.contracts[0]!.functions = []), 'contracts[0].functions'],
    [
      'token asset not in assets',
      (d) => (d.contracts[0]!.functions[0]!.token = { asset: 'native2' } as never),
      'contracts[0].functions[0].token.asset',
    ],
    [
      'maxAmount without token',
      (d) => delete (d.contracts[0]!.functions[0] as { token?: unknown }).token,
      'contracts[0].functions[0].token',
      /required/,
    ],
    [
      'function listed twice',
      (d) => d.contracts[0]!.functions.push({ name: 'transfer' } as never),
      'contracts[0].functions[1].name',
      /twice/,
    ],
    [
      'contract listed twice',
      (d) => d.contracts.push({ id: TOKEN, functions: [{ name: 'x' }] } as never),
      'contracts[1].id',
      /twice/,
    ],
    [
      'argument rule without values',
      (d) => Object.assign(d.contracts[0]!.functions[0]!, { args: [{ index: 0, oneOf: [] }] }),
      'contracts[0].functions[0].args[0].oneOf',
    ],
    [
      'recipients not addresses',
      (d) => Object.assign(d.contracts[0]!.functions[0]!, { recipients: ['nobody'] }),
      'contracts[0].functions[0].recipients[0]',
    ],
    ['fees.maxFee negative', (d) => Object.assign(d, { fees: { maxFee: -1 } }), 'fees.maxFee', /stroops/],
    ['fees.maxFee with decimals', (d) => Object.assign(d, { fees: { maxFee: '1.5' } }), 'fees.maxFee', /stroops/],
    [
      'a YAML number too large to be exact',
      (d) => Object.assign(d, { fees: { maxFee: 2 ** 60 } }),
      'fees.maxFee',
      /stroops/,
    ],
    ['fees.maxFeePerOp text', (d) => Object.assign(d, { fees: { maxFeePerOp: 'cheap' } }), 'fees.maxFeePerOp'],
    [
      'soroban resource fee',
      (d) => Object.assign(d, { soroban: { maxResourceFee: '1 XLM' } }),
      'soroban.maxResourceFee',
    ],
    [
      'soroban window zero',
      (d) => Object.assign(d, { soroban: { maxAuthExpirationLedgers: 0 } }),
      'soroban.maxAuthExpirationLedgers',
    ],
    [
      'validity window too long',
      (d) => Object.assign(d, { validity: { maxWindowSeconds: 99_999_999 } }),
      'validity.maxWindowSeconds',
    ],
    [
      'memo required and forbidden',
      (d) => Object.assign(d, { memo: { required: true, forbidden: true } }),
      'memo.forbidden',
    ],
    ['memo type', (d) => Object.assign(d, { memo: { types: ['text', 'emoji'] } }), 'memo.types[1]'],
    ['memo flag not boolean', (d) => Object.assign(d, { memo: { required: 'yes' } }), 'memo.required', /true or false/],
    [
      'signer key malformed',
      (d) => Object.assign(d, { signerChanges: { addKeys: ['Gnope'] } }),
      'signerChanges.addKeys[0]',
      /signer key/,
    ],
    [
      'signer account malformed',
      (d) => Object.assign(d, { signerChanges: { accounts: ['x'] } }),
      'signerChanges.accounts[0]',
    ],
    [
      'threshold above 255',
      (d) => Object.assign(d, { signerChanges: { minThresholds: { medium: 256 } } }),
      'signerChanges.minThresholds.medium',
    ],
    [
      'manual amount',
      (d) => Object.assign(d, { manualApproval: { amountAbove: [{ asset: 'native', amount: '1,000' }] } }),
      'manualApproval.amountAbove[0].amount',
    ],
    [
      'manual asset',
      (d) => Object.assign(d, { manualApproval: { amountAbove: [{ asset: 'gold', amount: '1' }] } }),
      'manualApproval.amountAbove[0].asset',
    ],
    [
      'manual operation',
      (d) => Object.assign(d, { manualApproval: { operations: ['pay'] } }),
      'manualApproval.operations[0]',
    ],
    [
      'unbounded outflow kind',
      (d) => Object.assign(d, { allowUnboundedOutflows: ['payment'] }),
      'allowUnboundedOutflows[0]',
    ],
    ['version 2', (d) => Object.assign(d, { version: 2 }), 'version'],
  ];

  for (const [name, mutate, field, problem] of cases) {
    it(`${name} -> ${field}`, () => {
      const doc = structuredClone(valid()) as Doc;
      mutate(doc);
      const e = thrown(() => parsePolicy(doc));
      expect(e.code).toBe('POLICY_INVALID');
      expect(e.details?.field).toBe(field);
      expect(e.message).toContain(`${field}:`);
      if (problem) expect(e.message).toMatch(problem);
    });
  }

  it('reports a union failure once, with the rule sentence rather than one line per union branch', () => {
    const doc = structuredClone(valid()) as Doc;
    doc.operations = ['nope'];
    const e = thrown(() => parsePolicy(doc));
    expect(e.details?.problems).toEqual([
      { field: 'operations[0]', problem: 'must be a Stellar operation type (e.g. payment, setOptions)' },
    ]);
  });
});

describe('loadPolicy: bad YAML and bad files', () => {
  it.each([
    ['unclosed flow sequence', 'accounts: [', /line 1/],
    ['a key written twice', `network: a\nnetwork: b\n`, /not valid YAML/],
    ['tab indentation', 'a:\n\t- b', /not valid YAML/],
  ])('%s', (_name, text, message) => {
    const e = thrown(() => loadPolicy(text));
    expect(e.code).toBe('POLICY_BAD_YAML');
    expect(e.message).toMatch(message);
  });

  it.each([
    ['a scalar', '42'],
    ['a list', '- a\n- b'],
    ['empty', ''],
  ])('refuses %s at the top level', (_name, text) => {
    expect(thrown(() => loadPolicy(text)).code).toBe('POLICY_BAD_YAML');
  });

  it('refuses a file it cannot read', () => {
    const e = thrown(() => loadPolicyFile(join(tmpdir(), 'no-such-dir-policy', 'policy.yaml')));
    expect(e.code).toBe('POLICY_UNREADABLE');
    expect(policyErrors.is(e, 'POLICY_UNREADABLE')).toBe(true);
  });

  it('loads a file written to disk', () => {
    const dir = mkdtempSync(join(tmpdir(), 'policy-'));
    const path = join(dir, 'policy.yaml');
    writeFileSync(path, JSON.stringify(valid()));
    expect(loadPolicyFile(path).accounts.has(OPS)).toBe(true);
  });
});
