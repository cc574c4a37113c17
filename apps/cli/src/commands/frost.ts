import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { type NewMembershipPlan, planNewMembership } from '@cosigner/frost/reshare';
import { readSecretFile } from '@cosigner/runtime/secrets';
import { type Command, InvalidArgumentError } from 'commander';
import { cliErrors } from '../errors.ts';
import { http, httpOk, type Out, required, run, stdio, targetOptions } from './account.ts';
import { frostSwap, groupPublicOf, type SwapFlags } from './frost-swap.ts';

/**
 * `cosigner frost dkg` and `cosigner frost show` (docs/operations/frost.md): start a FROST key generation among
 * enrolled nodes through the coordinator's `POST /v1/frost/groups` and wait for its outcome, and show a group by
 * its id or its `G...` address. Each node joins only if its own operator listed this exact roster under
 * `frost.expect` in its config; the command prints who refused or who was blamed when a key generation fails.
 */

export interface FrostTarget {
  coordinatorUrl?: string;
  apiKeyFile?: string;
  json?: boolean;
}

export interface DkgFlags extends FrostTarget {
  participants: string[];
  threshold: number;
  wait: boolean;
  timeoutSeconds: number;
}

export interface GroupView {
  id: string;
  status: 'running' | 'ready' | 'failed';
  step: string;
  threshold: number;
  participants: { index: number; nodeId: string; identityKey: string; verifyingShare?: string }[];
  address: string | null;
  groupPublicKey: string | null;
  transcript: string | null;
  error: { code: string; message: string; reportedBy?: string; nodeCode?: string; culprits: string[] } | null;
}

const NODE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** `--participants node-0,node-1,node-2`: distinct node ids, at least two. */
export function parseParticipants(v: string): string[] {
  const ids = v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const bad = ids.find((id) => !NODE_ID.test(id));
  if (bad !== undefined) throw new InvalidArgumentError(`'${bad}' is not a node id ([A-Za-z0-9._:-], 1-128)`);
  if (ids.length < 2) throw new InvalidArgumentError('name at least two nodes, separated by commas');
  if (new Set(ids).size !== ids.length) throw new InvalidArgumentError('a node is named twice');
  return ids;
}

function threshold(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 2 || n > 255) throw new InvalidArgumentError('must be an integer from 2 to 255');
  return n;
}

function weightOption(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 255) throw new InvalidArgumentError('must be an integer from 1 to 255');
  return n;
}

function seconds(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 86_400) throw new InvalidArgumentError('must be 1-86400 seconds');
  return n;
}

async function target(f: FrostTarget): Promise<{ url: (path: string) => string; token: string }> {
  if (!f.coordinatorUrl) throw required('--coordinator-url', 'to reach the coordinator');
  if (!f.apiKeyFile) throw required('--api-key-file', 'to talk to the coordinator');
  const token = await readSecretFile(f.apiKeyFile, 'coordinator API key');
  const base = f.coordinatorUrl;
  return { url: (path) => new URL(path, base).toString(), token };
}

/** The lines an operator reads: status, group key, each participant's verifying share, or who is to blame. */
export function describeGroup(g: GroupView): string[] {
  const n = g.participants.length;
  const lines = [
    `group ${g.id}: ${g.status} (${g.threshold}-of-${n}${g.status === 'running' ? `, at ${g.step}` : ''})`,
  ];
  if (g.address) lines.push(`  address          ${g.address}`, `  group key (hex)  ${g.groupPublicKey}`);
  if (g.transcript) lines.push(`  transcript       ${g.transcript}`);
  for (const p of g.participants) {
    lines.push(
      `  ${String(p.index).padStart(3)} ${p.nodeId}${p.verifyingShare ? `  verifying share ${p.verifyingShare}` : ''}`,
    );
  }
  if (g.error) {
    lines.push(`  error            ${g.error.code}: ${g.error.message}`);
    if (g.error.culprits.length > 0) lines.push(`  blamed           ${g.error.culprits.join(', ')}`);
  }
  return lines;
}

function failure(g: GroupView): Error {
  const e = g.error!;
  const blame = e.culprits.length > 0 ? ` Blamed: ${e.culprits.join(', ')}.` : '';
  return Object.assign(new Error(`key generation ${g.id} failed: ${e.message}${blame}`), { code: e.code });
}

