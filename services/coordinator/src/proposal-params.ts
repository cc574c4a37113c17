import { Type } from 'typebox';
import { coordinatorErrors } from './errors.ts';
import type { CoordinatorStore, ProposalRecord } from './store.ts';

/**
 * The `:id` path parameter of every `/v1/proposals/:id...` route, declared once so that the API and the console
 * routes bound it alike (ids are UUIDs; 64 characters is what any lookup will read).
 */
export const ProposalIdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });

/**
 * The proposal an `:id` path parameter names.
 * @throws CosignerError COORD_NOT_FOUND (404) when there is none
 */
export async function proposalOr404(store: Pick<CoordinatorStore, 'getProposal'>, id: string): Promise<ProposalRecord> {
  const rec = await store.getProposal(id);
  if (!rec) throw coordinatorErrors.error('COORD_NOT_FOUND', { id });
  return rec;
}
