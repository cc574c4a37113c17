import { type Static, Type } from 'typebox';

/**
 * Message bodies of the node<->coordinator protocol, one schema per type. Each body is checked against its
 * schema after the frame's signature, freshness and replay checks pass; anything else is refused.
 *
 * Handshake: the coordinator sends `hello` with a fresh challenge; the node answers `auth` (signed with its
 * identity key, echoing the challenge); the coordinator answers `welcome` with the session id that every
 * later message in both directions carries.
 */

const B64 = Type.String({ maxLength: 4096, pattern: '^[A-Za-z0-9+/]*={0,2}$' });
const HEX32 = Type.String({ pattern: '^[0-9a-f]{64}$' });
const G_ADDRESS = Type.String({ pattern: '^G[A-Z2-7]{55}$' });
const ID = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$' });
const Reason = Type.Object(
  {
    code: Type.String({ maxLength: 64 }),
    message: Type.String({ maxLength: 1024 }),
    opIndex: Type.Optional(Type.Integer({ minimum: 0 })),
    field: Type.Optional(Type.String({ maxLength: 256 })),
  },
  { additionalProperties: false },
);

export const bodySchemas = {
  /** coordinator -> node, first message of a connection. */
  hello: Type.Object(
    {
      challenge: B64,
      coordinatorKey: B64,
      networkPassphrase: Type.String({ maxLength: 256 }),
      serverTime: Type.Integer(),
    },
    { additionalProperties: false },
  ),
  /** node -> coordinator: proves the node holds its identity key and names its Stellar signing key. */
  auth: Type.Object(
    {
      nodeId: ID,
      identityKey: B64,
      stellarKey: G_ADDRESS,
      challenge: B64,
      networkPassphrase: Type.String({ maxLength: 256 }),
      version: Type.String({ maxLength: 64 }),
    },
    { additionalProperties: false },
  ),
  /** coordinator -> node: the session is open. */
  welcome: Type.Object({ sessionId: ID, heartbeatMs: Type.Integer({ minimum: 100 }) }, { additionalProperties: false }),
  /** node -> coordinator: send me every proposal still open (after connect or reconnect). */
  sync: Type.Object({}, { additionalProperties: false }),
  /**
   * coordinator -> node: please review and sign. `hash` and `summary` are advisory: the node decodes the XDR
   * and computes the hash itself, and refuses when a claimed hash differs from its own.
   */
  proposal: Type.Object(
    {
      proposalId: ID,
      kind: Type.Union([Type.Literal('transaction'), Type.Literal('authEntries')]),
      networkPassphrase: Type.String({ maxLength: 256 }),
      xdr: Type.Optional(Type.String({ maxLength: 200_000 })),
      authEntries: Type.Optional(Type.Array(Type.String({ maxLength: 100_000 }), { maxItems: 20 })),
      hash: Type.Optional(HEX32),
      /** Accounts the coordinator asks this node to sign for (advisory). */
      accounts: Type.Optional(Type.Array(G_ADDRESS, { maxItems: 20 })),
      note: Type.Optional(Type.String({ maxLength: 512 })),
    },
    { additionalProperties: false },
  ),
  /** coordinator -> node: the proposal ended; drop any pending manual approval. */
  cancel: Type.Object({ proposalId: ID, reason: Type.String({ maxLength: 256 }) }, { additionalProperties: false }),
  /** node -> coordinator: the node's decision, with its signature when it approved. */
  decision: Type.Object(
    {
      proposalId: ID,
      /** The hash the node computed itself (hex). */
      hash: HEX32,
      outcome: Type.Union([Type.Literal('approve'), Type.Literal('reject'), Type.Literal('hold')]),
      reasons: Type.Array(Reason, { maxItems: 64 }),
      signerKey: G_ADDRESS,
      /** base64 ed25519 signature over `hash` (transactions). */
      signature: Type.Optional(B64),
      /** For auth-entry proposals: one signature per entry, over the payload the node computed. */
      authSignatures: Type.Optional(
        Type.Array(
          Type.Object(
            { index: Type.Integer({ minimum: 0, maximum: 19 }), payload: HEX32, signature: B64 },
            { additionalProperties: false },
          ),
          { maxItems: 20 },
        ),
      ),
    },
    { additionalProperties: false },
  ),
  ping: Type.Object({ nonce: Type.String({ maxLength: 64 }) }, { additionalProperties: false }),
  pong: Type.Object({ nonce: Type.String({ maxLength: 64 }) }, { additionalProperties: false }),
  /** either way: the peer refused something; informational, never acted on beyond logging. */
  error: Type.Object(
    { code: Type.String({ maxLength: 64 }), message: Type.String({ maxLength: 1024 }) },
    { additionalProperties: false },
  ),
} as const;

export type MessageType = keyof typeof bodySchemas;
export type Body<T extends MessageType> = Static<(typeof bodySchemas)[T]>;
export type DecisionReason = Static<typeof Reason>;

/** Which side may send which type; a frame of the wrong direction is refused. */
export const FROM_COORDINATOR: ReadonlySet<MessageType> = new Set([
  'hello',
  'welcome',
  'proposal',
  'cancel',
  'ping',
  'pong',
  'error',
]);
export const FROM_NODE: ReadonlySet<MessageType> = new Set(['auth', 'sync', 'decision', 'ping', 'pong', 'error']);
