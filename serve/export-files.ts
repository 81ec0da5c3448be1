/**
 * The JSON files of an export folder (`python -m engine export`, layout in engine/export.py). The two the
 * engine writes for us are parsed with their schemas (schemas/engine.ts); the Hugging Face files
 * (tokenizer.json, tokenizer_config.json, generation_config.json) are read as plain JSON. A file that is
 * missing or does not parse gives one message that names it and says to export again.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ExportManifest, PromptFormat } from '../schemas/engine';

const EXPORT_AGAIN = 're-run the export (python -m engine export)';

export type JsonObject = Record<string, unknown>;

/** A JSON object from the export folder. */
export function readExportJson(exportDir: string, name: string): JsonObject {
  const file = path.join(exportDir, name);
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new Error(`${file}: cannot read the exported model's file (${(error as Error).message}); ${EXPORT_AGAIN}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`${file}: is not a JSON object; ${EXPORT_AGAIN}`);
  }
  return value as JsonObject;
}

function parseExportFile<T>(exportDir: string, name: string, schema: z.ZodType<T>): T {
  const parsed = schema.safeParse(readExportJson(exportDir, name));
  if (!parsed.success) {
    throw new Error(`${path.join(exportDir, name)}: not what this version expects:\n${z.prettifyError(parsed.error)}\n${EXPORT_AGAIN}`);
  }
  return parsed.data;
}

/** `export.json`: the ONNX file and the shapes of its KV cache, and the ids that end an answer. */
export const readExportManifest = (exportDir: string): ExportManifest => parseExportFile(exportDir, 'export.json', ExportManifest);

/** `prompt_format.json`: how the engine rendered prompts in training. */
export const readPromptFormat = (exportDir: string): PromptFormat => parseExportFile(exportDir, 'prompt_format.json', PromptFormat);
