import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { type GroupKeyChange, planGroupKeyChange } from '@cosigner/frost/reshare';
import type { GroupPublic } from '@cosigner/frost/suite';
import type { SignerConfiguration } from '@cosigner/policy/lockout';
import { isProduction } from '@cosigner/runtime/mode';
import { TransactionBuilder } from '@stellar/stellar-sdk';
import { cliErrors } from '../errors.ts';
import { http, httpOk, Lifecycle, type Out, ProposalEndedError, required, stdio } from './account.ts';
import type { GroupView } from './frost.ts';

/**
 * `cosigner frost swap --from <old group> --to <new group> --account A [--account B ...] --state-file f`: move every
 * account the old group key signs to the new group's key (docs/operations/frost.md, "Swapping the account").
 *
 * Per account, one transaction with the account as source and two setOptions (reshare.ts planGroupKeyChange: the
 * old group key to weight 0, the new one at the planned weight), refused unless the configuration it leaves passes
 * the lock-out and quorum-intersection checks. It is proposed to the coordinator as a FROST proposal of the OLD
 * group (t of the old nodes sign: the only key the account accepts before the change), submitted by the
 * coordinator, and the command waits until Horizon shows the new key and not the old. The two operations apply
 * together or not at all (stellar-core TransactionFrame applies a transaction's operations all or none), so an
 * account is never left with neither key.
 *
 * Crash safety, as `cosigner rotate`: before a proposal leaves, its idempotency key (derived from the old group, the
 * new group, the account and the attempt, so it is the same in every run) is written to the state file; a run that
 * finds it looks the proposal up at the coordinator (`GET /v1/proposals?idempotencyKey=`) and waits for it rather
 * than proposing again; and every run first reads the account on the ledger: an account that already shows the new
 * key and not the old is done, whatever the state file says. A proposal that ended without applying (rejected,
 * expired) is proposed again under the next attempt's key by a later run, never by the run that saw it end.
 *
 * The old group is retired (recorded on the coordinator's event stream) only once Horizon lists no account signed
 * by its key; the old key can no longer sign for any swapped account, since the ledger gives it no weight. The
 * shares are each node's: the command ends by telling every operator of the old group's nodes to destroy theirs
 * with `cosigner node frost retire` on their own node's admin API (docs/operations/frost.md "Retiring the old
 * group"). The coordinator cannot do it for them: it has no way to a node's admin API, by design.
 */

export interface SwapFlags {
  horizonUrl?: string;
  network?: string;
  coordinatorUrl?: string;
  apiKeyFile?: string;
  json?: boolean;
  from?: string;
  to?: string;
  account: string[];
  /** The new key's weight; default: the old key's on each account. */
  weight?: number;
  allowDisjointQuorums?: boolean;
  stateFile?: string;
  /** Seconds to wait for each proposal to be submitted and applied. */
  waitSeconds: number;
  /** Seconds each proposal's transaction stays valid (its upper time bound). */
  proposalWindow: number;
}

/** A proposal recorded before it leaves: its idempotency key, the attempt, and its id once known. */
export interface SwapIntent {
  key: string;
  attempt: number;
  proposalId?: string;
}

export interface SwapState {
  version: 1;
  /** The old and the new group's addresses. */
  from: string;
  to: string;
  accounts: string[];
  intents: Record<string, SwapIntent>;
  /** Accounts the ledger showed swapped (new key, no old key). */
  swapped: string[];
  /** When every account was swapped and the old group retired. */
  retiredAt?: string;
}

/** Where a test (development mode only) kills the command: after the intent is saved, after the POST, after submission. */
export const SWAP_KILL_POINTS = ['intent', 'proposed', 'submitted'] as const;

function killHook(env: NodeJS.ProcessEnv): (point: string) => void {
  const at = env.COSIGNER_FROST_SWAP_KILL_AT;
  if (at === undefined || at === '' || isProduction(undefined, env)) return () => {};
  if (!(SWAP_KILL_POINTS as readonly string[]).includes(at)) {
    throw cliErrors.error(
      'LIFECYCLE_OPTION_REQUIRED',
      { option: 'COSIGNER_FROST_SWAP_KILL_AT' },
      { message: `COSIGNER_FROST_SWAP_KILL_AT=${at} names no point of the swap (${SWAP_KILL_POINTS.join(', ')})` },
    );
  }
  return (point) => {
    if (point === at) process.kill(process.pid, 'SIGKILL');
  };
}

