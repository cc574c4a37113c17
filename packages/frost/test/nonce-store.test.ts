import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT, tempDir } from '@cosigner/testkit/process';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteNonceStore } from '../src/nonce-store.ts';
import { aggregate, type Commitment, commitNonces } from '../src/rounds.ts';
import { FrostSigner } from '../src/signer.ts';
import { verifyEd25519 } from '../src/suite.ts';
import { groupOf } from './scenario.ts';

const code = (c: string, details?: Record<string, unknown>) =>
  expect.objectContaining(details ? { code: c, details: expect.objectContaining(details) } : { code: c });

let dir: string;
beforeAll(async () => {
  dir = await tempDir('frost-nonces-');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// The two crash tests start a tsx child process each: seconds on an idle machine, more under load.
/** Run the participant in a child process, wait for its JSON line, then SIGKILL it (no shutdown code runs). */
async function runThenKill(job: Record<string, unknown>): Promise<{ commitment: Commitment; share?: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures/nonce-child.ts')], {
    cwd: REPO_ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin.end(JSON.stringify(job));
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => {
    err += d;
  });
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    });
    child.on('exit', (c) => reject(new Error(`child exited ${c}: ${err}`)));
  });
  const exited = new Promise((r) => child.on('exit', r));
  child.kill('SIGKILL');
  await exited;
  return JSON.parse(line);
}

