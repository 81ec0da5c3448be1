/**
 * Keys of the pipeline file that validate but that nothing reads yet. The schema is the one list of
 * them: their descriptions in `schemas/config.ts` say "Planned: nothing reads this yet". A file that
 * sets one gets a note from `tuneline validate` and `tuneline run`, so nobody waits for an effect
 * that cannot come.
 */
import { z } from 'zod';
import { PipelineConfig } from '../schemas/config';

const PLANNED_MARK = 'Planned: nothing reads this yet';

interface JsonSchemaNode {
  description?: string;
  properties?: Record<string, JsonSchemaNode>;
}

let plannedPaths: string[][] | undefined;

/** Dotted paths of the planned keys (`review.sampleSize`, `sweep`, ...), in schema order. */
export function plannedKeys(): string[] {
  if (!plannedPaths) {
    plannedPaths = [];
    const found = plannedPaths;
    const walk = (node: JsonSchemaNode, path: string[]) => {
      if (path.length > 0 && node.description?.includes(PLANNED_MARK)) {
        found.push(path);
        return; // a planned section's own keys need no note of their own
      }
      for (const [key, child] of Object.entries(node.properties ?? {})) walk(child, [...path, key]);
    };
    walk(z.toJSONSchema(PipelineConfig, { io: 'input', unrepresentable: 'any' }) as JsonSchemaNode, []);
  }
  return plannedPaths.map((path) => path.join('.'));
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
export function plannedNotes(raw: unknown): string[] {
  return plannedKeys()
    .filter((key) => isSet(raw, key.split('.')))
    .map((key) => `${key} is planned; nothing reads it yet, so it has no effect`);
}
