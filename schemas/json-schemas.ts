/**
 * JSON Schemas emitted from the zod definitions: for editors (`temporal.yaml` refers to the
 * pipeline schema) and for the Python engine, which checks its input against them.
 * `npm run schema` rewrites the committed files; a test fails when they are stale.
 */
import { z } from 'zod';
import { PipelineConfig } from './config';
import { EngineEvent, TrainSpec } from './engine';

export const emittedSchemas: Record<string, z.ZodType> = {
  'pipeline.schema.json': PipelineConfig,
  'train-spec.schema.json': TrainSpec,
  'engine-event.schema.json': EngineEvent,
};

/** The file text for one schema: input shape (defaults make fields optional), stable formatting. */
export function renderJsonSchema(schema: z.ZodType): string {
  return JSON.stringify(z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }), null, 2) + '\n';
}
