/**
 * A readable folder per run: `<storage.runs>/<run id>/` with named links into the content-addressed
 * store (train.arrow, data-report.md, ...), so people and tools need not know the hashes.
 */
import { mkdir, rename, symlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { PipelineConfig } from '../schemas/config';
import type { ArtifactRef } from '../schemas/manifests';
import { artifactPath } from './artifacts';

export async function publishRunFolder(input: {
  config: PipelineConfig;
  configDir: string;
  runId: string;
  files: Record<string, ArtifactRef>;
}): Promise<string> {
  const folder = resolve(input.configDir, input.config.storage.runs, input.runId);
  await mkdir(folder, { recursive: true });
  for (const [name, ref] of Object.entries(input.files)) {
    // Link under a temp name, then rename over any link a previous attempt left: retries are safe.
    const tmp = join(folder, `.${name}.tmp`);
    await symlink(artifactPath(ref), tmp).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    await rename(tmp, join(folder, name));
  }
  return folder;
}
