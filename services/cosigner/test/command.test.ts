import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateIdentity } from '@cosigner/protocol/identity';
import { Command } from 'commander';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../src/audit.ts';
import { adminCall, auditVerify, type Io, register } from '../src/command.ts';
import { loadConfig } from '../src/config.ts';
import { ledgerPath, openLedgerDb } from '../src/ledger.ts';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
afterEach(() => {
  process.exitCode = 0;
});

function program(): { p: Command; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { out: (l) => out.push(l), err: (l) => err.push(l) };
  const p = new Command('cosigner').exitOverride().configureOutput({ writeOut: () => {}, writeErr: () => {} });
  register(p, io);
  return { p, out, err };
}

async function dir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'cosigner-cmd-'));
  dirs.push(d);
  return d;
}

/**
 * A stand-in for a node's admin API on a real loopback port: `answer` sees each request (method, path, the
 * Authorization header, the body) once its body has arrived, and says what to send back as JSON.
 */
async function adminDouble(
  answer: (req: { method: string; url: string; auth?: string; body: string }) => { status: number; body: unknown },
): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      const out = answer({ method: String(req.method), url: String(req.url), auth: req.headers.authorization, body });
      res.writeHead(out.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(out.body));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe('cosigner node commands', () => {
  it('init writes a starter config that loads, and never overwrites it', async () => {
    const d = await dir();
    const key = generateIdentity().identity.publicKeyB64;
    const args = [
      'node',
      'x',
      'node',
      'init',
      '--data-dir',
      d,
      '--node-id',
      'n1',
      '--coordinator-url',
      'ws://127.0.0.1:1',
      '--coordinator-key',
      key,
    ];
    const { p, out } = program();
    await p.parseAsync(args);
    expect(out[0]).toBe(`wrote ${join(d, 'node.yaml')}`);
    const c = await loadConfig(join(d, 'node.yaml'));
    expect(c).toMatchObject({ nodeId: 'n1', mode: 'development', key: { type: 'local' }, dataDir: d });
    await expect(program().p.parseAsync(args)).rejects.toMatchObject({ code: 'EEXIST' });
    const kmsOut = join(d, 'kms.yaml');
    await program().p.parseAsync([...args, '--key-backend', 'aws-kms', '--kms-key-id', 'alias/x', '--output', kmsOut]);
    const kms = await loadConfig(kmsOut);
    expect(kms).toMatchObject({ mode: 'production', key: { type: 'aws-kms', keyId: 'alias/x' } });
    // Production requires the admin token whatever the address: init writes one (0600) and names it.
    expect(kms.admin.tokenFile).toBe(join(d, 'admin.token'));
    expect((await stat(join(d, 'admin.token'))).mode & 0o777).toBe(0o600);
    const token = await readFile(join(d, 'admin.token'), 'utf8');
    expect(token.trim().length).toBeGreaterThanOrEqual(43);
    expect(c.admin.tokenFile).toBeUndefined(); // development (local backend): optional
    const hsmOut = join(d, 'hsm.yaml');
    await program().p.parseAsync([...args, '--key-backend', 'pkcs11', '--output', hsmOut]);
    expect((await loadConfig(hsmOut)).key.type).toBe('pkcs11');
    expect(await readFile(join(d, 'admin.token'), 'utf8')).toBe(token); // an existing token is kept
    await expect(
      program().p.parseAsync([...args.slice(0, -1), 'not-a-key', '--output', join(d, 'z.yaml')]),
    ).rejects.toMatchObject({
      code: 'PROTOCOL_BAD_KEY',
    });
  });

  it('init writes coordinator.urls when given every replica, and refuses a replica named twice', async () => {
    const d = await dir();
    const key = generateIdentity().identity.publicKeyB64;
    const args = ['node', 'x', 'node', 'init', '--data-dir', d, '--node-id', 'n1', '--coordinator-key', key];
    const urls = ['--coordinator-url', 'ws://127.0.0.1:1', '--coordinator-url', 'ws://127.0.0.1:2'];
    await program().p.parseAsync([...args, ...urls]);
    const yaml = await readFile(join(d, 'node.yaml'), 'utf8');
    expect(yaml).not.toMatch(/^\s+url:/m);
    expect((await loadConfig(join(d, 'node.yaml'))).coordinator).toMatchObject({
      urls: ['ws://127.0.0.1:1', 'ws://127.0.0.1:2'],
      field: 'coordinator.urls',
    });
    const twice = join(d, 'twice.yaml');
    await expect(
      program().p.parseAsync([...args, ...urls, '--coordinator-url', 'ws://127.0.0.1:1/', '--output', twice]),
    ).rejects.toMatchObject({ code: 'NODE_CONFIG_INVALID', message: expect.stringContaining('coordinator.urls.2') });
    await expect(stat(twice)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('audit verify reports ok, and the first broken link with a non-zero exit', async () => {
    const d = await dir();
    const db = openLedgerDb(ledgerPath(d));
    const audit = new AuditLog(db);
    audit.append('node.started', { a: 1 });
    audit.append('decision', { b: 2 });
    db.close();
    const ok = program();
    await ok.p.parseAsync(['node', 'x', 'node', 'audit', 'verify', '--data-dir', d]);
    expect(ok.out[0]).toMatch(/^audit chain ok: 2 entries, head [0-9a-f]{64}$/);
    expect(process.exitCode ?? 0).toBe(0);
    const w = openLedgerDb(ledgerPath(d));
    w.exec('DROP TRIGGER audit_no_update');
    w.prepare("UPDATE audit SET data = '{}' WHERE seq = 2").run();
    w.close();
    const bad = program();
    await bad.p.parseAsync(['node', 'x', 'node', 'audit', 'verify', '--data-dir', d]);
    expect(bad.err[0]).toMatch(/BROKEN at entry 2/);
    expect(process.exitCode).toBe(1);
    await expect(auditVerify({})).rejects.toMatchObject({ code: 'NODE_CONFIG_INVALID' });
  });

  it('approve, reject and pending call the admin API (with a token file); errors exit non-zero', async () => {
    const d = await dir();
    const tokenFile = join(d, 'token');
    await writeFile(tokenFile, 'tok\n', { mode: 0o600 });
    const seen: { url: string; auth?: string; body: string }[] = [];
    const { server, url } = await adminDouble((req) => {
      seen.push({ url: req.url, auth: req.auth, body: req.body });
      const missing = req.url.includes('missing') || req.auth === 'Bearer nope';
      return missing
        ? { status: 404, body: { code: 'NODE_PENDING_NOT_FOUND' } }
        : { status: 200, body: { ok: true, pending: [] } };
    });
    try {
      const a = program();
      await a.p.parseAsync([
        'node',
        'x',
        'node',
        'approve',
        'p-1',
        '--admin-url',
        url,
        '--token-file',
        tokenFile,
        '--note',
        'ok',
        '--by',
        'alice',
      ]);
      expect(seen[0]).toEqual({
        url: '/v1/pending/p-1/approve',
        auth: 'Bearer tok',
        body: JSON.stringify({ note: 'ok', by: 'alice' }),
      });
      expect(JSON.parse(a.out.join('\n'))).toEqual({ ok: true, pending: [] });
      await program().p.parseAsync(['node', 'x', 'node', 'reject', 'missing', '--admin-url', url]);
      expect(process.exitCode).toBe(1);
      process.exitCode = 0;
      await program().p.parseAsync(['node', 'x', 'node', 'pending', '--admin-url', url]);
      expect(seen.at(-1)?.url).toBe('/v1/pending');
      expect(process.exitCode ?? 0).toBe(0);
      const nope = join(d, 'nope');
      await writeFile(nope, 'nope', { mode: 0o600 });
      await program().p.parseAsync(['node', 'x', 'node', 'pending', '--admin-url', url, '--token-file', nope]);
      expect(process.exitCode).toBe(1);
    } finally {
      server.close();
    }
    await expect(adminCall('http://127.0.0.1:1', 'GET', '/v1/pending')).rejects.toMatchObject({
      code: 'NODE_ADMIN_UNREACHABLE',
    });
  });

  it('policy show and reload call the admin API and say what happened; a refusal exits non-zero', async () => {
    const seen: { method: string; url: string; body: string }[] = [];
    let answer: { status: number; body: unknown } = { status: 200, body: {} };
    const { server, url } = await adminDouble((req) => {
      seen.push({ method: req.method, url: req.url, body: req.body });
      return answer;
    });
    const a = 'a'.repeat(64);
    const b = 'b'.repeat(64);
    try {
      answer = { status: 200, body: { file: '/p.yaml', sha256: a, loadedAt: 1 } };
      const show = program();
      await show.p.parseAsync(['node', 'x', 'node', 'policy', 'show', '--admin-url', url]);
      expect(seen.at(-1)).toMatchObject({ method: 'GET', url: '/v1/policy' });
      expect(JSON.parse(show.out.join('\n'))).toEqual({ file: '/p.yaml', sha256: a, loadedAt: 1 });

      answer = { status: 200, body: { changed: true, previous: a, sha256: b } };
      const ok = program();
      await ok.p.parseAsync(['node', 'x', 'node', 'policy', 'reload', '--admin-url', url, '--by', 'alice']);
      expect(seen.at(-1)).toEqual({ method: 'POST', url: '/v1/policy/reload', body: JSON.stringify({ by: 'alice' }) });
      expect(ok.out).toEqual([`policy reloaded: ${a} -> ${b}`]);

      answer = { status: 200, body: { changed: false, previous: b, sha256: b } };
      const same = program();
      await same.p.parseAsync(['node', 'x', 'node', 'policy', 'reload', '--admin-url', url]);
      expect(seen.at(-1)?.body).toBe('{}');
      expect(same.out).toEqual([`policy unchanged (${b})`]);
      expect(process.exitCode ?? 0).toBe(0);

      answer = { status: 422, body: { code: 'NODE_POLICY_REFUSED', message: 'The policy was not reloaded; ...' } };
      const bad = program();
      await bad.p.parseAsync(['node', 'x', 'node', 'policy', 'reload', '--admin-url', url]);
      expect(bad.err).toEqual(['policy not reloaded: The policy was not reloaded; ...']);
      expect(process.exitCode).toBe(1);
      process.exitCode = 0;
      answer = { status: 401, body: 'no' };
      const denied = program();
      await denied.p.parseAsync(['node', 'x', 'node', 'policy', 'show', '--admin-url', url]);
      await denied.p.parseAsync(['node', 'x', 'node', 'policy', 'reload', '--admin-url', url]);
      expect(denied.err).toEqual(['policy not reloaded: "no"']);
      expect(process.exitCode).toBe(1);
    } finally {
      server.close();
    }
  });

  it('running a node needs --config, and a port must be a port', async () => {
    await expect(program().p.parseAsync(['node', 'x', 'node'])).rejects.toMatchObject({ code: 'NODE_CONFIG_INVALID' });
    await expect(
      program().p.parseAsync(['node', 'x', 'node', '--config', 'c.yaml', '--port', 'abc']),
    ).rejects.toMatchObject({
      code: 'commander.invalidArgument',
    });
    const missing = join(await dir(), 'none.yaml');
    await expect(program().p.parseAsync(['node', 'x', 'node', '--config', missing])).rejects.toMatchObject({
      code: 'NODE_CONFIG_INVALID',
    });
    expect(await readFile(join(import.meta.dirname, '..', 'src', 'command.ts'), 'utf8')).toContain('COSIGNER_CRASH_AT');
  });
});
