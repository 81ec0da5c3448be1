/**
 * The base model's identity: which bytes `model.base` names right now (the GGUF file of the default
 * model, a local folder's files, or only a hub id). It is part of the cache key of every step that
 * runs the base model, and the run manifest records it.
 */
import { stat } from 'node:fs/promises';
import type { BaseModelIdentity, StepContext } from '../schemas/manifests';
import { sha256File, sha256Tree } from './artifacts';
import { baseModelFor } from './context';
import { engineEvent } from './engine-process';

/** File hashes by path, size and modification time: the default GGUF (about 90 MB) is hashed once per worker. */
const fileHashes = new Map<string, string>();

async function hashFile(path: string): Promise<string> {
  const { size, mtimeMs } = await stat(path);
  const memoKey = `${path}\0${size}\0${mtimeMs}`;
  let sha256 = fileHashes.get(memoKey);
  if (!sha256) fileHashes.set(memoKey, (sha256 = await sha256File(path)));
  return sha256;
}

/** Asks the engine where the base model's bytes are (a second, no model loaded) and hashes them. */
export async function describeBaseModel(context: Pick<StepContext, 'config' | 'configDir' | 'staged'>): Promise<BaseModelIdentity> {
  const info = await engineEvent(['model-info', '--model', (await baseModelFor(context)).path], 'model-info', 'model');
  let sha256: string | null = null;
  if (info.path && info.kind === 'gguf') sha256 = await hashFile(info.path);
  else if (info.path && info.kind === 'folder') sha256 = (await sha256Tree(info.path)).sha256;
  return { name: context.config.model.base, kind: info.kind, path: info.path, sha256, revision: info.revision };
}