export async function frostDkg(f: DkgFlags, io: Out = stdio): Promise<GroupView> {
  if (f.threshold > f.participants.length) {
    throw new InvalidArgumentError(`--threshold ${f.threshold} is more than the ${f.participants.length} participants`);
  }
  const t = await target(f);
  let g = (await httpOk(t.url('/v1/frost/groups'), {
    method: 'POST',
    token: t.token,
    body: { participants: f.participants, threshold: f.threshold },
  })) as unknown as GroupView;
  if (!f.json)
    io.out(
      `key generation ${g.id} started: ${f.threshold}-of-${f.participants.length} among ${f.participants.join(', ')}`,
    );
  const deadline = Date.now() + f.timeoutSeconds * 1000;
  while (f.wait && g.status === 'running') {
    if (Date.now() > deadline) {
      throw cliErrors.error(
        'LIFECYCLE_TIMEOUT',
        { id: g.id, step: g.step },
        { message: `key generation ${g.id} still running at ${g.step} after ${f.timeoutSeconds} s` },
      );
    }
    await new Promise((r) => setTimeout(r, 250));
    g = (await httpOk(t.url(`/v1/frost/groups/${g.id}`), { token: t.token })) as unknown as GroupView;
  }
  if (f.json) io.out(JSON.stringify(g, null, 2));
  else for (const l of describeGroup(g)) io.out(l);
  if (g.status === 'failed') throw failure(g);
  return g;
}

export async function frostShow(group: string, f: FrostTarget, io: Out = stdio): Promise<GroupView> {
  const t = await target(f);
  const r = await http(t.url(`/v1/frost/groups/${encodeURIComponent(group)}`), { token: t.token });
  if (r.status !== 200) {
    const b = r.body as { code?: string; message?: string };
    throw Object.assign(new Error(b.message ?? `GET /v1/frost/groups answered ${r.status}`), {
      code: b.code ?? 'LIFECYCLE_CALL_FAILED',
    });
  }
  const g = r.body as GroupView;
  if (f.json) io.out(JSON.stringify(g, null, 2));
  else for (const l of describeGroup(g)) io.out(l);
  return g;
}

export interface RefreshFlags extends FrostTarget {
  group?: string;
  wait: boolean;
  timeoutSeconds: number;
}

interface RefreshView {
  id: string;
  address: string;
  status: 'running' | 'adopted' | 'failed';
  step: string;
  threshold: number;
  participants: {
    index: number;
    nodeId: string;
    verifyingShare?: string;
    acknowledged: boolean;
  }[];
  oldDigest: string;
  digest: string | null;
  transcript: string | null;
  error: { code: string; message: string; nodeCode?: string; culprits: string[] } | null;
}

/** The lines an operator reads after a refresh: its outcome, each node's new verifying share, or who is blamed. */
export function describeRefresh(r: RefreshView): string[] {
  const lines = [
    `refresh ${r.id} of ${r.address}: ${r.status}${r.status === 'running' ? ` (at ${r.step})` : ''}`,
    `  group before     ${r.oldDigest}`,
  ];
  if (r.digest) lines.push(`  group after      ${r.digest}`, `  transcript       ${r.transcript}`);
  for (const p of r.participants) {
    const ack = r.status === 'running' ? '' : p.acknowledged ? '  (switched)' : '  (not acknowledged yet)';
    lines.push(
      `  ${String(p.index).padStart(3)} ${p.nodeId}${p.verifyingShare ? `  verifying share ${p.verifyingShare}` : ''}${r.status === 'adopted' ? ack : ''}`,
    );
  }
  if (r.error) {
    lines.push(`  error            ${r.error.code}: ${r.error.message}`);
    if (r.error.culprits.length > 0) lines.push(`  blamed           ${r.error.culprits.join(', ')}`);
    lines.push('  every node keeps its current share');
  }
  return lines;
}

