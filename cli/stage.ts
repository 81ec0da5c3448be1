/**
 * With a bucket for artifacts, workers on other machines cannot read the client's files. Before a
 * run starts, the client stores every local file the config names (the data file, feedback and
 * knowledge files, the general text, a local base model's folder) in the bucket; the workflow input
 * carries their refs by the path as written, and activities read them through `configuredPath`.
 */
import { cp, stat } from 'node:fs/promises';
import { extname, resolve } from 'node:path';
import type { StepStore } from '../activities/artifacts';
import { isBucketUri, isLocalModel, openStore } from '../activities/context';
import type { PipelineConfig } from '../schemas/config';
import type { ArtifactRef } from '../schemas/manifests';
import { UserError } from './config';

/** The config's local files, by the path as written. */
export function localFilesOf(config: PipelineConfig): string[] {
  const paths = [
    ...(config.data.path && !config.data.sample ? [config.data.path] : []),
    ...config.data.feedback.map((f) => f.path),
    ...config.retrieval.knowledge.map((f) => f.path),
    ...(config.evaluation.generalText ? [config.evaluation.generalText] : []),
    ...(isLocalModel(config.model.base) ? [config.model.base] : []),
  ];
  return [...new Set(paths)];
}

/** Copies a file or folder to the store's scratch space and stores the copy (the store moves what it stores). */
async function storeCopy(store: StepStore, path: string): Promise<ArtifactRef> {
  const info = await stat(path).catch(() => undefined);
  if (!info) throw new UserError(`${path} does not exist; the pipeline file names it (relative paths start at the YAML file's folder)`);
  const copy = await store.tempPath();
  await cp(path, copy, { recursive: true });
  return info.isDirectory() ? store.putDir(copy) : store.putFile(copy, extname(path).toLowerCase(), null);
}

/** The staged refs for a run's input, or undefined when artifacts are local (workers read the files where they lie). */
export async function stageLocalFiles(config: PipelineConfig, configDir: string): Promise<Record<string, ArtifactRef> | undefined> {
  if (!isBucketUri(config.storage.artifacts)) return undefined;
  const store = openStore(config.storage, configDir);
  const staged: Record<string, ArtifactRef> = {};
  for (const path of localFilesOf(config)) {
    staged[path] = await storeCopy(store, resolve(configDir, path.replace(/^~(?=\/|$)/, process.env.HOME ?? '~')));
  }
  return staged;
}
