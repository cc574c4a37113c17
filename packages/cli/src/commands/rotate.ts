import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { DisableKeyCommand, ScheduleKeyDeletionCommand } from '@aws-sdk/client-kms';
import { createKmsClient } from '@cosigner/keys/aws-kms/kms-signer';
import type { SignerKind } from '@cosigner/keys/signer';
import { applyChanges, checkLockout, type SignerConfiguration } from '@cosigner/policy/lockout';
import { isProduction } from '@cosigner/runtime/mode';
import { readSecretFile } from '@cosigner/runtime/secrets';
import type { Command } from 'commander';
import { cliErrors } from '../errors.ts';
import {
  type Changes,
  httpOk,
  Lifecycle,
  LockoutError,
  type Out,
  ProposalEndedError,
  required,
  requireSafe,
  run,
  stdio,
  targetOptions,
} from './account.ts';
import { keysCreate } from './keys.ts';

/**
 * `cosigner rotate --node <id>`: replace one node's Stellar signing key while the cluster keeps signing.
 *
 *  1. key-created   the new key is created in the node's backend (KMS CreateKey with the operator's admin
 *                   credentials from the standard AWS chain; PKCS#11 C_GenerateKeyPair; local file);
 *  2. prepared      the node opens it as its pending key (it keeps signing with the old one);
 *  3. roster        (optional, --peer-admin-url) the peers' operators accept the new key on their nodes;
 *  4. added         a setOptions adding the new key at the old key's weight, through the quorum;
 *  5. registry      the coordinator's registry names the new key for this node;
 *  6. switched      the node switches to the new key (one step, signatures in flight finish first) and
 *                   reconnects announcing it;
 *  7. old-disabled  the old KMS key is disabled, so from here on it cannot sign at all;
 *  8. removed       a setOptions removing the old key, through the quorum (the node signs with its new key);
 *  9. deletion-scheduled  the old KMS key is scheduled for deletion (30 days by default, the AWS maximum).
 *
 * Every step is written to a state file (`<state-dir>/rotate-<node>.json`, atomically) before the next starts,
 * and every step checks the world before acting (is the key already a signer? already active?), so a rerun
 * after a crash anywhere finishes the rotation without adding the key twice or losing one. Proposals already
 * created are waited for instead of being proposed again. Each step is a `lifecycle.step` event on the
 * coordinator and an audit entry on the node.
 *
 * Between steps 4 and 7 the node's two keys are both signers. The node signs with exactly one, and the old key
 * is disabled right after the switch; the lock-out check on that transitional state counts the two keys as
 * separate parties and prints a warning when together they would reach a threshold.
 */

export const ROTATE_STEPS = [
  'key-created',
  'prepared',
  'roster',
  'added',
  'registry',
  'switched',
  'old-disabled',
  'removed',
  'deletion-scheduled',
] as const;
export type RotateStep = (typeof ROTATE_STEPS)[number];

export interface RotateState {
  nodeId: string;
  accounts: string[];
  oldKey: string;
  weight: number;
  backend: SignerKind;
  oldKeyId?: string;
  newKeyId?: string;
  newKey?: string;
  addProposal?: string;
  removeProposal?: string;
  done: RotateStep[];
  startedAt: string;
}

export interface RotateFlags {
  horizonUrl: string;
  network?: string;
  coordinatorUrl?: string;
  apiKeyFile?: string;
  node: string;
  account: string[];
  txSource?: string;
  adminUrl: string;
  tokenFile?: string;
  peerAdminUrl?: string[];
  stateDir: string;
  backend: SignerKind;
  /** aws-kms */
  kmsEndpoint?: string;
  region?: string;
  oldKeyId?: string;
  pendingWindowDays?: number;
  /** pkcs11 */
  module?: string;
  tokenLabel?: string;
  pinFile?: string;
  /** local */
  keyFile?: string;
}

async function saveState(file: string, s: RotateState): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(s, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, file);
}

async function loadState(file: string): Promise<RotateState | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as RotateState;
  } catch {
    return undefined;
  }
}

