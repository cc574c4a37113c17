import { isAbsolute, resolve } from 'node:path';
import type { SealerConfig } from '@cosigner/frost/sealer';
import { AwsKmsKeyFields } from '@cosigner/keys/signer';
import { type Static, Type } from 'typebox';

/**
 * The node's `frost` configuration section: how it seals a FROST share at rest, and which key generations its
 * operator expects it to join (docs/operations/frost.md).
 *
 * A node joins a key generation only when the coordinator's request matches one entry of `expect` exactly: the
 * same threshold and the same participants, each with the identity key written here. The identity keys are what
 * make the expectation worth having: the node verifies every other participant's key-generation statements with
 * the key its own operator wrote, never with one the coordinator supplies, so a coordinator cannot slip itself in
 * as a participant or substitute a node. An entry allows one group: once a key generation with that roster
 * succeeded, another request for it is refused. A failed one can be run again.
 *
 * Without this section the node refuses every key generation. The section is read at start (config is frozen):
 * adding an expectation is an edit and a restart, which a ceremony as rare as key generation can afford.
 */

const ID = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$' });
const B64_KEY = Type.String({ pattern: '^[A-Za-z0-9+/]{43}=$' });

export const FrostSealerSchema = Type.Union([
  Type.Object(
    {
      type: Type.Literal('aws-kms'),
      /** keyId: a symmetric KMS key (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT) in the node's own account. */
      ...AwsKmsKeyFields,
    },
    { additionalProperties: false },
  ),
  /** Development only: AES-256-GCM under a 32-byte key file (0600); refused in production. */
  Type.Object({ type: Type.Literal('local'), keyFile: Type.String({ minLength: 1 }) }, { additionalProperties: false }),
]);

export const FrostExpectSchema = Type.Object(
  {
    threshold: Type.Integer({ minimum: 2, maximum: 255 }),
    /** Every participant, this node included, with its base64 raw ed25519 identity key. */
    participants: Type.Array(Type.Object({ nodeId: ID, identityKey: B64_KEY }, { additionalProperties: false }), {
      minItems: 2,
      maxItems: 255,
    }),
    /**
     * The weight this group's key is to have on the accounts it signs for. A node asked to sign the swap of an
     * account from an old group key to this group's key (docs/operations/frost.md, "Swapping the account") checks
     * the new key's weight against this number, never against one the coordinator sends; without it the node
     * refuses every swap to this group (FROST_SWAP_WEIGHT_UNPLANNED).
     */
    accountWeight: Type.Optional(Type.Integer({ minimum: 1, maximum: 255 })),
  },
  { additionalProperties: false },
);

export const FrostConfigSchema = Type.Object(
  {
    sealer: FrostSealerSchema,
    expect: Type.Array(FrostExpectSchema, { maxItems: 64, default: [] }),
    /** How long a key generation may stay open at this node before it is dropped (its secrets with it). */
    sessionTimeoutMs: Type.Integer({ minimum: 1000, maximum: 3_600_000, default: 600_000 }),
  },
  { additionalProperties: false },
);

export type FrostConfig = Static<typeof FrostConfigSchema> & { sealer: SealerConfig };
export type FrostExpectation = Static<typeof FrostExpectSchema>;

/** The section with a relative local key file resolved against the config file's directory. */
export function resolveFrostConfig(raw: Static<typeof FrostConfigSchema>, base: string): FrostConfig {
  const sealer = { ...raw.sealer };
  if (sealer.type === 'local' && !isAbsolute(sealer.keyFile)) sealer.keyFile = resolve(base, sealer.keyFile);
  return { ...raw, sealer } as FrostConfig;
}