describe('the nonce store: a nonce is recorded before its commitment leaves and used at most once', () => {
  it('after a crash between the rounds the node refuses the round: no second share, no second commitment', async () => {
    const outputs = groupOf(3, 2, 'crash');
    const [a, b] = outputs;
    const path = join(dir, 'crash-a.sqlite');
    const message = randomBytes(32);
    const job = {
      group: a!.group,
      index: 1,
      share: Buffer.from(a!.share.signingShare).toString('hex'),
      store: path,
      roundId: 'round-crash-1',
    };
    // Round one in the child; killed before round two.
    const { commitment } = await runThenKill(job);
    // The commitment that left the process is on disk, with no nonce beside it.
    const raw = new Database(path, { readonly: true });
    const rows = raw.prepare('SELECT * FROM frost_nonces').all() as Record<string, unknown>[];
    raw.close();
    expect(rows).toEqual([
      expect.objectContaining({
        round_id: 'round-crash-1',
        state: 'issued',
        commitment: `${commitment.hiding}:${commitment.binding}`,
      }),
    ]);
    expect(Object.keys(rows[0]!).sort()).toEqual(
      ['closed_at', 'commitment', 'group_key', 'issued_at', 'participant', 'round_id', 'state'].sort(),
    );
    // Restart: the store is reopened from the file, the lost round is marked, and both rounds are refused.
    const store = SqliteNonceStore.open(path);
    expect(store.state('round-crash-1')).toBe('issued');
    expect(store.recover()).toBe(1);
    const signer = new FrostSigner({ group: a!.group, share: a!.share, store });
    const cb = commitNonces(b!.share).commitment;
    expect(() => signer.sign('round-crash-1', [commitment, cb], message)).toThrow(code('FROST_NONCE_LOST'));
    expect(() => signer.commit('round-crash-1')).toThrow(code('FROST_NONCE_REUSED'));
    expect(store.state('round-crash-1')).toBe('lost');
    // A new round works.
    const sb = new FrostSigner({
      group: b!.group,
      share: b!.share,
      store: SqliteNonceStore.open(join(dir, 'crash-b.sqlite')),
    });
    const c1 = signer.commit('round-crash-2');
    const c2 = sb.commit('round-crash-2');
    const shares = {
      '1': signer.sign('round-crash-2', [c1, c2], message),
      '2': sb.sign('round-crash-2', [c1, c2], message),
    };
    expect(
      verifyEd25519(
        Buffer.from(a!.group.groupPublicKey, 'hex'),
        message,
        aggregate(a!.group, [c1, c2], message, shares),
      ),
    ).toBe(true);
    store.close();
  }, 120_000);

  it('a share released before a crash is never released again for that round', async () => {
    const outputs = groupOf(3, 2, 'crash-used');
    const [a, b] = outputs;
    const path = join(dir, 'used-a.sqlite');
    const other = commitNonces(b!.share).commitment;
    const message = randomBytes(32);
    const first = await runThenKill({
      group: a!.group,
      index: 1,
      share: Buffer.from(a!.share.signingShare).toString('hex'),
      store: path,
      roundId: 'round-used',
      sign: true,
      others: [other],
      message: message.toString('hex'),
    });
    expect(first.share).toMatch(/^[0-9a-f]{64}$/);
    const store = SqliteNonceStore.open(path);
    expect(store.state('round-used')).toBe('used');
    expect(store.recover()).toBe(0);
    const signer = new FrostSigner({ group: a!.group, share: a!.share, store });
    for (const msg of [message, randomBytes(32)]) {
      expect(() => signer.sign('round-used', [first.commitment, other], msg)).toThrow(code('FROST_NONCE_REUSED'));
    }
    expect(() => signer.commit('round-used')).toThrow(code('FROST_NONCE_REUSED'));
    store.close();
  }, 120_000);

  it('in one process: a second share for a round, a changed commitment, an unknown round are refused', () => {
    const outputs = groupOf(3, 2, 'one-process');
    const [a, b] = outputs;
    const store = SqliteNonceStore.open(join(dir, 'one.sqlite'));
    const signer = new FrostSigner({ group: a!.group, share: a!.share, store });
    const cb = commitNonces(b!.share).commitment;
    const ca = signer.commit('r');
    expect(signer.pending).toBe(1);
    expect(() => signer.sign('r', [{ ...ca, hiding: cb.hiding }, cb], randomBytes(32))).toThrow(
      code('FROST_COMMITMENT_MISMATCH'),
    );
    expect(() => signer.sign('r', [cb, commitNonces(outputs[2]!.share).commitment], randomBytes(32))).toThrow(
      code('FROST_COMMITMENT_MISMATCH', { reason: 'absent' }),
    );
    expect(signer.sign('r', [ca, cb], randomBytes(32))).toHaveLength(32);
    expect(() => signer.sign('r', [ca, cb], randomBytes(32))).toThrow(code('FROST_NONCE_REUSED'));
    expect(() => signer.sign('never', [ca, cb], randomBytes(32))).toThrow(code('FROST_NONCE_UNKNOWN'));
    expect(() => signer.commit('r')).toThrow(code('FROST_NONCE_REUSED'));
    expect(store.state('nope')).toBeUndefined();
    // The records cannot be reopened or deleted, even by SQL on the file.
    expect(() => store.db.prepare(`UPDATE frost_nonces SET state = 'issued' WHERE round_id = 'r'`).run()).toThrow(
      /never becomes usable again/,
    );
    expect(() => store.db.prepare('DELETE FROM frost_nonces').run()).toThrow(/never deleted/);
    signer.commit('pending');
    signer.close();
    expect(signer.pending).toBe(0);
    store.close();
    store.close();
  });

  it('refuses a file of a newer schema and reports a failed migration', () => {
    const newer = join(dir, 'newer.sqlite');
    SqliteNonceStore.open(newer).close();
    const db = new Database(newer);
    db.pragma('user_version = 99');
    db.close();
    expect(() => SqliteNonceStore.open(newer)).toThrow(code('FROST_NONCE_STORE_NEWER_SCHEMA', { version: 99 }));
    const migrations = join(dir, 'bad-migrations');
    mkdirSync(migrations, { recursive: true });
    writeFileSync(join(migrations, '001_broken.sql'), 'CREATE TABLE (;');
    expect(() => SqliteNonceStore.open(join(dir, 'broken.sqlite'), { migrationsDir: migrations })).toThrow(
      code('FROST_NONCE_STORE_MIGRATION_FAILED', { migration: '001_broken.sql' }),
    );
  });
});
