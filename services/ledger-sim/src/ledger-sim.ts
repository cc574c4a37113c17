import type { Engine } from './engine.ts';
import type { LedgerState } from './state.ts';

/**
 * What the simulator's app exposes for tests, the server and its routes (app.ts builds it, rpc.ts serves Soroban
 * RPC over it): the state, the engine and the ledger close. A module of its own so that the routes and the app
 * that registers them do not import each other.
 */
export interface LedgerSim {
  readonly state: LedgerState;
  readonly engine: Engine;
  /** Closes the open ledger now, then writes the snapshot if anything changed. */
  close(): Promise<void>;
  /** Writes the snapshot now (no-op without a data dir). */
  save(): Promise<void>;
  /** Submits a base64 envelope as POST /transactions does, and tells SSE listeners. */
  submit(envelopeXdr: string): ReturnType<Engine['submit']>;
}
