/**
 * What every activity derives from its StepContext: the artifact store, the local paths of the
 * files the config names (the base model, data files) as the engine must see them, and config
 * errors as non-retryable failures. No activity is defined here.
 */
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { ErrorTypes } from '../schemas/errors';
import type { PipelineConfig } from '../schemas/config';
import type { StepContext } from '../schemas/manifests';
import { ArtifactStore, type StepStore } from './artifacts';
import { ObjectStore } from './object-store/store';

const GiB = 1024 ** 3;

/** This machine's read-through cache of a bucket's artifacts: `TUNELINE_CACHE_DIR` and `TUNELINE_CACHE_GB`. */
export function cacheSettings(env: NodeJS.ProcessEnv = process.env): { dir: string; limitBytes: number } {
  const gb = Number(env.TUNELINE_CACHE_GB ?? 20);
  if (!Number.isFinite(gb) || gb <= 0)
    throw new Error(`TUNELINE_CACHE_GB must be a positive number of gigabytes, not "${env.TUNELINE_CACHE_GB}"`);
  return { dir: resolve(env.TUNELINE_CACHE_DIR ?? join(homedir(), '.cache', 'tuneline')), limitBytes: gb * GiB };
}

export const isBucketUri = (location: string): boolean => location.startsWith('s3://');

/** One ObjectStore per bucket location and process, so its cache's bookkeeping is shared. */
const objectStores = new Map<string, ObjectStore>();

/** The store `storage` names: a bucket (`s3://...`) or folders relative to the YAML file. */
export function openStore(storage: PipelineConfig['storage'], configDir: string): StepStore {
  if (!isBucketUri(storage.artifacts)) {
    return new ArtifactStore(resolve(configDir, storage.artifacts), resolve(configDir, storage.runs));
  }
  const { dir, limitBytes } = cacheSettings();
  const key = `${storage.artifacts}\0${dir}`;
  let store = objectStores.get(key);
  if (!store) {
    store = new ObjectStore(storage.artifacts, {
      cacheDir: join(dir, 'objects'),
      cacheLimitBytes: limitBytes,
      workRoot: join(dir, 'work'),
    });
    objectStores.set(key, store);
  }
  return store;
}

/** Where a run's named files are: its folder of links, or `s3://bucket/prefix/runs/<id>/` (see `StepStore.publishRun`). */
export function runLocation(storage: PipelineConfig['storage'], configDir: string, runId: string): string {
  return isBucketUri(storage.artifacts)
    ? `${storage.artifacts.replace(/\/+$/, '')}/runs/${runId}/`
    : resolve(configDir, storage.runs, runId);
}

export function storeFor(context: Pick<StepContext, 'config' | 'configDir'>): StepStore {
  return openStore(context.config.storage, context.configDir);
}

/**
 * The local path of a file or folder the config names (`data.path`, a feedback file, the base
 * model's folder): with a bucket, the copy the client staged there (`StepContext.staged`), fetched
 * into this machine's cache; else the path relative to the YAML file.
 */
export async function configuredPath(context: Pick<StepContext, 'config' | 'configDir' | 'staged'>, path: string): Promise<string> {
  const staged = context.staged?.[path];
  return staged ? storeFor(context).fetch(staged) : resolve(context.configDir, expandHome(path));
}

const expandHome = (path: string) => path.replace(/^~(?=\/|$)/, process.env.HOME ?? '~');

/** Whether `model.base` names a local folder (a path), not `default` or a hub id. */
export const isLocalModel = (base: string): boolean => /^[./~]/.test(base);

/**
 * `model.base` as the engine must see it (`path`: a local folder becomes an absolute path on this
 * machine, `default` and hub ids pass through) and as cache keys name it (`name`: the same, except
 * that a folder staged in a bucket is named as written, not by this machine's cache path; its
 * bytes' hash is in the keys too).
 */
export async function baseModelFor(context: Pick<StepContext, 'config' | 'configDir' | 'staged'>): Promise<{ path: string; name: string }> {
  const { base } = context.config.model;
  if (!isLocalModel(base)) return { path: base, name: base };
  const path = await configuredPath(context, base);
  return { path, name: context.staged?.[base] ? base : path };
}

/** A problem the user must fix: the run fails at once with this message, without retries. */
export function configError(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, ErrorTypes.config);
}
