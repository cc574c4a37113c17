import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { loadPolicy, type Policy } from '@cosigner/policy/schema';
import type { Logger } from 'pino';
import type { AuditLog } from './audit.ts';
import { nodeErrors } from './errors.ts';

/**
 * The node's policy, replaceable while it runs (`kill -HUP <pid>`, `POST /v1/policy/reload`, or
 * `cosigner node policy reload`). A new file is validated whole, as at start-up (schema, production rules, the
 * node's network) before it replaces the old one; a file that fails keeps the old policy in force and says why.
 * Each change is an audit entry (`policy.reloaded`) with the hashes of the old and the new file, so the audit
 * chain tells which policy judged every decision.
 *
 * A review reads `current` once when it evaluates; a reload between two reviews changes the next one only. The
 * velocity windows live in the signing ledger, not in the policy, so a reload neither resets nor doubles them.
 */

export interface PolicyState {
  readonly file: string;
  readonly sha256: string;
  readonly loadedAt: number;
}

export interface ReloadResult extends PolicyState {
  /** false when the file is byte for byte the one in force (nothing recorded). */
  readonly changed: boolean;
  readonly previous: string;
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

export class NodePolicy {
  #policy: Policy;
  #accounts: ReadonlySet<string>;
  #state: PolicyState;
  #reloading: Promise<ReloadResult> | undefined;

  constructor(
    private readonly o: {
      file: string;
      network: string;
      production: boolean;
      audit: AuditLog;
      logger: Logger;
      now?: () => number;
    },
    initial: { policy: Policy; text: string },
  ) {
    this.#policy = initial.policy;
    this.#accounts = new Set(initial.policy.accounts);
    this.#state = { file: o.file, sha256: sha256(initial.text), loadedAt: (o.now ?? Date.now)() };
  }

  /** The policy in force. */
  get current(): Policy {
    return this.#policy;
  }

  /** The accounts the policy in force cosigns for. */
  get accounts(): ReadonlySet<string> {
    return this.#accounts;
  }

  get state(): PolicyState {
    return this.#state;
  }

  /**
   * Read the policy file again and put it in force if it is valid. One reload at a time: a second call while one
   * runs gets the same result.
   * @throws CosignerError NODE_POLICY_REFUSED (the old policy stays in force; `details` names the problem)
   */
  reload(by: string): Promise<ReloadResult> {
    this.#reloading ??= this.#reload(by).finally(() => {
      this.#reloading = undefined;
    });
    return this.#reloading;
  }

  async #reload(by: string): Promise<ReloadResult> {
    const { file, audit, logger } = this.o;
    const previous = this.#state.sha256;
    let text: string;
    let next: Policy;
    try {
      text = await readFile(file, 'utf8');
    } catch (cause) {
      throw this.#refuse(by, undefined, 'POLICY_UNREADABLE', `Cannot read the policy file ${file}.`, cause);
    }
    try {
      next = loadPolicy(text, { production: this.o.production });
    } catch (e) {
      const err = e as { code?: string; message: string; details?: Record<string, unknown> };
      throw this.#refuse(by, sha256(text), err.code ?? 'POLICY_INVALID', err.message, e, err.details);
    }
    if (next.network !== this.o.network) {
      throw this.#refuse(
        by,
        sha256(text),
        'POLICY_WRONG_NETWORK',
        'The new policy names a different network passphrase than the node config (network).',
      );
    }
    const digest = sha256(text);
    const now = (this.o.now ?? Date.now)();
    if (digest === previous) {
      return { ...this.#state, changed: false, previous };
    }
    // Recorded before it takes effect: no decision is ever made under a policy the audit log does not name.
    audit.append('policy.reloaded', { file, previous, sha256: digest, by });
    this.#policy = next;
    this.#accounts = new Set(next.accounts);
    this.#state = { file, sha256: digest, loadedAt: now };
    logger.info({ file, previous, sha256: digest, by }, 'policy reloaded');
    return { ...this.#state, changed: true, previous };
  }

  #refuse(
    by: string,
    attempted: string | undefined,
    code: string,
    why: string,
    cause?: unknown,
    details?: Record<string, unknown>,
  ): Error {
    const kept = this.#state.sha256;
    this.o.audit.append('policy.reload_refused', { file: this.o.file, kept, attempted: attempted ?? null, code, by });
    this.o.logger.error({ file: this.o.file, code, kept, by }, `policy reload refused, the old policy stays: ${why}`);
    return nodeErrors.error(
      'NODE_POLICY_REFUSED',
      { code, kept, ...(details?.field !== undefined ? { field: details.field } : {}) },
      { message: `The policy was not reloaded; the node keeps the policy it had (sha256 ${kept}): ${why}`, cause },
    );
  }
}
