import { createHash } from 'node:crypto';
import { secretEquals } from '@cosigner/runtime/secrets';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AccountPrincipal } from './accounts.ts';
import { awsError } from './aws-errors.ts';

/** What a verified request proves: which access key signed it and for which region. */
export interface VerifiedRequest {
  accessKeyId: string;
  region: string;
}

/** The parts of an HTTP request SigV4 covers. Header names are lower-case, as Node gives them. */
export interface SignedRequestParts {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** AWS allows 5 minutes of clock skew between the signer and the service (SigV4 docs, "Signature expired"). */
export const MAX_SKEW_MS = 5 * 60 * 1000;

const AUTH = /^AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$/;

// One signer per principal, so its derived signing keys (per date and region) are cached between requests.
const signers = new WeakMap<AccountPrincipal, SignatureV4>();
function signerFor(principal: AccountPrincipal): SignatureV4 {
  let signer = signers.get(principal);
  if (signer === undefined) {
    signer = new SignatureV4({
      credentials: { accessKeyId: principal.accessKeyId, secretAccessKey: principal.secretAccessKey },
      region: 'us-east-1',
      service: 'kms',
      sha256: Hash.bind(null, 'sha256'),
      applyChecksum: false,
    });
    signers.set(principal, signer);
  }
  return signer;
}

function header(parts: SignedRequestParts, name: string): string | undefined {
  const v = parts.headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function amzDate(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
}

function parseAmzDate(v: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(v);
  if (!m) return undefined;
  const d = new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
  return amzDate(d.getTime()) === v ? d : undefined;
}

/**
 * Verify an AWS Signature Version 4 request (header form) the way the service does: find the access key,
 * check the credential scope, recompute the signature over exactly the headers the client signed, compare in
 * constant time, then check the clock skew. @smithy/signature-v4 has no verify, so the request is re-signed
 * with the same signed headers, date and body.
 *
 * Errors (AWS names): MissingAuthenticationTokenException (no Authorization), IncompleteSignatureException
 * (malformed header), UnrecognizedClientException (unknown access key, or a session token, which this
 * emulator never issues), InvalidSignatureException (wrong secret, wrong scope, body hash mismatch,
 * "Signature expired" / "Signature not yet current").
 */
export async function verifySigV4(
  parts: SignedRequestParts,
  lookup: (accessKeyId: string) => AccountPrincipal | undefined,
  now: number,
): Promise<VerifiedRequest> {
  const auth = header(parts, 'authorization');
  if (auth === undefined) throw awsError('MissingAuthenticationTokenException', 'Missing Authentication Token');
  const m = AUTH.exec(auth.trim());
  if (!m) {
    throw awsError(
      'IncompleteSignatureException',
      `Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters with AWS4-HMAC-SHA256.`,
    );
  }
  const [, credential, signedHeaderList, signature] = m as unknown as [string, string, string, string];
  const scope = credential.split('/');
  if (scope.length !== 5) throw awsError('IncompleteSignatureException', 'Credential is malformed.');
  const [accessKeyId, shortDate, region, service, terminator] = scope as [string, string, string, string, string];
  const principal = lookup(accessKeyId);
  if (principal === undefined || header(parts, 'x-amz-security-token') !== undefined) {
    throw awsError('UnrecognizedClientException', 'The security token included in the request is invalid.');
  }
  if (service !== 'kms' || terminator !== 'aws4_request') {
    throw awsError('InvalidSignatureException', `Credential should be scoped to correct service: 'kms'.`);
  }
  const signedHeaders = signedHeaderList.split(';');
  const dateHeader = header(parts, 'x-amz-date');
  const date = dateHeader === undefined ? undefined : parseAmzDate(dateHeader);
  if (!signedHeaders.includes('host') || !signedHeaders.includes('x-amz-date') || date === undefined) {
    throw awsError(
      'IncompleteSignatureException',
      `Authorization header must sign 'host' and a valid 'X-Amz-Date' (yyyyMMdd'T'HHmmss'Z').`,
    );
  }
  if (!dateHeader!.startsWith(shortDate)) {
    throw awsError(
      'InvalidSignatureException',
      'Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP.',
    );
  }
  // The re-signer trusts a present x-amz-content-sha256 header as the payload hash, so check it against the
  // body first: otherwise a replayed signature could carry a different body.
  const payloadHash = createHash('sha256').update(parts.body, 'utf8').digest('hex');
  const claimed = header(parts, 'x-amz-content-sha256');
  if (claimed !== undefined && claimed !== payloadHash) {
    throw awsError('InvalidSignatureException', "The provided 'x-amz-content-sha256' header does not match the body.");
  }
  const headers: Record<string, string> = {};
  for (const name of signedHeaders) {
    const v = header(parts, name);
    if (v === undefined) throw awsError('InvalidSignatureException', `Signed header ${name} is missing.`);
    headers[name] = v;
  }
  const signer = signerFor(principal);
  const resigned = await signer.sign(
    new HttpRequest({
      method: parts.method,
      protocol: 'http:',
      hostname: headers.host ?? '',
      path: parts.path,
      query: parts.query,
      headers,
      body: parts.body,
    }),
    { signingDate: date, signingRegion: region, signableHeaders: new Set(signedHeaders) },
  );
  const expected = AUTH.exec(String(resigned.headers.authorization))?.[3] ?? '';
  if (!secretEquals(expected, signature)) {
    throw awsError(
      'InvalidSignatureException',
      'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.',
    );
  }
  const t = date.getTime();
  if (t < now - MAX_SKEW_MS) {
    throw awsError(
      'InvalidSignatureException',
      `Signature expired: ${dateHeader} is now earlier than ${amzDate(now - MAX_SKEW_MS)} (${amzDate(now)} - 5 min.)`,
    );
  }
  if (t > now + MAX_SKEW_MS) {
    throw awsError(
      'InvalidSignatureException',
      `Signature not yet current: ${dateHeader} is still later than ${amzDate(now + MAX_SKEW_MS)} (${amzDate(now)} + 5 min.)`,
    );
  }
  return { accessKeyId, region };
}
