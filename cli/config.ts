/** Reads `temporal.yaml`: YAML syntax errors with line numbers, then every schema problem at once. */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { sha256Hex } from '../activities/artifacts';
import type { PipelineConfig } from '../schemas/config';
import { checkConfig, formatProblems, type ConfigProblem } from '../schemas/validate';

export interface LoadedConfig {
  path: string;
  configDir: string;
  /** The YAML as parsed, before defaults: what the workflow receives and validates again. */
  raw: unknown;
  configHash: string;
  config?: PipelineConfig;
  problems: ConfigProblem[];
}

export class UserError extends Error {}

export function loadConfigFile(path: string): LoadedConfig {
  const absolute = resolve(path);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch {
    throw new UserError(`cannot read ${absolute}: no such file. Pass --config PATH or run from the folder holding temporal.yaml.`);
  }
  const doc = parseDocument(text, { prettyErrors: true });
  const base = { path: absolute, configDir: dirname(absolute), configHash: sha256Hex(text).slice(0, 16) };
  if (doc.errors.length > 0) {
    return {
      ...base,
      raw: undefined,
      problems: doc.errors.map((e) => ({ path: `line ${e.linePos?.[0].line ?? '?'}`, message: e.message.split('\n')[0]! })),
    };
  }
  const raw: unknown = doc.toJS();
  const check = checkConfig(raw);
  return check.ok ? { ...base, raw, config: check.config, problems: [] } : { ...base, raw, problems: check.problems };
}

/** The loaded config, or a UserError listing every problem. */
export function requireValidConfig(path: string): LoadedConfig & { config: PipelineConfig } {
  const loaded = loadConfigFile(path);
  if (!loaded.config) throw new UserError(formatProblems(loaded.problems, loaded.path));
  return loaded as LoadedConfig & { config: PipelineConfig };
}
