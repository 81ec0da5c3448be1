/**
 * Where the object store keeps things in a bucket, and the folder manifest (pure, no I/O).
 *
 * Under `s3://bucket/prefix/` the layout mirrors the local store's folder: a file is
 * `objects/<first two hex>/<sha256><ext>`, a folder is a manifest at `objects/<..>/<tree sha256>.dir`
 * whose files are `objects/<..>/<sha256>` (no extension, so equal bytes are stored once whatever
 * their names), a step's result is `steps/<key>.json`, a run's named artifacts are `runs/<run id>/files.json`,
 * and a training work folder's newest checkpoint copied to the bucket is named by `work/<key>/checkpoint.json`.
 */
import { z } from 'zod';
import { treeSha256 } from '../artifacts';

/** A bucket and a key prefix ('' or ending in '/'), as parsed from `s3://bucket/prefix`. */
export interface BucketLocation {
  bucket: string;
  prefix: string;
}

export function parseS3Uri(uri: string): BucketLocation {
  const match = /^s3:\/\/([^/]+)\/?(.*)$/.exec(uri);
  if (!match) throw new Error(`${uri} is not an s3:// URI; expected s3://bucket or s3://bucket/prefix`);
  const prefix = match[2]!.replace(/^\/+|\/+$/g, '');
  return { bucket: match[1]!, prefix: prefix ? `${prefix}/` : '' };
}

/** The object key an `s3://` URI names inside the given bucket; an error when it names another bucket. */
export function keyOfUri(location: BucketLocation, uri: string): string {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(uri);
  if (!match || match[1] !== location.bucket) throw new Error(`${uri} is not an object in s3://${location.bucket}`);
  return match[2]!;
}

export function uriOf(location: BucketLocation, key: string): string {
  return `s3://${location.bucket}/${key}`;
}

export function normalizeExtension(extension: string): string {
  return extension === '' || extension.startsWith('.') ? extension : `.${extension}`;
}

/** The key of a stored file; `extension` is '' for a folder's member files. */
export function objectKey(location: BucketLocation, sha256: string, extension: string): string {
  return `${location.prefix}objects/${sha256.slice(0, 2)}/${sha256}${normalizeExtension(extension)}`;
}

export function folderKey(location: BucketLocation, sha256: string): string {
  return objectKey(location, sha256, '.dir');
}

export function stepKey(location: BucketLocation, key: string): string {
  return `${location.prefix}steps/${key}.json`;
}

export function runFilesKey(location: BucketLocation, runId: string): string {
  return `${location.prefix}runs/${runId}/files.json`;
}

/** The newest checkpoint of a training's work folder copied to the bucket, by the folder's key (the budget's). */
export function checkpointPointerKey(location: BucketLocation, workKey: string): string {
  return `${location.prefix}work/${workKey}/checkpoint.json`;
}

export function isFolderUri(uri: string): boolean {
  return uri.endsWith('.dir');
}

/** A stored folder: each file's relative path ('/'-separated), content hash and size, in walk order. */
export const FolderManifest = z.strictObject({
  format: z.literal('tuneline-folder/1'),
  sha256: z.string().length(64).describe('The tree hash of `files` (sha256Tree of the local folder).'),
  bytes: z.number().int().min(0),
  files: z.array(z.strictObject({ path: z.string().min(1), sha256: z.string().length(64), bytes: z.number().int().min(0) })),
});
export type FolderManifest = z.infer<typeof FolderManifest>;

export function folderManifest(files: FolderManifest['files']): FolderManifest {
  return {
    format: 'tuneline-folder/1',
    sha256: treeSha256(files),
    bytes: files.reduce((sum, file) => sum + file.bytes, 0),
    files: [...files],
  };
}

/**
 * Problems that make a manifest unsafe to materialise: a tree hash that does not match its files
 * (the manifest was changed) or a path that would escape the folder.
 */
export function folderManifestProblems(manifest: FolderManifest): string[] {
  const problems: string[] = [];
  const found = treeSha256(manifest.files);
  if (found !== manifest.sha256) problems.push(`its files hash to ${found}, not the recorded ${manifest.sha256}`);
  for (const { path } of manifest.files) {
    if (path.startsWith('/') || path.split('/').some((part) => part === '..' || part === '.' || part === '')) {
      problems.push(`file path ${JSON.stringify(path)} is not a plain relative path`);
    }
  }
  return problems;
}
