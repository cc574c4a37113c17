import { describe, expect, it } from 'vitest';
import { EVENT_DATA, EVENT_TYPES } from '../src/events.ts';
import { harness } from './helpers.ts';

/**
 * The event stream is part of the API: `/v1/events` and its `Event` shapes are in the OpenAPI document the
 * coordinator serves at /docs. This test keeps that document in step with the code's table of events (EVENT_DATA);
 * the harness (helpers.ts) checks every event any coordinator test emits against the same schema.
 */

interface Variant {
  properties: { type: { enum: string[] }; data: { required?: string[]; properties: Record<string, unknown> } };
}

describe('the event stream in the OpenAPI document', () => {
  it('describes /v1/events and one Event variant per event type the code emits, with its data fields', async () => {
    const h = await harness();
    try {
      const doc = (await h.app.inject({ url: '/docs/json' })).json();
      const path = doc.paths['/v1/events'].get;
      expect(path.summary).toMatch(/WebSocket/);
      expect(path.parameters.map((p: { name: string }) => p.name)).toEqual(['since']);
      expect(path.responses['101'].content['application/json'].schema).toEqual({
        $ref: '#/components/schemas/Event',
      });
      for (const t of EVENT_TYPES) expect(path.description).toContain(`\`${t}\``);

      const variants = doc.components.schemas.Event.anyOf as Variant[];
      expect(variants.map((v) => v.properties.type.enum[0]).sort()).toEqual([...EVENT_TYPES].sort());
      for (const v of variants) {
        const type = v.properties.type.enum[0] as keyof typeof EVENT_DATA;
        const code = EVENT_DATA[type] as { required?: string[]; properties: Record<string, unknown> };
        expect(Object.keys(v.properties.data.properties).sort(), type).toEqual(Object.keys(code.properties).sort());
        expect([...(v.properties.data.required ?? [])].sort(), type).toEqual([...(code.required ?? [])].sort());
      }
      // Errors before the upgrade are the usual error body.
      expect(doc.components.schemas.ErrorBody.required).toEqual(['code', 'message']);
    } finally {
      await h.close();
    }
  });

  it('a shape the document does not describe fails the test that emits it', async () => {
    const h = await harness();
    h.app.coordinator.events.emit(null, 'node.key_changed', { nodeId: 'n1' });
    await expect(h.close()).rejects.toThrow(/do not match the documented Event schema:\nnode.key_changed/);
  });
});
