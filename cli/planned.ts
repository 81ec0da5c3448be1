/**
 * Keys of the pipeline file that validate but that nothing reads yet. The schema is the one list of
 * them: their descriptions in `schemas/config.ts` say "Planned: nothing reads this yet". A file that
 * sets one gets a note from `tuneline validate` and `tuneline run`, so nobody waits for an effect
 * that cannot come.
 */
import { z } from 'zod';
import { PLANNED, PipelineConfig } from '../schemas/config';

interface JsonSchemaNode {
  description?: string;
  properties?: Record<string, JsonSchemaNode>;
}

const cache = new WeakMap<z.ZodType, string[][]>();

/** Dotted paths of the planned keys (`review.sampleSize`, `sweep`, ...) of a schema (the pipeline file's by default), in schema order. */
export function plannedKeys(schema: z.ZodType = PipelineConfig): string[] {
  let paths = cache.get(schema);
  if (!paths) {
    const found: string[][] = [];
    const walk = (node: JsonSchemaNode, path: string[]) => {
      if (path.length > 0 && node.description?.includes(PLANNED)) {
        found.push(path);
        return; // a planned section's own keys need no note of their own
      }
      for (const [key, child] of Object.entries(node.properties ?? {})) walk(child, [...path, key]);
    };
    walk(z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchemaNode, []);
    cache.set(schema, (paths = found));
  }
  return paths.map((path) => path.join('.'));
}

function isSet(raw: unknown, path: string[]): boolean {
  let value = raw;
  for (const key of path) {
    if (value === null || typeof value !== 'object' || Array.isArray(value) || !Object.hasOwn(value, key)) return false;
    value = (value as Record<string, unknown>)[key];
  }
  return value !== undefined;
}

/**
 * One note per planned key that the parsed YAML (before defaults: `LoadedConfig.raw`) sets, e.g.
 * `sweep is planned; nothing reads it yet, so it has no effect`. Print each as `note: <text>`.
 */
export function plannedNotes(raw: unknown, schema: z.ZodType = PipelineConfig): string[] {
  return plannedKeys(schema)
    .filter((key) => isSet(raw, key.split('.')))
    .map((key) => `${key} is planned; nothing reads it yet, so it has no effect`);
}
