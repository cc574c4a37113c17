import type { Account, PrincipalRole } from './accounts.ts';
import { awsError } from './aws-errors.ts';
import { nodeSealingAllows } from './node-sealing.ts';

/**
 * Key policies: the subset of the IAM policy language a KMS key policy needs here. Statements are Allow or
 * Deny, name principals by IAM ARN (`{"AWS": [...]}`), the account root (`arn:aws:iam::<id>:root` or the bare
 * id, which delegates to the caller's identity policy) or `*`, and list actions with `*`/`?` wildcards.
 * Evaluation follows the IAM logic (docs: "Policy evaluation logic"): an explicit Deny wins, then an Allow,
 * else implicit deny. `Condition`, `NotAction` and `NotPrincipal` are refused rather than ignored: silently
 * dropping a condition would grant more than the author meant.
 */
export interface PolicyStatement {
  effect: 'Allow' | 'Deny';
  /** `'*'` matches every authenticated principal. */
  principals: '*' | string[];
  actions: string[];
}

/** Who is calling: the principal and the account it belongs to. */
export interface Caller {
  accountId: string;
  arn: string;
  role: PrincipalRole;
  accessKeyId: string;
}

/** Actions a node principal's identity policy grants (the least-privilege role in docs/operations). */
export const NODE_ACTIONS = ['kms:Sign', 'kms:Verify', 'kms:GetPublicKey', 'kms:DescribeKey'] as const;

function malformed(why: string): Error {
  return awsError('MalformedPolicyDocumentException', `The policy document is malformed: ${why}.`);
}

function stringList(v: unknown, what: string): string[] {
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length === 0 || list.some((x) => typeof x !== 'string' || x.length === 0)) {
    throw malformed(`${what} must be a string or a non-empty list of strings`);
  }
  return list as string[];
}

/** Parse a key policy document. @throws MalformedPolicyDocumentException */
export function parsePolicy(text: string): PolicyStatement[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw malformed('it is not JSON');
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw malformed('it is not a JSON object');
  const d = doc as Record<string, unknown>;
  if (d.Version !== undefined && d.Version !== '2012-10-17' && d.Version !== '2008-10-17') {
    throw malformed('Version must be 2012-10-17');
  }
  const raw = Array.isArray(d.Statement) ? d.Statement : d.Statement === undefined ? [] : [d.Statement];
  if (raw.length === 0) throw malformed('it has no Statement');
  return raw.map((s): PolicyStatement => {
    if (typeof s !== 'object' || s === null || Array.isArray(s)) throw malformed('a Statement is not an object');
    const st = s as Record<string, unknown>;
    for (const k of ['Condition', 'NotAction', 'NotPrincipal', 'NotResource']) {
      if (k in st) throw malformed(`${k} is not supported by this emulator`);
    }
    if (st.Effect !== 'Allow' && st.Effect !== 'Deny') throw malformed('Effect must be Allow or Deny');
    const actions = stringList(st.Action, 'Action');
    for (const a of actions) {
      if (a !== '*' && !/^kms:[A-Za-z*?]+$/i.test(a)) throw malformed(`action ${a} is not a kms: action`);
    }
    let principals: '*' | string[];
    if (st.Principal === '*') principals = '*';
    else if (typeof st.Principal === 'object' && st.Principal !== null && !Array.isArray(st.Principal)) {
      const p = st.Principal as Record<string, unknown>;
      // Service principals never call the emulator; keep them out of the match list.
      if (p.AWS === undefined && p.Service === undefined) throw malformed('Principal must name AWS principals');
      const aws = p.AWS === undefined ? [] : stringList(p.AWS, 'Principal.AWS');
      if (p.Service !== undefined) stringList(p.Service, 'Principal.Service');
      principals = aws.includes('*') ? '*' : aws;
    } else throw malformed('Principal is missing');
    return { effect: st.Effect, principals, actions };
  });
}

// Compiled action patterns: every call evaluates its key's policy, whose patterns are few and fixed. Bounded
// (patterns come from key policies an admin writes), emptied when full.
const PATTERNS_KEPT = 1024;
const compiled = new Map<string, RegExp>();

/** IAM action match: case-insensitive, `*` any run, `?` one character. */
export function actionMatches(pattern: string, action: string): boolean {
  if (pattern === '*') return true;
  let re = compiled.get(pattern);
  if (re === undefined) {
    const source = pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.');
    re = new RegExp(`^${source}$`, 'i');
    if (compiled.size >= PATTERNS_KEPT) compiled.clear();
    compiled.set(pattern, re);
  }
  return re.test(action);
}