/**
 * Test hook (never in production mode): `COSIGNER_ROTATE_STOP_AFTER=<step>` kills this process right after that
 * step is recorded, to prove a rerun resumes (test/e2e/lifecycle.test.ts).
 */
function maybeStop(step: RotateStep, env: NodeJS.ProcessEnv): void {
  if (isProduction(undefined, env)) return;
  if (env.COSIGNER_ROTATE_STOP_AFTER === step) process.kill(process.pid, 'SIGKILL');
}

const hasKey = (c: SignerConfiguration, key: string): boolean => c.signers.some((s) => s.key === key);

export async function rotate(
  f: RotateFlags,
  io: Out = stdio,
  env: NodeJS.ProcessEnv = process.env,
): Promise<RotateState> {
  if (f.account.length === 0) throw required('--account', 'for a rotation');
  const lc = new Lifecycle(f, io);
  const file = join(resolve(f.stateDir), `rotate-${f.node}.json`);
  const token = f.tokenFile ? await readSecretFile(f.tokenFile, 'node admin token') : undefined;
  const nodeApi = (path: string) => new URL(path, f.adminUrl).toString();
  let s = await loadState(file);
  if (!s) {
    const keyring = await httpOk(nodeApi('/v1/keyring'), { token });
    const oldKey = String(keyring.active);
    const current = await lc.configuration(f.account[0]!, new Map());
    const weight = current.signers.find((x) => x.key === oldKey)?.weight;
    if (!weight)
      throw cliErrors.error(
        'LIFECYCLE_NOT_A_SIGNER',
        { node: f.node, key: oldKey, account: f.account[0] },
        { message: `${f.node}'s key ${oldKey} is not a signer of ${f.account[0]}` },
      );
    const active = (keyring.keys as { address: string; keyId: string }[]).find((k) => k.address === oldKey);
    s = {
      nodeId: f.node,
      accounts: f.account,
      oldKey,
      weight,
      backend: f.backend,
      ...((f.oldKeyId ?? active?.keyId) ? { oldKeyId: f.oldKeyId ?? active?.keyId } : {}),
      done: [],
      startedAt: new Date().toISOString(),
    };
    await saveState(file, s);
    await lc.step({ action: 'rotate', step: 'started', account: f.account[0]!, nodeId: f.node, detail: { oldKey } });
  } else {
    io.out(`[rotate] resuming ${f.node} after ${s.done.at(-1) ?? 'start'}`);
  }
  const state = s;
  const mark = async (
    step: RotateStep,
    detail: Record<string, string | number | boolean | null> = {},
  ): Promise<void> => {
    if (!state.done.includes(step)) state.done.push(step);
    await saveState(file, state);
    await lc.step({ action: 'rotate', step, account: state.accounts[0]!, nodeId: state.nodeId, detail });
    maybeStop(step, env);
  };
  const todo = (step: RotateStep): boolean => !state.done.includes(step);

  if (todo('key-created')) {
    const made = await keysCreate(
      {
        backend: f.backend,
        ...(f.kmsEndpoint ? { endpoint: f.kmsEndpoint } : {}),
        ...(f.region ? { region: f.region } : {}),
        description: `stellar-cosigner ${f.node} signing key (rotation of ${state.oldKey})`,
        ...(f.module ? { module: f.module } : {}),
        ...(f.tokenLabel ? { tokenLabel: f.tokenLabel } : {}),
        ...(f.pinFile ? { pinFile: f.pinFile } : {}),
        ...(f.keyFile ? { keyFile: f.keyFile } : {}),
      },
      env,
    );
    state.newKeyId = made.keyId;
    state.newKey = made.address;
    await mark('key-created', { newKey: made.address });
  }
  const newKey = state.newKey as string;
  const newKeyId = state.newKeyId as string;

  if (todo('prepared')) {
    await httpOk(nodeApi('/v1/keyring/prepare'), {
      method: 'POST',
      token,
      body: { keyId: newKeyId, expectedAddress: newKey, by: 'rotate' },
    });
    await mark('prepared');
  }

  if (todo('roster')) {
    for (const peer of f.peerAdminUrl ?? []) {
      await httpOk(new URL('/v1/roster', peer).toString(), {
        method: 'POST',
        token,
        body: { address: newKey, nodeId: state.nodeId, by: 'rotate' },
      });
    }
    await mark('roster', { peers: (f.peerAdminUrl ?? []).length });
  }

  const nodes = await lc.nodesByKey();
  if (todo('added')) {
    const add: Changes = { signers: [{ key: newKey, weight: state.weight, node: `${state.nodeId} (new key)` }] };
    const missing: string[] = [];
    for (const a of state.accounts) {
      const c = await lc.configuration(a, nodes);
      if (hasKey(c, newKey)) continue;
      missing.push(a);
      const during = checkLockout(applyChanges(c, add));
      if (!during.ok) {
        throw new LockoutError(during, `the rotation (while both keys are signers of ${a})`);
      }
      const together = checkLockout(
        applyChanges(
          { ...c, signers: c.signers.map((x) => ({ ...x, node: x.key === state.oldKey ? state.nodeId : x.node })) },
          {
            signers: [{ key: newKey, weight: state.weight, node: state.nodeId }],
          },
        ),
      );
      if (!together.ok) {
        io.out(
          `[rotate] warning: until the old key is disabled (a few seconds), ${state.nodeId}'s two keys together could reach a threshold; the node signs with exactly one`,
        );
      }
    }
    if (missing.length > 0) {
      await proposeOnce(lc, state, 'addProposal', missing, add, f.txSource, async () => saveState(file, state));
      await lc.waitAccount(state.accounts[0]!, (c) => hasKey(c, newKey));
    }
    await mark('added', { proposalId: state.addProposal ?? null });
  }

  if (todo('registry')) {
    if (f.coordinatorUrl) {
      await httpOk(lc.coordinator(`/v1/nodes/${encodeURIComponent(state.nodeId)}/stellar-key`), {
        method: 'PUT',
        token: await lc.apiKey(),
        body: { stellarKey: newKey, account: state.accounts[0]! },
      });
    }
    await mark('registry');
  }

  if (todo('switched')) {
    await httpOk(nodeApi('/v1/keyring/activate'), { method: 'POST', token, body: { address: newKey, by: 'rotate' } });
    if (f.coordinatorUrl) await waitConnected(lc, state.nodeId, newKey);
    await mark('switched');
  }

  if (todo('old-disabled')) {
    if (state.backend === 'aws-kms' && state.oldKeyId) {
      const client = createKmsClient({ region: kmsRegion(f, env), endpoint: f.kmsEndpoint });
      try {
        await client.send(new DisableKeyCommand({ KeyId: state.oldKeyId }));
      } finally {
        client.destroy();
      }
    }
    await mark('old-disabled', { keyId: state.oldKeyId ?? null });
  }

  if (todo('removed')) {
    const remove: Changes = { signers: [{ key: state.oldKey, weight: 0 }] };
    const still: string[] = [];
    for (const a of state.accounts) {
      const c = await lc.configuration(a, nodes);
      if (!hasKey(c, state.oldKey)) continue;
      still.push(a);
      // Removing the old key gives the node back its weight from before the rotation: quorum intersection is what
      // the operator accepted then, so it is not judged again here (a rotation must not stop half done).
      requireSafe(applyChanges(c, remove), `removing ${state.oldKey} from ${a}`, { allowDisjointQuorums: true });
    }
    if (still.length > 0) {
      await proposeOnce(lc, state, 'removeProposal', still, remove, f.txSource, async () => saveState(file, state));
      await lc.waitAccount(state.accounts[0]!, (c) => !hasKey(c, state.oldKey));
    }
    await mark('removed', { proposalId: state.removeProposal ?? null });
  }

  if (todo('deletion-scheduled')) {
    if (state.backend === 'aws-kms' && state.oldKeyId) {
      const client = createKmsClient({ region: kmsRegion(f, env), endpoint: f.kmsEndpoint });
      try {
        await client.send(
          new ScheduleKeyDeletionCommand({ KeyId: state.oldKeyId, PendingWindowInDays: f.pendingWindowDays ?? 30 }),
        );
      } catch (e) {
        // A rerun after the deletion was scheduled: KMS refuses a second schedule on a PendingDeletion key.
        if ((e as { name?: string }).name !== 'KMSInvalidStateException') throw e;
      } finally {
        client.destroy();
      }
    }
    await mark('deletion-scheduled', { keyId: state.oldKeyId ?? null });
  }
  io.out(`[rotate] ${state.nodeId}: ${state.oldKey} -> ${newKey} done`);
  return state;
}

