import { randomUUID } from 'node:crypto';
import { Compile } from 'typebox/compile';
import { protocolErrors } from './errors.ts';
import { type Identity, verifyWith } from './identity.ts';
import { type Body, bodySchemas, FROM_COORDINATOR, FROM_NODE, type MessageType } from './messages.ts';
import type { ReplayGuard } from './replay.ts';

/**
 * Wire frame: `{"p": "<header+body JSON>", "s": "<base64 ed25519 signature>"}`.
 *
 * The signature covers the exact bytes of `p` behind a domain-separation prefix, so no canonical JSON is
 * needed and a signature made for this protocol can never be mistaken for anything else (in particular not
 * for a Stellar transaction signature: identity keys are never Stellar keys anyway).
 */
export const FRAME_DOMAIN = Buffer.from('stellar-cosigner/msg/v1\n');
export const MAX_FRAME_BYTES = 512 * 1024;
export const DEFAULT_MAX_SKEW_MS = 30_000;
const HANDSHAKE: ReadonlySet<MessageType> = new Set(['hello', 'auth', 'welcome']);

export interface Envelope<T extends MessageType = MessageType> {
  v: 1;
  /** Unique message id (UUID): the replay guard keys on it. */
  id: string;
  /** Sender's clock, ms since epoch. */
  ts: number;
  /** Sender: 'coordinator' or the node id. */
  from: string;
  /** Recipient: a node id, 'coordinator', or '*' (hello only: the coordinator does not know the node yet). */
  to: string;
  /** Session id from `welcome`; null during the handshake. */
  session: string | null;
  type: T;
  body: Body<T>;
}

/** Sign and serialise one message. */
export function encodeFrame<T extends MessageType>(
  identity: Identity,
  msg: { type: T; body: Body<T>; from: string; to: string; session: string | null; id?: string; ts?: number },
): string {
  const env: Envelope<T> = {
    v: 1,
    id: msg.id ?? randomUUID(),
    ts: msg.ts ?? Date.now(),
    from: msg.from,
    to: msg.to,
    session: msg.session,
    type: msg.type,
    body: msg.body,
  };
  const p = JSON.stringify(env);
  const s = identity.sign(Buffer.concat([FRAME_DOMAIN, Buffer.from(p)])).toString('base64');
  return JSON.stringify({ p, s });
}

const checkers = Object.fromEntries(Object.entries(bodySchemas).map(([type, schema]) => [type, Compile(schema)])) as {
  [K in MessageType]: ReturnType<typeof Compile>;
};

export interface DecodeOptions {
  /** Public keys (raw 32 bytes) allowed to have signed this frame. Several during a key rotation. */
  trustedKeys: readonly Buffer[];
  /** Who sent it: decides which message types are allowed. */
  sender: 'coordinator' | 'node';
  /** This side's own name; `to` must equal it (or '*' on hello). */
  self: string;
  /** The open session; required for every non-handshake message. */
  session: string | null;
  replay: ReplayGuard;
  now?: number;
  maxSkewMs?: number;
}

/**
 * Verify and parse one frame. Order matters: size, shape, signature, then freshness, addressing and the
 * replay guard (only authenticated frames may consume replay-cache space), then the body schema.
 * @throws CosignerError PROTOCOL_TOO_LARGE, PROTOCOL_MALFORMED, PROTOCOL_BAD_SIGNATURE, PROTOCOL_STALE,
 *   PROTOCOL_WRONG_RECIPIENT, PROTOCOL_WRONG_SESSION, PROTOCOL_REPLAY, PROTOCOL_SCHEMA
 */
export function decodeFrame(raw: string | Buffer, opts: DecodeOptions): { envelope: Envelope; signer: Buffer } {
  const size = typeof raw === 'string' ? Buffer.byteLength(raw) : raw.length;
  if (size > MAX_FRAME_BYTES) throw protocolErrors.error('PROTOCOL_TOO_LARGE', { size });
  let outer: unknown;
  try {
    outer = JSON.parse(raw.toString());
  } catch {
    throw protocolErrors.error('PROTOCOL_MALFORMED', { why: 'not JSON' });
  }
  const o = outer as { p?: unknown; s?: unknown };
  if (typeof o !== 'object' || o === null || typeof o.p !== 'string' || typeof o.s !== 'string') {
    throw protocolErrors.error('PROTOCOL_MALFORMED', { why: 'frame must be {p, s}' });
  }
  const signed = Buffer.concat([FRAME_DOMAIN, Buffer.from(o.p)]);
  const sig = Buffer.from(o.s, 'base64');
  const signer = opts.trustedKeys.find((k) => verifyWith(k, signed, sig));
  if (!signer) throw protocolErrors.error('PROTOCOL_BAD_SIGNATURE');

  let env: Envelope;
  try {
    env = JSON.parse(o.p) as Envelope;
  } catch {
    throw protocolErrors.error('PROTOCOL_MALFORMED', { why: 'payload not JSON' });
  }
  if (
    typeof env !== 'object' ||
    env === null ||
    env.v !== 1 ||
    typeof env.id !== 'string' ||
    env.id.length === 0 ||
    env.id.length > 128 ||
    !Number.isSafeInteger(env.ts) ||
    typeof env.from !== 'string' ||
    typeof env.to !== 'string' ||
    !(env.session === null || typeof env.session === 'string') ||
    typeof env.type !== 'string' ||
    !Object.hasOwn(bodySchemas, env.type)
  ) {
    throw protocolErrors.error('PROTOCOL_MALFORMED', { why: 'bad header' });
  }
  const allowed = opts.sender === 'coordinator' ? FROM_COORDINATOR : FROM_NODE;
  if (!allowed.has(env.type)) {
    throw protocolErrors.error('PROTOCOL_MALFORMED', { why: `${env.type} may not come from a ${opts.sender}` });
  }
  const now = opts.now ?? Date.now();
  const skew = opts.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;
  if (Math.abs(now - env.ts) > skew) throw protocolErrors.error('PROTOCOL_STALE', { ts: env.ts, now });
  if (env.to !== opts.self && !(env.to === '*' && env.type === 'hello')) {
    throw protocolErrors.error('PROTOCOL_WRONG_RECIPIENT', { to: env.to });
  }
  if (HANDSHAKE.has(env.type) ? env.session !== null : env.session === null || env.session !== opts.session) {
    throw protocolErrors.error('PROTOCOL_WRONG_SESSION', { type: env.type });
  }
  if (!opts.replay.accept(env.id, now)) throw protocolErrors.error('PROTOCOL_REPLAY', { id: env.id });
  const checker = checkers[env.type];
  if (!checker.Check(env.body)) {
    const first = [...checker.Errors(env.body)][0];
    throw protocolErrors.error('PROTOCOL_SCHEMA', {
      type: env.type,
      path: first?.instancePath ?? '',
      problem: first?.message ?? 'invalid',
    });
  }
  return { envelope: env, signer };
}

/**
 * The sender a frame claims, read WITHOUT verifying it: only for choosing which enrolled key to verify
 * with (the coordinator knows a node's identity key by its id). Never trust anything else from it.
 */
export function peekSender(raw: string | Buffer): string | undefined {
  try {
    const o = JSON.parse(raw.toString()) as { p?: unknown };
    if (typeof o?.p !== 'string') return undefined;
    const from = (JSON.parse(o.p) as { from?: unknown })?.from;
    return typeof from === 'string' ? from : undefined;
  } catch {
    return undefined;
  }
}