/** `cosigner frost refresh --group G...`: replace every share of a group, its key unchanged; wait for the outcome. */
export async function frostRefresh(f: RefreshFlags, io: Out = stdio): Promise<RefreshView> {
  if (!f.group) throw required('--group', 'to name the group to refresh (its address G... or key-generation id)');
  const t = await target(f);
  const started = await http(t.url(`/v1/frost/groups/${encodeURIComponent(f.group)}/refresh`), {
    method: 'POST',
    token: t.token,
    body: {},
  });
  if (started.status !== 202) {
    // The coordinator's own code and sentence (a group not found, a node not connected, a refresh running).
    const b = started.body as { code?: string; message?: string };
    throw Object.assign(new Error(b.message ?? `POST /v1/frost/groups/:id/refresh answered ${started.status}`), {
      code: b.code ?? 'LIFECYCLE_CALL_FAILED',
    });
  }
  let r = started.body as RefreshView;
  if (!f.json) io.out(`share refresh ${r.id} of ${r.address} started among ${r.participants.length} nodes`);
  const deadline = Date.now() + f.timeoutSeconds * 1000;
  while (f.wait && r.status === 'running') {
    if (Date.now() > deadline) {
      throw cliErrors.error(
        'LIFECYCLE_TIMEOUT',
        { id: r.id, step: r.step },
        { message: `share refresh ${r.id} still running at ${r.step} after ${f.timeoutSeconds} s` },
      );
    }
    await new Promise((res) => setTimeout(res, 250));
    r = (await httpOk(t.url(`/v1/frost/refreshes/${r.id}`), { token: t.token })) as unknown as RefreshView;
  }
  if (f.json) io.out(JSON.stringify(r, null, 2));
  else for (const l of describeRefresh(r)) io.out(l);
  if (r.status === 'failed') {
    const e = r.error!;
    const blame = e.culprits.length > 0 ? ` Blamed: ${e.culprits.join(', ')}.` : '';
    throw Object.assign(new Error(`share refresh ${r.id} failed: ${e.message}${blame}`), { code: e.code });
  }
  return r;
}

export interface NewGroupFlags extends FrostTarget {
  from?: string;
  participants?: string[];
  threshold?: number;
  allowDisjointQuorums?: boolean;
  stateFile?: string;
  timeoutSeconds: number;
}

/** What `frost new-group` has done, so that running it again goes on where it stopped (as `cosigner rotate`). */
export interface NewGroupState {
  version: 1;
  /** The old group's address. */
  from: string;
  participants: string[];
  threshold: number;
  /** The key generation asked for, once asked (before its outcome is known). */
  dkgId?: string;
  /** The new group's address, once generated. */
  address?: string;
}

async function loadNewGroupState(file: string): Promise<NewGroupState | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  return JSON.parse(text) as NewGroupState;
}

async function saveNewGroupState(file: string, s: NewGroupState): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(s, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, file);
}

/**
 * `cosigner frost new-group --from <old group> --participants ... --threshold t --state-file f`: a new group (nodes
 * added or removed, or another threshold) beside the old one. It plans the membership (planNewMembership: indices
 * in node-id order, refusing 2t <= n unless --allow-disjoint-quorums, refusing the old group with its threshold: a
 * refresh), then runs the key generation among the new members and waits for it. Each step is recorded in the
 * state file before the next, so running the command again resumes: a key generation already asked for is waited
 * for (or asked again if it failed), a generated group is reported, not generated twice. The old group is left as
 * it is: it keeps signing until the account's key swap (docs/operations/frost.md, "A new group").
 */
