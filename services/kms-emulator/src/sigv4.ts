import { createHash, createHmac } from 'node:crypto';
import { secretEquals } from '@cosigner/runtime/secrets';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { getCanonicalHeaders, SignatureV4 } from '@smithy/signature-v4';
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

/**
 * @smithy/signature-v4 builds the canonical request (RFC 3986 path and query escaping, header value trimming,
 * exactly as the SDK signs); it has no verify, and its `sign` clones the request and hashes through async
 * wrappers on every call. The emulator takes only the canonical request from it and does the SigV4 hashing
 * with node:crypto, synchronously.
 */
class CanonicalRequest extends SignatureV4 {
  constructor() {
    super({
      credentials: { accessKeyId: '', secretAccessKey: '' },
      region: 'us-east-1',
      service: 'kms',
      sha256: Hash.bind(null, 'sha256'),
      applyChecksum: false,
    });
  }

  of(request: HttpRequest, headers: Record<string, string>, payloadHash: string): string {
    return this.createCanonicalRequest(request, headers, payloadHash);
  }
}
const canonicalRequest = new CanonicalRequest();

/**
 * The derived signing key of a principal for one date and region (SigV4: kSigning = HMAC chain over the date,
 * the region, "kms" and "aws4_request", from "AWS4" + the secret). AWS's own SDKs cache it the same way: it
 * changes once a day. Kept per principal, at most SIGNING_KEYS_PER_PRINCIPAL entries (a caller chooses the
 * region of its credential scope, so the map must not grow with what callers send), oldest dropped first.
 */
const SIGNING_KEYS_PER_PRINCIPAL = 8;
const signingKeys = new WeakMap<AccountPrincipal, Map<string, Buffer>>();
function signingKey(principal: AccountPrincipal, shortDate: string, region: string): Buffer {
  let keys = signingKeys.get(principal);
  if (keys === undefined) {
    keys = new Map();
    signingKeys.set(principal, keys);
  }
  const id = `${shortDate}/${region}`;
  let key = keys.get(id);
  if (key === undefined) {
    key = hmac(`AWS4${principal.secretAccessKey}`, shortDate);
    for (const part of [region, 'kms', 'aws4_request']) key = hmac(key, part);
    if (keys.size >= SIGNING_KEYS_PER_PRINCIPAL) keys.delete(keys.keys().next().value!);
    keys.set(id, key);
  }
  return key;
}

const hmac = (key: string | Buffer, data: string): Buffer => createHmac('sha256', key).update(data, 'utf8').digest();
const sha256Hex = (data: string): string => createHash('sha256').update(data, 'utf8').digest('hex');

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
 * constant time, then check the clock skew. The canonical request is @smithy/signature-v4's, the hashing
 * node:crypto's with the derived signing key cached per principal, date and region.
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
  // The scope's date is the request's day exactly (a shorter prefix would sign with a different key).
  if (shortDate !== dateHeader!.slice(0, 8)) {
    throw awsError(
      'InvalidSignatureException',
      'Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP.',
    );
  }
  // A present x-amz-content-sha256 header must be the body's hash: the canonical request carries both (the
  // header among the signed ones, the computed hash as the payload line), and they must say the same.
  const payloadHash = sha256Hex(parts.body);
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
  // As the SDK's signer does (@smithy/signature-v4 prepareRequest): authorization and date are never part of
  // the canonical request, and x-amz-date is the request's own date (already checked to round-trip).
  delete headers.authorization;
  delete headers.date;
  headers['x-amz-date'] = dateHeader!;
  const canonical = canonicalRequest.of(
    new HttpRequest({ method: parts.method, path: parts.path, query: parts.query }),
    getCanonicalHeaders({ headers } as HttpRequest, undefined, new Set(signedHeaders)),
    payloadHash,
  );
  const stringToSign = `AWS4-HMAC-SHA256\n${dateHeader}\n${shortDate}/${region}/kms/aws4_request\n${sha256Hex(canonical)}`;
  const expected = createHmac('sha256', signingKey(principal, shortDate, region))
    .update(stringToSign, 'utf8')
    .digest('hex');
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