function kmsRegion(f: RotateFlags, env: NodeJS.ProcessEnv): string {
  const r = f.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  if (!r) throw required('--region (or AWS_REGION)', 'with --backend aws-kms');
  return r;
}

/**
 * Propose a change once: a proposal recorded in the state is waited for (never proposed again); only one that
 * ended without being applied is proposed anew.
 */
async function proposeOnce(
  lc: Lifecycle,
  state: RotateState,
  field: 'addProposal' | 'removeProposal',
  accounts: string[],
  changes: Changes,
  txSource: string | undefined,
  save: () => Promise<void>,
): Promise<void> {
  const recorded = state[field];
  if (recorded) {
    try {
      await lc.waitProposal(recorded);
      return;
    } catch (e) {
      if (!(e instanceof ProposalEndedError)) throw e;
      lc.io.out(`[rotate] earlier proposal ${recorded} ended ${e.outcome}; proposing again`);
    }
  }
  const xdr = await lc.buildChange({ accounts, changes, ...(txSource ? { txSource } : {}) });
  await lc.propose(xdr, {
    note: `rotate ${state.nodeId}: ${field === 'addProposal' ? 'add new key' : 'remove old key'}`,
    idempotencyKey: `rotate-${state.nodeId}-${field}-${Date.now()}`,
    onId: async (id) => {
      state[field] = id;
      await save();
    },
  });
}