export async function frostNewGroup(
  f: NewGroupFlags,
  io: Out = stdio,
): Promise<{ plan: NewMembershipPlan; group: GroupView; state: NewGroupState }> {
  if (!f.from) throw required('--from', 'to name the group the new one replaces (its address G... or id)');
  if (!f.participants) throw required('--participants', "to list the new group's nodes");
  if (f.threshold === undefined) throw required('--threshold', 'to say how many of the new group sign');
  if (!f.stateFile) throw required('--state-file', 'to record the steps, so that a second run resumes');
  const t = await target(f);
  const old = (await httpOk(t.url(`/v1/frost/groups/${encodeURIComponent(f.from)}`), {
    token: t.token,
  })) as unknown as GroupView & { commitments: string[] | null };
  if (old.status !== 'ready' || !old.address) {
    throw cliErrors.error(
      'LIFECYCLE_STATE_MISMATCH',
      { field: '--from', status: old.status },
      { message: `--from ${f.from} is not a ready group (its key generation is ${old.status})` },
    );
  }
  const plan = planNewMembership({
    oldGroup: groupPublicOf(old),
    oldNodes: [...old.participants].sort((a, b) => a.index - b.index).map((p) => p.nodeId),
    members: f.participants,
    threshold: f.threshold,
    allowDisjointQuorums: f.allowDisjointQuorums,
  });
  const fresh: NewGroupState = {
    version: 1,
    from: old.address,
    participants: plan.participants,
    threshold: plan.threshold,
  };
  const state = (await loadNewGroupState(f.stateFile)) ?? fresh;
  for (const field of ['from', 'participants', 'threshold'] as const) {
    if (JSON.stringify(state[field]) !== JSON.stringify(fresh[field])) {
      throw cliErrors.error(
        'LIFECYCLE_STATE_MISMATCH',
        { field, state: state[field], asked: fresh[field] },
        {
          message: `${f.stateFile} records ${field} ${JSON.stringify(state[field])}, not ${JSON.stringify(fresh[field])}: use another --state-file for another change`,
        },
      );
    }
  }
  if (!f.json) {
    io.out(`new group: ${plan.threshold}-of-${plan.participants.length} among ${plan.participants.join(', ')}`);
    io.out(`  replaces         ${old.address} (${old.threshold}-of-${old.participants.length})`);
    io.out(`  joining          ${plan.joining.join(', ') || '-'}`);
    io.out(`  leaving          ${plan.leaving.join(', ') || '-'}`);
    io.out(`  staying          ${plan.staying.join(', ') || '-'}`);
  }
  let g: GroupView | undefined;
  if (state.dkgId) {
    g = (await httpOk(t.url(`/v1/frost/groups/${state.dkgId}`), { token: t.token })) as unknown as GroupView;
    if (g.status === 'failed') {
      if (!f.json) io.out(`key generation ${g.id} had failed (${g.error?.code}): asking again`);
      g = undefined;
    } else if (!f.json) io.out(`key generation ${g.id} was asked for already: ${g.status}`);
  }
  if (!g) {
    g = (await httpOk(t.url('/v1/frost/groups'), {
      method: 'POST',
      token: t.token,
      body: { participants: plan.participants, threshold: plan.threshold },
    })) as unknown as GroupView;
    state.dkgId = g.id;
    delete state.address;
    await saveNewGroupState(f.stateFile, state);
    if (!f.json) io.out(`key generation ${g.id} started`);
  }
  const deadline = Date.now() + f.timeoutSeconds * 1000;
  while (g.status === 'running') {
    if (Date.now() > deadline) {
      throw cliErrors.error(
        'LIFECYCLE_TIMEOUT',
        { id: g.id, step: g.step },
        {
          message: `key generation ${g.id} still running at ${g.step} after ${f.timeoutSeconds} s; run again to resume`,
        },
      );
    }
    await new Promise((r) => setTimeout(r, 250));
    g = (await httpOk(t.url(`/v1/frost/groups/${g.id}`), { token: t.token })) as unknown as GroupView;
  }
  if (g.status === 'failed') {
    if (f.json) io.out(JSON.stringify({ plan, group: g, state }, null, 2));
    else for (const l of describeGroup(g)) io.out(l);
    throw failure(g);
  }
  state.address = g.address!;
  await saveNewGroupState(f.stateFile, state);
  if (f.json) io.out(JSON.stringify({ plan, group: g, state }, null, 2));
  else {
    for (const l of describeGroup(g)) io.out(l);
    io.out(
      `next: the old group ${old.address} signs the account's key swap (docs/operations/frost.md, "A new group"); until then it keeps signing`,
    );
  }
  return { plan, group: g, state };
}

function coordinatorOptions(c: Command): Command {
  return c
    .option('--coordinator-url <url>', 'the coordinator')
    .option('--api-key-file <file>', 'file (0600) holding a coordinator API key (admin scope to start, read to show)')
    .option('--json', 'print the group as JSON');
}

