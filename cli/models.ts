/**
 * A pipeline's models as the CLI reads them: the run manifests in its runs folder (what each model
 * is) and the registry's production pointer (which one is served). `tuneline models` and
 * `tuneline serve` share them.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readProduction, registryFolder, type RegistryEvent } from '../activities/registry';
import type { PipelineConfig } from '../schemas/config';
import { RunManifest } from '../schemas/manifests';
import { UserError } from './config';

const runsFolder = (config: PipelineConfig, configDir: string) => resolve(configDir, config.storage.runs);

/** Every run of the pipeline that exported a model, newest first. */
export function pipelineModels(config: PipelineConfig, configDir: string): RunManifest[] {
  const folder = runsFolder(config, configDir);
  if (!existsSync(folder)) return [];
  return readdirSync(folder)
    .map((id) => join(folder, id, 'run.json'))
    .filter((path) => existsSync(path))
    .flatMap((path) => {
      const parsed = RunManifest.safeParse(JSON.parse(readFileSync(path, 'utf8')));
      return parsed.success && parsed.data.pipeline === config.name && parsed.data.artifacts.onnx ? [parsed.data] : [];
    })
    .sort((a, b) => (a.startedAt < b.startedAt ? 1 : -1));
}

/** A run's manifest from the pipeline's runs folder; a clear error when it is missing or another pipeline's. */
export function runManifest(config: PipelineConfig, configDir: string, runId: string): RunManifest {
  const path = join(runsFolder(config, configDir), runId, 'run.json');
  if (!existsSync(path)) throw new UserError(`${runId}: no run.json at ${path}; tuneline models list shows the runs with a model`);
  const manifest = RunManifest.parse(JSON.parse(readFileSync(path, 'utf8')));
  if (manifest.pipeline !== config.name)
    throw new UserError(`${runId} is a run of pipeline ${manifest.pipeline}, not ${config.name}; pass that pipeline's file with -c`);
  return manifest;
}

/** The run manifest of the pipeline's production model, or a clear error when there is none. */
export function productionManifest(config: PipelineConfig, configDir: string): { pointer: RegistryEvent; manifest: RunManifest } {
  const pointer = readProduction(registryFolder(config, configDir));
  if (!pointer)
    throw new UserError(
      `${config.name} has no production model yet: run the pipeline until a model passes its gates, or promote one with tuneline models promote RUN_ID`,
    );
  return { pointer, manifest: runManifest(config, configDir, pointer.runId) };
}
