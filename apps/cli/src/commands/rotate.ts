import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import {
  DescribeKeyCommand,
  DisableKeyCommand,
  GetPublicKeyCommand,
  type KMSClient,
  ListKeysCommand,
  ListResourceTagsCommand,
  ScheduleKeyDeletionCommand,
} from '@aws-sdk/client-kms';
import { createKmsClient } from '@cosigner/keys/aws-kms/kms-signer';
import { addressOf, publicKeyFromSpki } from '@cosigner/keys/ed25519';
import type { SignerKind } from '@cosigner/keys/signer';
import { applyChanges, checkLockout, type SignerConfiguration } from '@cosigner/policy/lockout';
import { isProduction } from '@cosigner/runtime/mode';
import { readSecretFile } from '@cosigner/runtime/secrets';
import { type Command, InvalidArgumentError } from 'commander';
import { cliErrors } from '../errors.ts';
import {
  type Changes,
  http,
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
import { type KeyReport, keysCreate, keysShow } from './keys.ts';

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
 * Crash safety. Every step is written to a state file (`<state-dir>/rotate-<node>.json`, atomically) before the
 * next starts, and every step checks the world before acting (is the key already a signer? already active?).
 * The three requests that are not idempotent by themselves (CreateKey and the two proposals) first record an
 * INTENT in the state file, before the request leaves: a key derived from the rotation and the step
 * (`rotationKey`). The rotation is named by the node and its old key, which a node rotates away from once (the
 * node refuses to prepare a retired key), so the key is the same in every run, even one without the state file.
 * A run that finds an intent without its result looks the result up by that key: the proposal through the
 * coordinator (`GET /v1/proposals?idempotencyKey=`), the KMS key by its `cosigner-rotation` tag, the PKCS#11 key
 * by its CKA_ID. A proposal POST that raced a kill is answered by the coordinator's idempotency check, never
 * created twice. So a run killed anywhere (between steps or inside any request) and run again makes one key, one
 * add and one removal.
 *
 * Between steps 4 and 7 the node's two keys are both signers. The node signs with exactly one, and the old key
 * is disabled right after the switch; the lock-out check on that transitional state counts the two keys as
 * separate parties and prints one warning when together they would reach a threshold.
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
type Reported = 'started' | RotateStep;

/** A request recorded before it leaves: its idempotency key, which attempt it is, and its result once known. */
export interface Intent {
  key: string;
  attempt: number;
  proposalId?: string;
}

export interface RotateState {
  nodeId: string;
  /** Derived from the node and its old key (`rotationId`): names this rotation's requests in every run. */
  rotationId: string;
  accounts: string[];
  oldKey: string;
  weight: number;
  backend: SignerKind;
  oldKeyId?: string;
  newKeyId?: string;
  newKey?: string;
  addProposal?: string;
  removeProposal?: string;
  intents: { create?: Intent; add?: Intent; remove?: Intent };
  done: RotateStep[];
  /** Steps whose `lifecycle.step` event the coordinator acknowledged (a step done but not reported is sent again). */
  reported: Reported[];
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
  /** Stop after `prepared` and print what the other operators allow (the first pass of a two-pass rotation). */
  prepareOnly?: boolean;
  /** Seconds to wait for each proposal (held for manual approval, or just slow). Default 90. */
  wait?: number;
  /** Seconds each proposal's transaction stays valid (its upper time bound). Default 120. */
  proposalWindow?: number;
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

/** The rotation's name: the node and the key it rotates away from. */
export function rotationId(nodeId: string, oldKey: string): string {
  return createHash('sha256').update(`stellar-cosigner/rotate\n${nodeId}\n${oldKey}`).digest('hex').slice(0, 16);
}

/** The idempotency key of one request of a rotation (coordinator pattern `^[A-Za-z0-9._:-]+$`, at most 128). */
export function rotationKey(rid: string, what: 'create' | 'add' | 'remove', attempt: number): string {
  return `rotate.${rid}.${what}.${attempt}`;
}

/** The tag a rotation's new KMS key carries, so a run that lost CreateKey's answer finds the key. */
export const ROTATION_TAG = 'cosigner-rotation';

async function saveState(file: string, s: RotateState): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(s, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, file);
}

export async function loadState(file: string): Promise<RotateState | undefined> {
  let s: Partial<RotateState>;
  try {
    s = JSON.parse(await readFile(file, 'utf8')) as Partial<RotateState>;
  } catch {
    return undefined;
  }
  // A state file written before intents were recorded: its proposals are known by id only (attempt 0, a key
  // that was never sent), so they are waited for, never proposed a second time.
  const rid = s.rotationId ?? rotationId(String(s.nodeId), String(s.oldKey));
  const legacy = (what: 'add' | 'remove', id: string | undefined): Intent | undefined =>
    id ? { key: rotationKey(rid, what, 0), attempt: 0, proposalId: id } : undefined;
  const add = legacy('add', s.addProposal);
  const remove = legacy('remove', s.removeProposal);
  return {
    ...s,
    rotationId: rid,
    intents: s.intents ?? { ...(add ? { add } : {}), ...(remove ? { remove } : {}) },
    reported: s.reported ?? ['started', ...(s.done ?? [])],
  } as RotateState;
}

/**
 * Where a test may kill the command (never in production mode), named by `COSIGNER_ROTATE_KILL_AT`:
 * `after:<step>` once the step is recorded and reported (`after:started` too), `sent:<request>` once a request
 * reached its server and was answered, before the answer is recorded. Requests: `create-key`, `prepare`,
 * `roster`, `propose-add`, `registry`, `activate`, `disable-key`, `propose-remove`, `schedule-deletion`, and
 * `event:<step>` for each step's lifecycle event. test/e2e/rotate-crash.test.ts kills at each in turn.
 */
export const REQUESTS = [
  'create-key',
  'prepare',
  'roster',
  'propose-add',
  'registry',
  'activate',
  'disable-key',
  'propose-remove',
  'schedule-deletion',
] as const;

function killPoints(): Set<string> {
  const steps: Reported[] = ['started', ...ROTATE_STEPS];
  return new Set([
    ...steps.map((s) => `after:${s}`),
    ...steps.map((s) => `sent:event:${s}`),
    ...REQUESTS.map((r) => `sent:${r}`),
  ]);
}

function killHook(env: NodeJS.ProcessEnv): (point: string) => void {
  const at = env.COSIGNER_ROTATE_KILL_AT;
  if (at === undefined || at === '' || isProduction(undefined, env)) return () => {};
  if (!killPoints().has(at)) {
    throw cliErrors.error(
      'LIFECYCLE_OPTION_REQUIRED',
      { option: 'COSIGNER_ROTATE_KILL_AT' },
      { message: `COSIGNER_ROTATE_KILL_AT=${at} names no point of the rotation` },
    );
  }
  return (point) => {
    if (point === at) process.kill(process.pid, 'SIGKILL');
  };
}

const hasKey = (c: SignerConfiguration, key: string): boolean => c.signers.some((s) => s.key === key);

export async function rotate(
  f: RotateFlags,
  io: Out = stdio,
  env: NodeJS.ProcessEnv = process.env,
): Promise<RotateState> {
  if (f.account.length === 0) throw required('--account', 'for a rotation');
  const kill = killHook(env);
  const lc = new Lifecycle({ ...f, timeoutSeconds: f.proposalWindow ?? 120 }, io);
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
    // Every account the old key signs must be in the rotation: the old key's KMS key is disabled and scheduled for
    // deletion at the end, so an account left out would keep a signer nobody can sign for (its quorum shrinks, or
    // it is locked out). Horizon lists the accounts by signer; the check is made once, before anything changes.
    const missing = (await lc.accountsSignedBy(oldKey)).filter((a) => !f.account.includes(a));
    if (missing.length > 0)
      throw cliErrors.error(
        'LIFECYCLE_ACCOUNTS_MISSING',
        { node: f.node, key: oldKey, option: '--account', missing: missing.join(',') },
        {
          message:
            `${f.node}'s key ${oldKey} also signs ${missing.join(', ')}: name every account it signs with ` +
            '--account (the old key is scheduled for deletion at the end of the rotation)',
        },
      );
    const active = (keyring.keys as { address: string; keyId: string }[]).find((k) => k.address === oldKey);
    s = {
      nodeId: f.node,
      rotationId: rotationId(f.node, oldKey),
      accounts: f.account,
      oldKey,
      weight,
      backend: f.backend,
      ...((f.oldKeyId ?? active?.keyId) ? { oldKeyId: f.oldKeyId ?? active?.keyId } : {}),
      intents: {},
      done: [],
      reported: [],
      startedAt: new Date().toISOString(),
    };
    await saveState(file, s);
  } else {
    io.out(`[rotate] resuming ${f.node} after ${s.done.at(-1) ?? 'start'}`);
  }
  const state = s;
  const save = () => saveState(file, state);
  const report = async (step: Reported, detail: Record<string, string | number | boolean | null>): Promise<void> => {
    await lc.step({
      action: 'rotate',
      step,
      account: state.accounts[0]!,
      nodeId: state.nodeId,
      detail: { rotation: state.rotationId, ...detail },
    });
    kill(`sent:event:${step}`);
    if (!state.reported.includes(step)) state.reported.push(step);
    await save();
    kill(`after:${step}`);
  };
  // What each step's event says, from the state alone: the same in the run that did the step and in one that
  // sends its event again.
  const detailOf = (step: Reported): Record<string, string | number | boolean | null> => {
    switch (step) {
      case 'started':
        return { oldKey: state.oldKey };
      case 'key-created':
        return { newKey: state.newKey ?? null };
      case 'roster':
        return { peers: (f.peerAdminUrl ?? []).length };
      case 'added':
        return { proposalId: state.addProposal ?? null };
      case 'removed':
        return { proposalId: state.removeProposal ?? null };
      case 'old-disabled':
      case 'deletion-scheduled':
        return { keyId: state.oldKeyId ?? null };
      default:
        return {};
    }
  };
  const mark = async (step: RotateStep) => {
    if (!state.done.includes(step)) state.done.push(step);
    await save();
    await report(step, detailOf(step));
  };
  const todo = (step: RotateStep): boolean => !state.done.includes(step);
  // A step recorded by an earlier run that was killed before the coordinator acknowledged its event: at least
  // once, with the rotation id in the detail, so a reader can drop the duplicate of an event that did arrive.
  for (const step of ['started', ...state.done] as Reported[]) {
    if (!state.reported.includes(step)) await report(step, detailOf(step));
  }

  if (todo('key-created')) {
    const made = await createKeyOnce(f, state, save, kill, env, io);
    state.newKeyId = made.keyId;
    state.newKey = made.address;
    await mark('key-created');
  }
  const newKey = state.newKey as string;
  const newKeyId = state.newKeyId as string;

  if (todo('prepared')) {
    await httpOk(nodeApi('/v1/keyring/prepare'), {
      method: 'POST',
      token,
      body: { keyId: newKeyId, expectedAddress: newKey, by: 'rotate' },
    });
    kill('sent:prepare');
    await mark('prepared');
  }

  if (f.prepareOnly && todo('added')) {
    io.out(
      `[rotate] ${state.nodeId}'s new key is ${newKey} (pending on the node; it signs with ${state.oldKey} until the switch).\n` +
        "Before the second pass, each other operator accepts it on their node's roster (their policy has\n" +
        'signerChanges.clusterMembers: true):\n' +
        `  cosigner node roster allow --admin-url <their node's admin URL> --address ${newKey} --member ${state.nodeId}\n` +
        'Then run this command again without --prepare-only.',
    );
    return state;
  }

  if (todo('roster')) {
    for (const peer of f.peerAdminUrl ?? []) {
      await httpOk(new URL('/v1/roster', peer).toString(), {
        method: 'POST',
        token,
        body: { address: newKey, nodeId: state.nodeId, by: 'rotate' },
      });
      kill('sent:roster');
    }
    await mark('roster');
  }

  const nodes = await lc.nodesByKey();
  const waitMs = (f.wait ?? 90) * 1000;
  if (todo('added')) {
    const add: Changes = { signers: [{ key: newKey, weight: state.weight, node: `${state.nodeId} (new key)` }] };
    const missing = async (check: boolean): Promise<string[]> => {
      const out: string[] = [];
      const together: string[] = [];
      for (const a of state.accounts) {
        const c = await lc.configuration(a, nodes);
        if (hasKey(c, newKey)) continue;
        out.push(a);
        if (!check) continue;
        const during = checkLockout(applyChanges(c, add));
        if (!during.ok) {
          throw new LockoutError(during, `the rotation (while both keys are signers of ${a})`);
        }
        const both = checkLockout(
          applyChanges(
            { ...c, signers: c.signers.map((x) => ({ ...x, node: x.key === state.oldKey ? state.nodeId : x.node })) },
            { signers: [{ key: newKey, weight: state.weight, node: state.nodeId }] },
          ),
        );
        if (!both.ok) together.push(a);
      }
      if (together.length > 0) {
        io.out(
          `[rotate] warning: until the old key is disabled (a few seconds), ${state.nodeId}'s two keys together could reach a threshold of ${together.join(', ')}; the node signs with exactly one`,
        );
      }
      return out;
    };
    await proposeOnce(lc, state, 'add', missing, add, { txSource: f.txSource, waitMs, save, kill });
    await lc.waitAccount(state.accounts[0]!, (c) => hasKey(c, newKey));
    await mark('added');
  }

  if (todo('registry')) {
    if (f.coordinatorUrl) {
      await httpOk(lc.coordinator(`/v1/nodes/${encodeURIComponent(state.nodeId)}/stellar-key`), {
        method: 'PUT',
        token: await lc.apiKey(),
        body: { stellarKey: newKey, account: state.accounts[0]! },
      });
      kill('sent:registry');
    }
    await mark('registry');
  }

  if (todo('switched')) {
    await httpOk(nodeApi('/v1/keyring/activate'), { method: 'POST', token, body: { address: newKey, by: 'rotate' } });
    kill('sent:activate');
    if (f.coordinatorUrl) await waitConnected(lc, state.nodeId, newKey);
    await mark('switched');
  }

  if (todo('old-disabled')) {
    if (state.backend === 'aws-kms' && state.oldKeyId) {
      const client = createKmsClient({ region: kmsRegion(f, env), endpoint: f.kmsEndpoint });
      try {
        await client.send(new DisableKeyCommand({ KeyId: state.oldKeyId }));
        kill('sent:disable-key');
      } finally {
        client.destroy();
      }
    }
    await mark('old-disabled');
  }

  if (todo('removed')) {
    const remove: Changes = { signers: [{ key: state.oldKey, weight: 0 }] };
    const still = async (check: boolean): Promise<string[]> => {
      const out: string[] = [];
      for (const a of state.accounts) {
        const c = await lc.configuration(a, nodes);
        if (!hasKey(c, state.oldKey)) continue;
        out.push(a);
        // Removing the old key gives the node back its weight from before the rotation: quorum intersection is what
        // the operator accepted then, so it is not judged again here (a rotation must not stop half done).
        if (check)
          requireSafe(applyChanges(c, remove), `removing ${state.oldKey} from ${a}`, { allowDisjointQuorums: true });
      }
      return out;
    };
    await proposeOnce(lc, state, 'remove', still, remove, { txSource: f.txSource, waitMs, save, kill });
    await lc.waitAccount(state.accounts[0]!, (c) => !hasKey(c, state.oldKey));
    await mark('removed');
  }

  if (todo('deletion-scheduled')) {
    if (state.backend === 'aws-kms' && state.oldKeyId) {
      const client = createKmsClient({ region: kmsRegion(f, env), endpoint: f.kmsEndpoint });
      try {
        await client.send(
          new ScheduleKeyDeletionCommand({ KeyId: state.oldKeyId, PendingWindowInDays: f.pendingWindowDays ?? 30 }),
        );
        kill('sent:schedule-deletion');
      } catch (e) {
        // A rerun after the deletion was scheduled: KMS refuses a second schedule on a PendingDeletion key.
        if ((e as { name?: string }).name !== 'KMSInvalidStateException') throw e;
      } finally {
        client.destroy();
      }
    }
    await mark('deletion-scheduled');
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
 * Create the new key once. The intent (the rotation's `create` key) is saved before the backend is asked; a run
 * that finds the intent without a key looks for the key the earlier run may have made before it died: in KMS the
 * key tagged `cosigner-rotation=<key>` (CreateKey sets the tag atomically with the key), on a PKCS#11 token the key
 * whose CKA_ID is the rotation id, a local key at the given file.
 */
async function createKeyOnce(
  f: RotateFlags,
  state: RotateState,
  save: () => Promise<void>,
  kill: (point: string) => void,
  env: NodeJS.ProcessEnv,
  io: Out,
): Promise<KeyReport> {
  const backend = {
    backend: f.backend,
    ...(f.kmsEndpoint ? { endpoint: f.kmsEndpoint } : {}),
    ...(f.region ? { region: f.region } : {}),
    ...(f.module ? { module: f.module } : {}),
    ...(f.tokenLabel ? { tokenLabel: f.tokenLabel } : {}),
    ...(f.pinFile ? { pinFile: f.pinFile } : {}),
    ...(f.keyFile ? { keyFile: f.keyFile } : {}),
  };
  const intent = state.intents.create;
  if (intent) {
    const found = await findCreatedKey(f, intent.key, state.rotationId, env);
    if (found) {
      io.out(`[rotate] found the key an earlier run created: ${found.address}`);
      return found;
    }
  } else {
    state.intents.create = { key: rotationKey(state.rotationId, 'create', 1), attempt: 1 };
    await save();
  }
  const key = state.intents.create!.key;
  const made = await keysCreate(
    {
      ...backend,
      description: `stellar-cosigner ${f.node} signing key (rotation of ${state.oldKey})`,
      ...(f.backend === 'aws-kms' ? { tag: [`${ROTATION_TAG}=${key}`] } : {}),
      ...(f.backend === 'pkcs11' ? { keyIdHex: state.rotationId, label: key } : {}),
    },
    env,
  );
  kill('sent:create-key');
  return made;
}

async function findCreatedKey(
  f: RotateFlags,
  key: string,
  rid: string,
  env: NodeJS.ProcessEnv,
): Promise<KeyReport | undefined> {
  switch (f.backend) {
    case 'aws-kms': {
      const client = createKmsClient({ region: kmsRegion(f, env), endpoint: f.kmsEndpoint });
      try {
        return await findTaggedKmsKey(client, ROTATION_TAG, key);
      } finally {
        client.destroy();
      }
    }
    case 'pkcs11':
    case 'local': {
      const show = {
        backend: f.backend,
        ...(f.backend === 'pkcs11' ? { keyId: rid } : {}),
        ...(f.module ? { module: f.module } : {}),
        ...(f.tokenLabel ? { tokenLabel: f.tokenLabel } : {}),
        ...(f.pinFile ? { pinFile: f.pinFile } : {}),
        ...(f.keyFile ? { keyFile: f.keyFile } : {}),
      };
      try {
        return await keysShow(show, env);
      } catch (e) {
        if ((e as { code?: string }).code === 'KEYS_KEY_NOT_FOUND') return undefined;
        throw e;
      }
    }
  }
}

/**
 * The enabled KMS key carrying the tag (ListKeys, ListResourceTags; newest first, as a lost CreateKey is recent).
 * Needs kms:ListKeys on the account and kms:ListResourceTags on the keys (the key administrator role has both).
 */
export async function findTaggedKmsKey(
  client: KMSClient,
  tagKey: string,
  tagValue: string,
): Promise<KeyReport | undefined> {
  const ids: string[] = [];
  let marker: string | undefined;
  do {
    const page = await client.send(new ListKeysCommand({ Limit: 1000, ...(marker ? { Marker: marker } : {}) }));
    for (const k of page.Keys ?? []) if (k.KeyArn ?? k.KeyId) ids.push((k.KeyArn ?? k.KeyId)!);
    marker = page.Truncated ? page.NextMarker : undefined;
  } while (marker);
  for (const id of ids.reverse()) {
    const tags = await client.send(new ListResourceTagsCommand({ KeyId: id }));
    if (!(tags.Tags ?? []).some((t) => t.TagKey === tagKey && t.TagValue === tagValue)) continue;
    const meta = (await client.send(new DescribeKeyCommand({ KeyId: id }))).KeyMetadata;
    if (meta?.KeyState !== 'Enabled') continue;
    const publicKey = publicKeyFromSpki((await client.send(new GetPublicKeyCommand({ KeyId: id }))).PublicKey!);
    return {
      backend: 'aws-kms',
      keyId: meta.Arn ?? id,
      address: addressOf(publicKey),
      publicKey: publicKey.toString('hex'),
    };
  }
  return undefined;
}

interface ProposalView {
  id: string;
  status: string;
  decisions?: { nodeId: string; outcome: string; reasons?: { code: string; message: string }[] }[];
}

/** The proposal created with an idempotency key, if the coordinator has one. */
async function proposalByKey(lc: Lifecycle, key: string): Promise<ProposalView | undefined> {
  const body = await httpOk(lc.coordinator(`/v1/proposals?idempotencyKey=${encodeURIComponent(key)}`), {
    token: await lc.apiKey(),
  });
  return (body.items as ProposalView[])[0];
}

/**
 * Propose a change once. The intent (the rotation's key for this step and attempt) is saved before the POST; a
 * proposal found under it is waited for, never proposed again. Only one that ended without being applied is
 * proposed anew, under the next attempt's key, and only by a rerun: within one run an ending is reported, not
 * repeated.
 * @param pending the accounts that still need the change (`check`: also run the lock-out check on each)
 */
async function proposeOnce(
  lc: Lifecycle,
  state: RotateState,
  what: 'add' | 'remove',
  pending: (check: boolean) => Promise<string[]>,
  changes: Changes,
  o: { txSource?: string; waitMs: number; save: () => Promise<void>; kill: (point: string) => void },
): Promise<void> {
  const field = what === 'add' ? 'addProposal' : 'removeProposal';
  const deadline = Date.now() + o.waitMs;
  let createdHere = false;
  let conflicted = false;
  for (;;) {
    const intent = state.intents[what];
    let attempt = intent?.attempt ?? 1;
    if (intent) {
      const found = intent.proposalId ? { id: intent.proposalId } : await proposalByKey(lc, intent.key);
      if (found) {
        if (state[field] !== found.id || intent.proposalId !== found.id) {
          intent.proposalId = found.id;
          state[field] = found.id;
          await o.save();
        }
        try {
          await waitApproved(lc, found.id, deadline, state.nodeId);
          return;
        } catch (e) {
          if (!(e instanceof ProposalEndedError)) throw e;
          // Proposed in this run and ended: report it. Proposing again at once would not help: a node that signed
          // the expired transaction keeps its sequence number for its slotGraceSeconds after the time bound
          // (SLOT_TAKEN), so the operator reruns once the refusal's cause is dealt with.
          if (createdHere) throw e;
          lc.io.out(`[rotate] earlier proposal ${found.id} ended ${e.outcome}; proposing again`);
          attempt = intent.attempt + 1;
        }
      }
    }
    const accounts = await pending(true);
    // Nothing left to change (an earlier proposal was applied, or someone else made the change).
    if (accounts.length === 0) return;
    if (!intent || intent.attempt !== attempt) {
      state.intents[what] = { key: rotationKey(state.rotationId, what, attempt), attempt };
      await o.save();
    }
    const key = state.intents[what]!.key;
    const xdr = await lc.buildChange({ accounts, changes, ...(o.txSource ? { txSource: o.txSource } : {}) });
    const r = await http(lc.coordinator('/v1/proposals'), {
      method: 'POST',
      token: await lc.apiKey(),
      body: {
        xdr,
        submit: true,
        idempotencyKey: key,
        note: `rotate ${state.nodeId}: ${what === 'add' ? 'add new key' : 'remove old key'}`,
      },
    });
    o.kill(`sent:propose-${what}`);
    const code = (r.body as { code?: string }).code;
    // Another run's POST under the same key got there first (one that died with its request in flight): the
    // coordinator keeps one proposal per key; the loop looks it up.
    if (r.status === 409 && code === 'COORD_IDEMPOTENCY_CONFLICT' && !conflicted) {
      conflicted = true;
      continue;
    }
    if (r.status < 200 || r.status >= 300) {
      throw cliErrors.error(
        'LIFECYCLE_CALL_FAILED',
        { call: 'POST /v1/proposals', status: r.status },
        { message: `POST /v1/proposals answered ${r.status}: ${JSON.stringify(r.body)}` },
      );
    }
    const id = String((r.body as { id: string }).id);
    state.intents[what]!.proposalId = id;
    state[field] = id;
    await o.save();
    createdHere = true;
  }
}

/**
 * Wait until the proposal is submitted (or ends). While nodes hold it for manual approval, say once which nodes
 * and what their operators run; the deadline is `--wait`.
 * @throws ProposalEndedError, CosignerError LIFECYCLE_TIMEOUT
 */
export async function waitApproved(lc: Lifecycle, id: string, deadline: number, nodeId: string): Promise<void> {
  const token = await lc.apiKey();
  let told = false;
  let seen = '';
  let since = 0;
  for (;;) {
    const v = (await httpOk(lc.coordinator(`/v1/proposals/${encodeURIComponent(id)}`), {
      token,
    })) as unknown as ProposalView;
    if (['submitted', 'failed', 'rejected', 'expired', 'cancelled'].includes(v.status)) {
      await lc.waitProposal(id, 0);
      return;
    }
    const held = (v.decisions ?? []).filter((d) => d.outcome === 'hold').map((d) => d.nodeId);
    const decided = new Set(
      (v.decisions ?? []).filter((d) => d.outcome !== 'hold' && d.outcome !== 'unavailable').map((d) => d.nodeId),
    );
    const waitingFor = held.filter((n) => !decided.has(n)).sort();
    // Said once per proposal, when the set of holding nodes has been the same for a second (the nodes answer one
    // by one), so the line names every node that holds it.
    if (waitingFor.join(',') !== seen) {
      seen = waitingFor.join(',');
      since = Date.now();
    }
    if (waitingFor.length > 0 && !told && Date.now() - since >= 1000) {
      told = true;
      lc.io.out(
        `[rotate] proposal ${id} is held for manual approval on ${waitingFor.join(', ')} (rotation of ${nodeId}); ` +
          `each of their operators reviews it and runs: cosigner node approve ${id} --admin-url <their node's admin URL>`,
      );
    }
    if (Date.now() > deadline) {
      throw cliErrors.error(
        'LIFECYCLE_TIMEOUT',
        { proposalId: id, status: v.status, ...(waitingFor.length ? { heldBy: waitingFor } : {}) },
        {
          message:
            `proposal ${id} is still ${v.status}${waitingFor.length ? `, held by ${waitingFor.join(', ')}` : ''}; ` +
            'run the same command again to keep waiting (a longer --wait waits longer)',
        },
      );
    }
    await new Promise((r) => setTimeout(r, 150));
  }
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

function seconds(min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`must be ${min}-${max} seconds`);
    return n;
  };
}

export function registerRotate(program: Command, io: Out = stdio): void {
  targetOptions(program.command('rotate'))
    .description("rotate one node's signing key without stopping the cluster (resumable: run it again after a crash)")
    .requiredOption('--node <id>', 'the node whose key is rotated')
    .requiredOption('--account <address>', 'cluster account (repeat for each)', (v, acc: string[]) => [...acc, v], [])
    .requiredOption('--admin-url <url>', "the node's admin API")
    .option('--token-file <file>', "file holding the node's admin token")
    .option('--peer-admin-url <url...>', 'development clusters only: accept the new key on these nodes too')
    .option('--prepare-only', 'create and prepare the new key, print what the other operators allow, stop')
    .option(
      '--wait <seconds>',
      'how long to wait for each proposal, e.g. while nodes hold it for manual approval (default 90)',
      seconds(1, 86_400),
    )
    .option(
      '--proposal-window <seconds>',
      "each proposal's validity (its upper time bound; the nodes' validity.maxWindowSeconds must allow it; default 120)",
      seconds(30, 86_400),
    )
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
      '\nAWS credentials (CreateKey, TagResource, ListKeys, ListResourceTags, DisableKey, ScheduleKeyDeletion) come\n' +
        "from the standard chain: the node operator's admin role, never the node's own signing role.",
    )
    .action((f: RotateFlags) => run(() => rotate(f, io), io));
}