/** The idempotency key of one account's swap proposal: the same in every run, without the state file too. */
export function swapKey(from: string, to: string, account: string, attempt: number): string {
  const id = createHash('sha256').update(`cosigner-frost-swap/v1|${from}|${to}|${account}`).digest('hex');
  return `frost-swap-${id.slice(0, 32)}-${attempt}`;
}

async function loadState(file: string): Promise<SwapState | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  return JSON.parse(text) as SwapState;
}

async function saveState(file: string, s: SwapState): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(s, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, file);
}

/** A ready group's public data from its view (what the plans check a group with). */
export function groupPublicOf(g: GroupView & { commitments?: string[] | null }): GroupPublic {
  return {
    threshold: g.threshold,
    participants: g.participants.map((p) => p.index),
    groupPublicKey: g.groupPublicKey!,
    commitments: g.commitments ?? [],
    verifyingShares: Object.fromEntries(g.participants.map((p) => [String(p.index), p.verifyingShare!])),
  };
}

const signs = (c: SignerConfiguration, key: string): boolean => c.signers.some((s) => s.key === key && s.weight > 0);

/** A ready group from the coordinator, by address or key-generation id. */
/**
 * The last step of a swap, which only each node's operator can take: destroy the old group's share on their node
 * (services/cosigner frost routes, `POST /v1/frost/groups/:address/retire` on the node's private admin API).
 */
export function retireInstructions(oldG: { address: string; participants: { nodeId: string }[] }): string[] {
  const nodes = oldG.participants.map((p) => p.nodeId).join(', ');
  return [
    `next, each operator of the old group's nodes (${nodes}) destroys its share on their own node:`,
    `  cosigner node frost retire --group ${oldG.address} --confirm ${oldG.address} --admin-url <that node's admin API> --token-file <its admin token file>`,
  ];
}

async function readyGroup(lc: Lifecycle, group: string, option: string): Promise<GroupView & { address: string }> {
  const g = (await httpOk(lc.coordinator(`/v1/frost/groups/${encodeURIComponent(group)}`), {
    token: await lc.apiKey(),
  })) as unknown as GroupView;
  if (g.status !== 'ready' || !g.address) {
    throw cliErrors.error(
      'LIFECYCLE_STATE_MISMATCH',
      { field: option, status: g.status },
      { message: `${option} ${group} is not a ready group (its key generation is ${g.status})` },
    );
  }
  return g as GroupView & { address: string };
}

interface ProposalView {
  id: string;
  status: string;
}

/**
 * Move every named account from the old group key to the new one; resumable (see the file comment).
 * @throws CosignerError LIFECYCLE_OPTION_REQUIRED, LIFECYCLE_ACCOUNTS_MISSING (the old key signs accounts not named),
 *   LIFECYCLE_NOT_A_SIGNER (a named account has neither key), LIFECYCLE_STATE_MISMATCH (a group not ready, or a
 *   state file of another swap), FROST_GROUP_CHANGE_UNSAFE (lock-out or disjoint quorums, naming the field),
 *   LIFECYCLE_PROPOSAL_ENDED, LIFECYCLE_TIMEOUT, LIFECYCLE_CALL_FAILED
 */