/** What the caller's own (identity) policy allows: an admin everything, a node NODE_ACTIONS and sealing. */
export function identityAllows(role: PrincipalRole, action: string): boolean {
  return role === 'admin' || (NODE_ACTIONS as readonly string[]).includes(action) || nodeSealingAllows(action);
}

type Match = 'direct' | 'account' | undefined;

function principalMatch(principals: '*' | string[], caller: Caller): Match {
  if (principals === '*') return 'direct';
  for (const p of principals) {
    if (p === caller.arn) return 'direct';
    if (p === caller.accountId || p === `arn:aws:iam::${caller.accountId}:root`) return 'account';
  }
  return undefined;
}

/**
 * May `caller` perform `action` on a key of `keyAccountId` with this policy? A principal named directly in
 * the same account needs nothing else; a grant to the account root delegates to the caller's identity policy;
 * a principal of another account also needs its own identity policy to allow the action (AWS KMS developer
 * guide, "Allowing users in other accounts to use a KMS key").
 */
export function isAuthorized(policy: PolicyStatement[], caller: Caller, keyAccountId: string, action: string): boolean {
  let allowed = false;
  for (const st of policy) {
    const match = principalMatch(st.principals, caller);
    if (match === undefined || !st.actions.some((a) => actionMatches(a, action))) continue;
    if (st.effect === 'Deny') return false;
    const sameAccount = caller.accountId === keyAccountId;
    if (match === 'direct' && sameAccount) allowed = true;
    else if (identityAllows(caller.role, action)) allowed = true;
  }
  return allowed;
}

/**
 * What the default key policy lets an account's admin principals do with a signing key: the
 * `KeyAdministration` statement of docs/operations/aws-kms.md (manage, disable, delete, re-policy, alias, tag),
 * plus reading the public key, which `cosigner keys create` reports (it is public: it is the account signer).
 * No `kms:Sign`, `kms:Verify`, `kms:CreateGrant` and no wildcard: an administrator can disable or delete the
 * key but cannot make it sign (separation of duties).
 */
export const ADMIN_KEY_ACTIONS = [
  'kms:DescribeKey',
  'kms:GetPublicKey',
  'kms:GetKeyPolicy',
  'kms:PutKeyPolicy',
  'kms:EnableKey',
  'kms:DisableKey',
  'kms:ScheduleKeyDeletion',
  'kms:CancelKeyDeletion',
  'kms:TagResource',
  'kms:UntagResource',
  'kms:CreateAlias',
  'kms:UpdateAlias',
  'kms:DeleteAlias',
  'kms:ListResourceTags',
] as const;

/** Data-key actions an admin may use on a symmetric (ENCRYPT_DECRYPT) key, which no node signs with. */
const ADMIN_DATA_ACTIONS = ['kms:Encrypt', 'kms:Decrypt', 'kms:GenerateDataKey'] as const;

/**
 * The default key policy of a key created in `account`, the least-privilege split that production documents
 * (docs/operations/aws-kms.md): its admin principals manage the key (ADMIN_KEY_ACTIONS), its node principals
 * may only sign with it and read it (NODE_ACTIONS), nobody else anything (no account-root delegation, no other
 * account). A symmetric key's admins may also encrypt and decrypt with it.
 */
export function defaultPolicy(account: Account, keyUsage: 'SIGN_VERIFY' | 'ENCRYPT_DECRYPT' = 'SIGN_VERIFY'): string {
  const admins = account.principals.filter((p) => p.role === 'admin').map((p) => p.arn);
  const nodes = account.principals.filter((p) => p.role === 'node').map((p) => p.arn);
  const statements: Record<string, unknown>[] = [
    {
      Sid: 'KeyAdministration',
      Effect: 'Allow',
      Principal: { AWS: admins },
      Action: keyUsage === 'ENCRYPT_DECRYPT' ? [...ADMIN_KEY_ACTIONS, ...ADMIN_DATA_ACTIONS] : [...ADMIN_KEY_ACTIONS],
      Resource: '*',
    },
  ];
  if (nodes.length > 0) {
    statements.push({
      Sid: 'NodeSigns',
      Effect: 'Allow',
      Principal: { AWS: nodes },
      Action: [...NODE_ACTIONS],
      Resource: '*',
    });
  }
  return JSON.stringify({ Version: '2012-10-17', Id: 'cosigner-default', Statement: statements }, null, 2);
}
