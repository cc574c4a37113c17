import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { readSecretFile, secretEquals, writePrivateFile } from '@cosigner/runtime/secrets';
import { coordinatorErrors } from './errors.ts';
import type { ApiKeyRecord, ApiKeyRepository, AwaitableRepository } from './store.ts';

type ApiKeys = AwaitableRepository<ApiKeyRepository>;

/**
 * Client API keys: `cak.<id>.<secret>`. The id finds the row; only sha256(key) is stored and the presented
 * key's hash is compared in constant time (runtime secretEquals), so neither a database leak nor response
 * timing yields a usable key.
 */
export const SCOPES = ['propose', 'read', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

const KEY_RE = /^cak\.([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$/;

export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** Check a scope list from a flag or request. @throws COORD_BAD_REQUEST naming the unknown scope */
export function parseScopes(list: string): Scope[] {
  const scopes = list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (scopes.length === 0)
    throw coordinatorErrors.error(
      'COORD_BAD_REQUEST',
      { field: 'scopes' },
      { message: 'At least one scope is needed (propose, read, admin).' },
    );
  for (const s of scopes) {
    if (!(SCOPES as readonly string[]).includes(s)) {
      throw coordinatorErrors.error(
        'COORD_BAD_REQUEST',
        { field: 'scopes', scope: s },
        { message: `Unknown scope ${s}: use propose, read or admin.` },
      );
    }
  }
  return [...new Set(scopes)] as Scope[];
}

/** Create and store a new key; the returned `key` is shown once and never stored. */
export async function createApiKey(
  repo: ApiKeys,
  scopes: Scope[],
  label: string | null = null,
): Promise<{ id: string; key: string }> {
  const id = randomBytes(8).toString('hex');
  const key = `cak.${id}.${randomBytes(32).toString('base64url')}`;
  await repo.insertApiKey({ id, hash: hashKey(key), scopes, label, createdAt: Date.now(), revokedAt: null });
  return { id, key };
}

/** The key's record when `presented` is a live key, else undefined. Never throws on garbage input. */
export async function authenticate(repo: ApiKeys, presented: string): Promise<ApiKeyRecord | undefined> {
  const m = KEY_RE.exec(presented);
  if (!m) return undefined;
  const rec = await repo.getApiKey(m[1]!);
  if (!rec || rec.revokedAt !== null) return undefined;
  return secretEquals(hashKey(presented), rec.hash) ? rec : undefined;
}

/**
 * The admin key file is the operator's handle on a fresh coordinator: created (0600) with every scope when
 * absent, re-registered when the database is new but the file exists. Returns whether it was created, so the
 * caller can log the PATH (never the key).
 */
export async function ensureAdminKey(repo: ApiKeys, file: string): Promise<{ created: boolean }> {
  let existing: string | undefined;
  try {
    await readFile(file);
    existing = await readSecretFile(file, 'admin API key');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (existing !== undefined) {
    const m = KEY_RE.exec(existing);
    if (!m)
      throw coordinatorErrors.error(
        'COORD_BAD_CONFIG',
        { field: 'adminKeyFile' },
        { message: `The admin key file ${file} does not hold a coordinator API key.` },
      );
    if (!(await repo.getApiKey(m[1]!))) {
      await repo.insertApiKey({
        id: m[1]!,
        hash: hashKey(existing),
        scopes: [...SCOPES],
        label: 'admin',
        createdAt: Date.now(),
        revokedAt: null,
      });
    }
    return { created: false };
  }
  const { key } = await createApiKey(repo, [...SCOPES], 'admin');
  await writePrivateFile(file, `${key}\n`);
  return { created: true };
}