export async function frostSwap(
  f: SwapFlags,
  io: Out = stdio,
  env: NodeJS.ProcessEnv = process.env,
): Promise<SwapState> {
  if (!f.horizonUrl) throw required('--horizon-url', 'to read the accounts');
  if (!f.from) throw required('--from', 'to name the old group (its address G... or key-generation id)');
  if (!f.to) throw required('--to', 'to name the new group (its address G... or key-generation id)');
  if (f.account.length === 0) throw required('--account', 'for each account the old group key signs');
  if (!f.stateFile) throw required('--state-file', 'to record the steps, so that a second run resumes');
  const kill = killHook(env);
  const lc = new Lifecycle(
    {
      horizonUrl: f.horizonUrl,
      ...(f.network ? { network: f.network } : {}),
      ...(f.coordinatorUrl ? { coordinatorUrl: f.coordinatorUrl } : {}),
      ...(f.apiKeyFile ? { apiKeyFile: f.apiKeyFile } : {}),
      timeoutSeconds: f.proposalWindow,
    },
    // With --json the only output is the state at the end (the lifecycle step lines are not printed).
    f.json ? { out: () => {}, err: (l) => io.err(l) } : io,
  );
  const say = (line: string) => {
    if (!f.json) io.out(`[frost swap] ${line}`);
  };
  const oldG = await readyGroup(lc, f.from, '--from');
  const newG = await readyGroup(lc, f.to, '--to');
  const accounts = [...new Set(f.account)].sort();
  const fresh: SwapState = {
    version: 1,
    from: oldG.address,
    to: newG.address,
    accounts,
    intents: {},
    swapped: [],
  };
  const loaded = await loadState(f.stateFile);
  const state = loaded ?? fresh;
  for (const field of ['from', 'to', 'accounts'] as const) {
    if (JSON.stringify(state[field]) !== JSON.stringify(fresh[field])) {
      throw cliErrors.error(
        'LIFECYCLE_STATE_MISMATCH',
        { field, state: state[field], asked: fresh[field] },
        {
          message: `${f.stateFile} records ${field} ${JSON.stringify(state[field])}, not ${JSON.stringify(fresh[field])}: use another --state-file for another swap`,
        },
      );
    }
  }
  const file = f.stateFile;
  const save = () => saveState(file, state);
  // Every account the old key signs must move: the old group is retired at the end, so an account left out would
  // keep a key whose group nobody runs any more. Checked before anything changes, and again in every run.
  const missing = (await lc.accountsSignedBy(oldG.address)).filter((a) => !accounts.includes(a)).sort();
  if (missing.length > 0) {
    throw cliErrors.error(
      'LIFECYCLE_ACCOUNTS_MISSING',
      { group: oldG.address, option: '--account', missing: missing.join(',') },
      {
        message:
          `the old group key ${oldG.address} also signs ${missing.join(', ')}: name every account it signs with ` +
          '--account (the old group is retired at the end of the swap)',
      },
    );
  }
  if (!loaded) await save();
  say(
    `from ${oldG.address} (${oldG.threshold}-of-${oldG.participants.length}) to ${newG.address} (${newG.threshold}-of-${newG.participants.length})`,
  );
  const nodes = await lc.nodesByKey();
  for (const account of accounts) {
    await swapAccount(account);
  }
  if (!state.retiredAt) {
    const left = await lc.accountsSignedBy(oldG.address);
    if (left.length > 0) {
      // Someone added the old key to an account while the swap ran: it is not retired, a rerun names the account.
      throw cliErrors.error(
        'LIFECYCLE_ACCOUNTS_MISSING',
        { group: oldG.address, option: '--account', missing: left.join(',') },
        { message: `the old group key ${oldG.address} still signs ${left.join(', ')}: it is not retired` },
      );
    }
    await lc.step({
      action: 'frost-swap',
      step: 'old-group-retired',
      detail: { from: oldG.address, to: newG.address, accounts: accounts.length },
    });
    state.retiredAt = new Date().toISOString();
    await save();
  }
  say(`every account is signed by ${newG.address}; the old group ${oldG.address} signs none and is retired`);
  for (const line of retireInstructions(oldG)) say(line);
  if (f.json) io.out(JSON.stringify(state, null, 2));
  return state;

  /** One account: done if the ledger shows it swapped; else wait for its proposal, or propose it. */
  async function swapAccount(account: string): Promise<void> {
    let createdHere = false;
    let conflicted = false;
    const deadline = Date.now() + f.waitSeconds * 1000;
    for (;;) {
      const current = await lc.configuration(account, nodes);
      if (!signs(current, oldG.address)) {
        if (!signs(current, newG.address)) {
          throw cliErrors.error(
            'LIFECYCLE_NOT_A_SIGNER',
            { account, key: oldG.address, field: '--account' },
            { message: `neither ${oldG.address} nor ${newG.address} is a signer of ${account}: it is not this swap's` },
          );
        }
        if (!state.swapped.includes(account)) {
          state.swapped.push(account);
          await save();
        }
        say(`${account}: signed by ${newG.address}, not by ${oldG.address}`);
        return;
      }
      // Plan first, in every run: the account as the ledger has it now must still pass the lock-out and
      // quorum-intersection checks with the change (FROST_GROUP_CHANGE_UNSAFE names each field).
      const plan = planGroupKeyChange({
        current,
        oldGroup: groupPublicOf(oldG),
        newGroup: groupPublicOf(newG),
        ...(f.weight === undefined ? {} : { weight: f.weight }),
        allowDisjointQuorums: f.allowDisjointQuorums,
      });
      let intent = state.intents[account];
      if (intent) {
        const found = intent.proposalId ? { id: intent.proposalId } : await proposalByKey(intent.key);
        if (found) {
          if (intent.proposalId !== found.id) {
            intent.proposalId = found.id;
            await save();
          }
          say(`${account}: waiting for proposal ${found.id}`);
          try {
            await lc.waitProposal(found.id, Math.max(0, deadline - Date.now()));
            kill('submitted');
            await lc.waitAccount(account, (c) => signs(c, newG.address) && !signs(c, oldG.address));
            continue;
          } catch (e) {
            // Proposed in this run and ended: report it; a rerun, once the cause is dealt with, proposes again.
            if (!(e instanceof ProposalEndedError) || createdHere) throw e;
            say(`${account}: earlier proposal ${found.id} ended ${e.outcome}; proposing again`);
            intent = { key: swapKey(state.from, state.to, account, intent.attempt + 1), attempt: intent.attempt + 1 };
            state.intents[account] = intent;
            await save();
          }
        }
      } else {
        intent = { key: swapKey(state.from, state.to, account, 1), attempt: 1 };
        state.intents[account] = intent;
        await save();
      }
      kill('intent');
      const id = await propose(account, plan, intent.key);
      if (id === undefined) {
        // Another run's request under this key reached the coordinator first: look it up (once).
        if (conflicted) {
          throw cliErrors.error(
            'LIFECYCLE_CALL_FAILED',
            { call: 'POST /v1/proposals', status: 409 },
            { message: `POST /v1/proposals keeps answering COORD_IDEMPOTENCY_CONFLICT for ${intent.key}` },
          );
        }
        conflicted = true;
        continue;
      }
      kill('proposed');
      intent.proposalId = id;
      createdHere = true;
      await save();
      say(
        `${account}: proposed ${id} (${plan.oldKey} to weight 0, ${plan.newKey} at weight ${plan.weight}), signed by the old group`,
      );
    }
  }

  /** The proposal created under an idempotency key, if the coordinator has one. */
  async function proposalByKey(key: string): Promise<ProposalView | undefined> {
    const body = await httpOk(lc.coordinator(`/v1/proposals?idempotencyKey=${encodeURIComponent(key)}`), {
      token: await lc.apiKey(),
    });
    return (body.items as ProposalView[])[0];
  }

  /** POST the account's swap as a FROST proposal of the old group; its id, or undefined on an idempotency conflict. */
  async function propose(account: string, plan: GroupKeyChange, key: string): Promise<string | undefined> {
    const source = await lc.horizon.loadAccount(account);
    const builder = new TransactionBuilder(source, { fee: '100', networkPassphrase: await lc.network() });
    for (const op of plan.operations) builder.addOperation(op);
    const xdr = builder.setTimeout(f.proposalWindow).build().toXDR();
    const r = await http(lc.coordinator('/v1/proposals'), {
      method: 'POST',
      token: await lc.apiKey(),
      body: {
        xdr,
        submit: true,
        group: oldG.address,
        idempotencyKey: key,
        note: `frost swap ${account}: ${oldG.address} to ${newG.address}`,
      },
    });
    const code = (r.body as { code?: string }).code;
    if (r.status === 409 && code === 'COORD_IDEMPOTENCY_CONFLICT') return undefined;
    if (r.status < 200 || r.status >= 300) {
      throw cliErrors.error(
        'LIFECYCLE_CALL_FAILED',
        { call: 'POST /v1/proposals', status: r.status, ...(code ? { coordinatorCode: code } : {}) },
        { message: `POST /v1/proposals answered ${r.status}: ${JSON.stringify(r.body).slice(0, 500)}` },
      );
    }
    return String((r.body as { id: string }).id);
  }
}