export function registerFrost(program: Command, io: Out = stdio): void {
  const frost = program
    .command('frost')
    .description(
      'FROST threshold groups: generate one among the nodes (dkg), show one. One Ed25519 key t of n nodes sign for',
    );
  coordinatorOptions(frost.command('dkg'))
    .description('generate a group key among the nodes, without a dealer (each node must expect this roster)')
    .requiredOption('--participants <ids>', 'node ids separated by commas, in index order', parseParticipants)
    .requiredOption('--threshold <t>', 'how many of the participants sign (2..n)', threshold)
    .option('--no-wait', 'return once started instead of waiting for the outcome')
    .option('--timeout-seconds <s>', 'how long to wait for the outcome', seconds, 600)
    .addHelpText(
      'after',
      '\nEach participant joins only when its own config lists this exact roster (threshold, node ids and identity\n' +
        'keys) under frost.expect; a node that does not, refuses, and the key generation fails naming it.',
    )
    .action((f: DkgFlags) => run(() => frostDkg(f, io), io));
  coordinatorOptions(frost.command('refresh'))
    .description("replace every node's share of a group with a new one; the group key stays (all n nodes take part)")
    .option('--group <group>', 'the group address (G...) or its key-generation id')
    .option('--no-wait', 'return once started instead of waiting for the outcome')
    .option('--timeout-seconds <s>', 'how long to wait for the outcome', seconds, 600)
    .addHelpText(
      'after',
      '\nEvery node seals its new share beside the old one, which keeps signing; they switch only when all n\n' +
        'reported the same new group. Any failure leaves every node with its current share.',
    )
    .action((f: RefreshFlags) => run(() => frostRefresh(f, io), io));
  coordinatorOptions(frost.command('new-group'))
    .description('make a new group (nodes added or removed, or another threshold) beside an old one; resumable')
    .option('--from <group>', 'the group it replaces: its address (G...) or key-generation id')
    .option('--participants <ids>', "the new group's node ids, separated by commas", parseParticipants)
    .option('--threshold <t>', 'how many of the new group sign (above half of them)', threshold)
    .option('--allow-disjoint-quorums', 'accept 2t <= n: two disjoint sets of t nodes could each sign')
    .option('--state-file <file>', 'where the steps are recorded; run again with it to resume')
    .option('--timeout-seconds <s>', 'how long to wait for the key generation', seconds, 600)
    .addHelpText(
      'after',
      '\nEvery new member must expect the new roster in its config (frost.expect), as for `frost dkg`. The old\n' +
        'group stays and keeps signing until the account swaps the keys.',
    )
    .action((f: NewGroupFlags) => run(() => frostNewGroup(f, io), io));
  targetOptions(frost.command('swap'))
    .description('move every account the old group key signs to the new group key (signed by the old group); resumable')
    .option('--from <group>', 'the old group: its address (G...) or key-generation id')
    .option('--to <group>', 'the new group (made by `frost new-group`): its address (G...) or key-generation id')
    .option(
      '--account <G...>',
      'an account the old group key signs (repeat for each: every one must be named)',
      (v: string, acc: string[]) => [...acc, v],
      [],
    )
    .option('--weight <w>', "the new key's weight on each account (default: the old key's)", weightOption)
    .option(
      '--allow-disjoint-quorums',
      'accept a configuration in which two disjoint sets of signers reach a threshold',
    )
    .option('--state-file <file>', 'where the steps are recorded; run again with it to resume')
    .option('--wait-seconds <s>', 'how long to wait for each account to be swapped', seconds, 180)
    .option(
      '--proposal-window <s>',
      "seconds each swap transaction stays valid (within the nodes' policy)",
      seconds,
      120,
    )
    .option('--json', 'print the state as JSON at the end')
    .addHelpText(
      'after',
      '\nOne transaction per account, two setOptions: the old group key to weight 0 and the new one added, applied\n' +
        'together or not at all. t of the OLD group sign it; each node checks it against its own records (it must\n' +
        'hold the new group and its operator must have planned the weight: frost.expect accountWeight). Run again\n' +
        'with the same --state-file after any failure: an account already swapped is not proposed twice.',
    )
    .action((f: SwapFlags) => run(() => frostSwap(f, io), io));
  coordinatorOptions(frost.command('show').argument('<group>', 'the key generation id or the group address (G...)'))
    .description("show a group: its key, each participant's verifying share, or why its key generation failed")
    .action((group: string, f: FrostTarget) => run(() => frostShow(group, f, io), io));
}
