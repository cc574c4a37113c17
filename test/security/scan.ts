import { createPrivateKey } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { StrKey } from '@stellar/stellar-sdk';

/**
 * Finding private key material: a pattern scan for material nobody told us about (Stellar secret seeds, PEM
 * private keys, AWS secret access keys, hex seeds), and a value scan for secrets a run is known to have made,
 * in every encoding they could be written in. Used by the key-hygiene suites; results never include a secret.
 */

export interface Finding {
  file: string;
  line: number;
  kind: string;
}

// Public test vectors may appear in the tree: RFC 8032 section 7.1 (TEST 1, 2, 3, 1024, SHA(abc)) and 7.3
// (Ed25519ph) secret keys, and RFC 9591 Appendix E.1's FROST(Ed25519, SHA-512) group secret key. They are
// published, so they protect nothing; any other value is a finding.
export const PUBLIC_VECTORS = new Set([
  '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
  '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
  'c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7',
  'f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5',
  '833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42',
  '7b1c33d3f5291d85de664833beb1ad469f7fb6025a0ec78b3a790c6e13a98304',
]);

const STELLAR_SEED = /\bS[A-Z2-7]{55}\b/g;
// A PEM private key block with a body (a header alone is a mention, e.g. in a parser or a doc).
const PEM_PRIVATE = /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----\r?\n[A-Za-z0-9+/=]{40,}/g;
// An AWS secret access key: 40 base64 characters assigned to a field of that name (gitleaks' aws rule shape).
// AWS's documentation example (wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY) is allowed by its EXAMPLE marker.
const AWS_SECRET =
  /(?:aws_secret_access_key|secret_?access_?key)["']?\s*[:=]\s*["'`]?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])/gi;
// 64 hex characters assigned to a name containing seed or secret (an ed25519 seed, an HMAC or master key).
const HEX_SECRET = /\b\w*(?:seed|secret)\w*["']?\s*[:=]\s*["'`]?(?:0x)?([0-9a-fA-F]{64})(?![0-9a-fA-F])/gi;

function lineOf(text: string, index: number): number {
  let n = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < index; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/** Every piece of private key material in `text`, by line. */
export function scanText(file: string, text: string): Finding[] {
  const out: Finding[] = [];
  const add = (index: number, kind: string) => out.push({ file, line: lineOf(text, index), kind });
  for (const m of text.matchAll(STELLAR_SEED)) {
    if (StrKey.isValidEd25519SecretSeed(m[0])) add(m.index, 'Stellar secret seed (S... with a valid checksum)');
  }
  for (const m of text.matchAll(PEM_PRIVATE)) add(m.index, 'PEM private key');
  for (const m of text.matchAll(AWS_SECRET)) {
    if (!m[1]!.includes('EXAMPLE')) add(m.index, 'AWS secret access key');
  }
  for (const m of text.matchAll(HEX_SECRET)) {
    if (!PUBLIC_VECTORS.has(m[1]!.toLowerCase())) add(m.index, '64-hex seed/secret assignment');
  }
  return out;
}

/** Every file under `dir`, recursively. */
export async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** A secret as the forms it could be written in: its text, or its bytes raw, hex, base64 and base64url. */
export interface Secret {
  label: string;
  forms: Buffer[];
  /** Paths relative to the cluster dir that are meant to hold it (mode 0600). */
  allowedIn: string[];
  /** Whether the allowed files hold it in one of `forms` (a PEM holds its seed inside base64 DER instead). */
  literal: boolean;
}

export function bytesSecret(label: string, bytes: Buffer, allowedIn: string[], literal = true): Secret {
  const forms = [bytes, Buffer.from(bytes.toString('hex')), Buffer.from(bytes.toString('base64').replace(/=+$/, ''))];
  forms.push(Buffer.from(bytes.toString('base64url')));
  if (bytes.length === 32) forms.push(Buffer.from(StrKey.encodeEd25519SecretSeed(bytes)));
  return { label, forms, allowedIn, literal };
}

export function textSecret(label: string, text: string, allowedIn: string[]): Secret {
  return { label, forms: [Buffer.from(text)], allowedIn, literal: true };
}

/** The raw 32-byte seed inside an ed25519 PKCS#8 PEM. */
export function pemSeed(pem: string): Buffer {
  const jwk = createPrivateKey(pem).export({ format: 'jwk' });
  return Buffer.from(String(jwk.d), 'base64url');
}

/** Where each secret occurs outside its allowed files (relative paths), and every generic finding. */
export function leaks(files: Map<string, Buffer>, secrets: Secret[]): string[] {
  const out: string[] = [];
  for (const [file, content] of files) {
    for (const s of secrets) {
      if (s.allowedIn.includes(file)) continue;
      if (s.forms.some((f) => content.includes(f))) out.push(`${file}: ${s.label}`);
    }
    // The generic scan catches key material this run did not know it made (the launcher's own keys, a seed
    // printed in some other form); the files meant to hold secrets are checked by value above instead.
    if (secrets.some((s) => s.allowedIn.includes(file))) continue;
    for (const f of scanText(file, content.toString('latin1'))) out.push(`${f.file}:${f.line}: ${f.kind}`);
  }
  return out;
}