async function waitConnected(lc: Lifecycle, nodeId: string, key: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const body = await httpOk(lc.coordinator('/v1/nodes'), { token: await lc.apiKey() });
    const n = (body.nodes as { id: string; stellarKey: string; connected: boolean }[]).find((x) => x.id === nodeId);
    if (n?.connected && n.stellarKey === key) return;
    if (Date.now() > deadline)
      throw cliErrors.error(
        'LIFECYCLE_TIMEOUT',
        { nodeId, key },
        { message: `${nodeId} did not reconnect with ${key} in time` },
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function registerRotate(program: Command, io: Out = stdio): void {
  targetOptions(program.command('rotate'))
    .description("rotate one node's signing key without stopping the cluster (resumable: run it again after a crash)")
    .requiredOption('--node <id>', 'the node whose key is rotated')
    .requiredOption('--account <address>', 'cluster account (repeat for each)', (v, acc: string[]) => [...acc, v], [])
    .requiredOption('--admin-url <url>', "the node's admin API")
    .option('--token-file <file>', "file holding the node's admin token")
    .option('--peer-admin-url <url...>', 'development clusters only: accept the new key on these nodes too')
    .option('--tx-source <address>', 'account whose sequence the changes use (default: the first --account)')
    .option('--state-dir <dir>', 'where the resumable state is kept', '.')
    .requiredOption('--backend <backend>', 'aws-kms | pkcs11 | local (the node key backend)')
    .option('--kms-endpoint <url>', 'aws-kms: endpoint (the emulator in development)')
    .option('--region <region>', 'aws-kms: region (default AWS_REGION)')
    .option('--old-key-id <id>', 'aws-kms: the old key (default: from the node keyring)')
    .option('--pending-window-days <n>', 'aws-kms: deletion waiting period, 7-30', Number)
    .option('--module <path>', 'pkcs11: module')
    .option('--token-label <label>', 'pkcs11: token label')
    .option('--pin-file <file>', 'pkcs11: user PIN file')
    .option('--key-file <file>', 'local: the new development key file')
    .addHelpText(
      'after',
      '\nAWS credentials (CreateKey, DisableKey, ScheduleKeyDeletion) come from the standard chain: the node\n' +
        "operator's admin role, never the node's own signing role.",
    )
    .action((f: RotateFlags) => run(() => rotate(f, io), io));
}
