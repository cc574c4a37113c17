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

/**
 * A FROST key-generation statement: `p` is the JSON text of what a node says (its transport key, its round-1
 * commitment, a round-2 package, its result), `s` its identity key's ed25519 signature over
 * `"stellar-cosigner/frost-dkg/v1\n" || p` (frost-dkg.ts). The coordinator relays statements between nodes
 * unchanged; the frame around them authenticates the hop, the statement authenticates its author end to end.
 */
const Statement = Type.Object(
  { p: Type.String({ minLength: 2, maxLength: 16_384 }), s: B64 },
  { additionalProperties: false },
);
/** A FROST signing participant's round-one commitment (RFC 9591 section 5.1): its identifier and two points. */
const FrostCommitment = Type.Object(
  { index: Type.Integer({ minimum: 1, maximum: 255 }), hiding: HEX32, binding: HEX32 },
  { additionalProperties: false },
);
const FrostStep = Type.Union([Type.Literal('commit'), Type.Literal('sign')]);
const DkgStep = Type.Union([
  Type.Literal('start'),
  Type.Literal('round1'),
  Type.Literal('round2'),
  Type.Literal('round3'),
  Type.Literal('confirm'),
]);

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
      kind: Type.Union([Type.Literal('transaction'), Type.Literal('authEntries'), Type.Literal('frost')]),
      networkPassphrase: Type.String({ maxLength: 256 }),
      xdr: Type.Optional(Type.String({ maxLength: 200_000 })),
      authEntries: Type.Optional(Type.Array(Type.String({ maxLength: 100_000 }), { maxItems: 20 })),
      hash: Type.Optional(HEX32),
      /** Accounts the coordinator asks this node to sign for (advisory). */
      accounts: Type.Optional(Type.Array(G_ADDRESS, { maxItems: 20 })),
      note: Type.Optional(Type.String({ maxLength: 512 })),
      /**
       * `frost` proposals (a FROST signing round, docs/architecture.md "FROST signing"): which group signs, the
       * round (unique per attempt, it names the nonce), the step, and for `sign` the signing package's commitment
       * list (the signer set, ascending by index). The message is never sent: it is the hash the node computes
       * itself from `xdr`, reviewed in round one; the frame's signature binds all of it to the proposal id.
       */
      frost: Type.Optional(
        Type.Object(
          {
            group: G_ADDRESS,
            roundId: ID,
            step: FrostStep,
            commitments: Type.Optional(Type.Array(FrostCommitment, { minItems: 2, maxItems: 255 })),
          },
          { additionalProperties: false },
        ),
      ),
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
      /**
       * For `frost` proposals, on approval: the round and step answered, and the commitment (step `commit`) or the
       * signature share (step `sign`, a 32-byte scalar, hex) of the node's participant in the group.
       */
      frost: Type.Optional(
        Type.Object(
          {
            group: G_ADDRESS,
            roundId: ID,
            step: FrostStep,
            commitment: Type.Optional(FrostCommitment),
            share: Type.Optional(HEX32),
          },
          { additionalProperties: false },
        ),
      ),
    },
    { additionalProperties: false },
  ),
  /**
   * coordinator -> node: one step of a FROST key generation the coordinator relays (docs/architecture.md, "FROST
   * key generation"). `start` names the session (threshold, participants with their identity keys); `round1`,
   * `round2` and `round3` carry the other nodes' signed statements of the step before; `confirm` carries every
   * node's signed result, so each node keeps the group only once all agree; `abort` ends the session.
   */
  'frost-dkg': Type.Object(
    {
      dkgId: ID,
      step: Type.Union([DkgStep, Type.Literal('abort')]),
      threshold: Type.Optional(Type.Integer({ minimum: 2, maximum: 255 })),
      participants: Type.Optional(
        Type.Array(
          Type.Object(
            { index: Type.Integer({ minimum: 1, maximum: 255 }), nodeId: ID, identityKey: B64 },
            { additionalProperties: false },
          ),
          { minItems: 2, maxItems: 255 },
        ),
      ),
      statements: Type.Optional(Type.Array(Statement, { maxItems: 255 })),
      reason: Type.Optional(Type.String({ maxLength: 1024 })),
    },
    { additionalProperties: false },
  ),
  /**
   * node -> coordinator: the node's answer to a `frost-dkg` step: its signed statements, or the error that made
   * it abort, naming the participants (node ids, or `coordinator` for the relay) the protocol can blame.
   */
  'frost-dkg-reply': Type.Object(
    {
      dkgId: ID,
      step: DkgStep,
      statements: Type.Optional(Type.Array(Statement, { maxItems: 255 })),
      error: Type.Optional(
        Type.Object(
          {
            code: Type.String({ maxLength: 64 }),
            message: Type.String({ maxLength: 1024 }),
            culprits: Type.Optional(Type.Array(ID, { maxItems: 256 })),
          },
          { additionalProperties: false },
        ),
      ),
    },
    { additionalProperties: false },
  ),
  /**
   * coordinator -> node: one step of a FROST share refresh of group `address` (docs/architecture.md, "FROST share
   * refresh"): `start` names the session (the group's participants with their identity keys); `round1`, `round2`
   * and `round3` carry signed statements as in key generation; `adopt` names the digest of the new group every
   * participant reported (the node switches to the share it sealed beside the old one); `abort` discards it. A
   * node that missed `adopt` or `abort` (it was down) is sent it again when it syncs.
   */
  'frost-refresh': Type.Object(
    {
      refreshId: ID,
      address: Type.String({ minLength: 56, maxLength: 56 }),
      step: Type.Union([
        Type.Literal('start'),
        Type.Literal('round1'),
        Type.Literal('round2'),
        Type.Literal('round3'),
        Type.Literal('adopt'),
        Type.Literal('abort'),
      ]),
      participants: Type.Optional(
        Type.Array(
          Type.Object(
            { index: Type.Integer({ minimum: 1, maximum: 255 }), nodeId: ID, identityKey: B64 },
            { additionalProperties: false },
          ),
          { minItems: 2, maxItems: 255 },
        ),
      ),
      statements: Type.Optional(Type.Array(Statement, { maxItems: 255 })),
      /** `adopt`: groupDigest (packages/frost refresh.ts) of the new group, hex. */
      digest: Type.Optional(HEX32),
      reason: Type.Optional(Type.String({ maxLength: 1024 })),
    },
    { additionalProperties: false },
  ),
  /** node -> coordinator: the answer to a `frost-refresh` step: signed statements, or the error that ended it. */
  'frost-refresh-reply': Type.Object(
    {
      refreshId: ID,
      step: Type.Union([
        Type.Literal('start'),
        Type.Literal('round1'),
        Type.Literal('round2'),
        Type.Literal('round3'),
        Type.Literal('adopt'),
        Type.Literal('abort'),
      ]),
      statements: Type.Optional(Type.Array(Statement, { maxItems: 255 })),
      error: Type.Optional(
        Type.Object(
          {
            code: Type.String({ maxLength: 64 }),
            message: Type.String({ maxLength: 1024 }),
            culprits: Type.Optional(Type.Array(ID, { maxItems: 256 })),
          },
          { additionalProperties: false },
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
  'frost-dkg',
  'frost-refresh',
  'ping',
  'pong',
  'error',
]);
export const FROM_NODE: ReadonlySet<MessageType> = new Set([
  'auth',
  'sync',
  'decision',
  'frost-dkg-reply',
  'frost-refresh-reply',
  'ping',
  'pong',
  'error',
]);
