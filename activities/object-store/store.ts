/**
 * The artifact store in an S3-compatible bucket: the counterpart of `ArtifactStore` for workers on
 * many machines. Same operations, same hashes (a folder's sha256 is `sha256Tree` of the local folder),
 * `s3://bucket/prefix/...` URIs in the refs. The engine stays file-based: outputs are uploaded from
 * local files, inputs come back as local paths through a bounded read-through cache.
 *
 * Objects are content-addressed and written only when absent (HEAD, then a put with `If-None-Match: *`
 * where the server honours it); files above the part size go up in parts (lib-storage's Upload, which
 * aborts the multipart upload when it fails, so no object appears under the final key). Every download
 * is hashed on its way to disk and refused when the hash is not the ref's.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AbortMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { z } from 'zod';
import { ArtifactRef, MirroredCheckpoint, type StepResult } from '../../schemas/manifests';
import { sha256File, sha256Hex, sha256Tree, treeSha256, type StepStore } from '../artifacts';
import { ReadThroughCache } from './cache';
import { s3ClientFromEnvironment } from './client';
import {
  FolderManifest,
  folderKey,
  folderManifest,
  folderManifestProblems,
  isFolderUri,
  keyOfUri,
  objectKey,
  parseS3Uri,
  runFilesKey,
  checkpointPointerKey,
  stepKey,
  uriOf,
  type BucketLocation,
} from './layout';

/** A stored object whose bytes no longer hash to what its ref records. */
export class CorruptObjectError extends Error {
  constructor(
    readonly uri: string,
    readonly expected: string,
    readonly found: string,
  ) {
    super(
      `${uri} is damaged: expected sha256 ${expected}, found ${found}. The object was changed after it was stored. ` +
        `Delete it (aws s3 rm ${uri}); the next run then finds the output missing, runs its step again and stores it anew.`,
    );
    this.name = 'CorruptObjectError';
  }
}

/** A ref whose object is not in the bucket (deleted, or another bucket's ref). */
export class MissingObjectError extends Error {
  constructor(readonly uri: string) {
    super(`${uri} is not in the bucket; run the step that made it again (the next run does so on its own).`);
    this.name = 'MissingObjectError';
  }
}

export interface ObjectStoreOptions {
  /** The local read-through cache: its folder and its limit in bytes (least recently used entries go first). */
  cacheDir: string;
  cacheLimitBytes: number;
  /** Where `workDir` keeps steps' scratch folders (checkpoints); `<cacheDir>/work` by default. */
  workRoot?: string;
  /** Defaults to a client configured from the standard AWS environment (`s3ClientFromEnvironment`). */
  client?: S3Client;
  /** Bytes per part; a file larger than one part goes up as a multipart upload. At least 5 MiB (S3's minimum). */
  partSizeBytes?: number;
  /** Parts in flight at once for one file. */
  partsInFlight?: number;
}

export interface TransferOptions {
  /** Cancels an upload or download; a cancelled multipart upload is aborted on the server. */
  signal?: AbortSignal;
}

const MiB = 1024 * 1024;

function statusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

/** Hashes the bytes that stream through it. */
function hashing(hash: ReturnType<typeof createHash>): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
}

/** A run's named artifacts, kept at `runs/<run id>/files.json` (the local store's run folder of links). */
const RunFiles = z.record(z.string(), ArtifactRef);

export class ObjectStore implements StepStore {
  readonly bucket: BucketLocation;
  readonly client: S3Client;
  readonly cache: ReadThroughCache;
  private readonly partSizeBytes: number;
  private readonly partsInFlight: number;
  private readonly workRoot: string;

  /** `uri` is `s3://bucket` or `s3://bucket/prefix`. */
  constructor(uri: string, options: ObjectStoreOptions) {
    this.bucket = parseS3Uri(uri);
    this.client = options.client ?? s3ClientFromEnvironment();
    this.cache = new ReadThroughCache(options.cacheDir, options.cacheLimitBytes);
    this.partSizeBytes = options.partSizeBytes ?? 16 * MiB;
    this.partsInFlight = options.partsInFlight ?? 2;
    this.workRoot = options.workRoot ?? join(options.cacheDir, 'work');
  }

  get location(): string {
    return uriOf(this.bucket, this.bucket.prefix).replace(/\/$/, '');
  }

  /** A scratch folder on this machine for one step key: a retried attempt here finds what the last one left. */
  workDir(key: string): string {
    return join(this.workRoot, key.slice(0, 16));
  }

  async publishRun(runId: string, files: Record<string, ArtifactRef>): Promise<string> {
    const key = runFilesKey(this.bucket, runId);
    const previous = (await this.runFiles(runId)) ?? {};
    const body = JSON.stringify({ ...previous, ...files }, null, 2);
    await this.client.send(new PutObjectCommand({ Bucket: this.bucket.bucket, Key: key, Body: body, ContentType: 'application/json' }));
    return `${this.location}/runs/${runId}/`;
  }

  async runFiles(runId: string): Promise<Record<string, ArtifactRef> | undefined> {
    const text = await this.getText(runFilesKey(this.bucket, runId)).catch((error: unknown) => {
      if (error instanceof MissingObjectError) return undefined;
      throw error;
    });
    return text === undefined ? undefined : RunFiles.parse(JSON.parse(text));
  }

  /**
   * Names the newest checkpoint of a training work folder (by its key) that is in the bucket, so a
   * later call of the same budget on any machine can restore it (a sweep trial continued after a rung).
   */
  async recordCheckpoint(workKey: string, mirrored: MirroredCheckpoint): Promise<void> {
    const body = JSON.stringify(mirrored);
    const key = checkpointPointerKey(this.bucket, workKey);
    await this.client.send(new PutObjectCommand({ Bucket: this.bucket.bucket, Key: key, Body: body, ContentType: 'application/json' }));
  }

  /** The checkpoint `recordCheckpoint` last named for this work folder, or undefined. */
  async latestCheckpoint(workKey: string): Promise<MirroredCheckpoint | undefined> {
    const text = await this.getText(checkpointPointerKey(this.bucket, workKey)).catch((error: unknown) => {
      if (error instanceof MissingObjectError) return undefined;
      throw error;
    });
    return text === undefined ? undefined : MirroredCheckpoint.parse(JSON.parse(text));
  }

  /** Stores bytes under their hash and returns the reference. */
  async put(data: string | Uint8Array, extension: string, rows: number | null, options: TransferOptions = {}): Promise<ArtifactRef> {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    const sha256 = sha256Hex(bytes);
    const key = objectKey(this.bucket, sha256, extension);
    await this.putIfAbsent(key, sha256, bytes.byteLength, () => bytes, options);
    const tmp = await this.cache.tempPath();
    await writeFile(tmp, bytes);
    await this.cache.admit(tmp, basename(key));
    return { uri: uriOf(this.bucket, key), sha256, bytes: bytes.byteLength, rows };
  }

  /** A scratch path on the cache's file system, for a file or folder later given to `putFile` or `putDir`. */
  async tempPath(): Promise<string> {
    return this.cache.tempPath();
  }

  /** Uploads a finished file and moves it into the cache (the local store moves it into place). */
  async putFile(path: string, extension: string, rows: number | null, options: TransferOptions = {}): Promise<ArtifactRef> {
    const sha256 = await sha256File(path);
    const { size } = await stat(path);
    const key = objectKey(this.bucket, sha256, extension);
    await this.putIfAbsent(key, sha256, size, () => createReadStream(path), options);
    await this.cache.admit(path, basename(key));
    return { uri: uriOf(this.bucket, key), sha256, bytes: size, rows };
  }

  /**
   * Uploads a finished folder (a trained model, say) as one object per file plus a manifest under
   * the folder's tree hash, then moves the folder into the cache. The manifest goes last, so a
   * manifest in the bucket means all its files are there.
   */
  async putDir(dir: string, options: TransferOptions = {}): Promise<ArtifactRef> {
    const tree = await sha256Tree(dir);
    for (const file of tree.files) {
      const path = join(dir, file.path);
      await this.putIfAbsent(objectKey(this.bucket, file.sha256, ''), file.sha256, file.bytes, () => createReadStream(path), options);
    }
    const manifest = Buffer.from(JSON.stringify(folderManifest(tree.files), null, 2));
    const key = folderKey(this.bucket, tree.sha256);
    await this.putIfAbsent(key, tree.sha256, manifest.byteLength, () => manifest, options);
    await this.cache.admit(dir, basename(key));
    return { uri: uriOf(this.bucket, key), sha256: tree.sha256, bytes: tree.bytes, rows: null };
  }

  /** The local path of a stored file or folder: from the cache, else downloaded, verified and cached. */
  async fetch(ref: Pick<ArtifactRef, 'uri' | 'sha256'>, options: TransferOptions = {}): Promise<string> {
    const key = keyOfUri(this.bucket, ref.uri);
    const cached = await this.cache.lookup(basename(key));
    if (cached) return cached;
    const tmp = await this.cache.tempPath();
    try {
      if (isFolderUri(ref.uri)) await this.downloadFolder(key, ref.sha256, tmp, options);
      else await this.downloadFile(key, ref.sha256, tmp, options);
      return await this.cache.admit(tmp, basename(key));
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /**
   * True when the referenced object is in the bucket with the recorded size and hash (for a folder:
   * its manifest and every file). Checks the hash recorded at upload, not the bytes; `fetch` hashes those.
   */
  async verify(ref: ArtifactRef): Promise<boolean> {
    const key = keyOfUri(this.bucket, ref.uri);
    if (!isFolderUri(ref.uri)) return this.isIntact(key, ref.sha256, ref.bytes);
    const manifest = await this.readManifest(key, ref.sha256).catch(() => undefined);
    if (!manifest) return false;
    for (const file of manifest.files) {
      if (!(await this.isIntact(objectKey(this.bucket, file.sha256, ''), file.sha256, file.bytes))) return false;
    }
    return true;
  }

  /** The cached result for a step key, or undefined when absent or when any output is missing or changed. */
  async cachedStep<S, O extends string>(key: string): Promise<StepResult<S, O> | undefined> {
    const text = await this.getText(stepKey(this.bucket, key)).catch((error: unknown) => {
      if (error instanceof MissingObjectError) return undefined;
      throw error;
    });
    if (text === undefined) return undefined;
    const result = JSON.parse(text) as StepResult<S, O>;
    for (const ref of Object.values<ArtifactRef>(result.outputs)) {
      if (!(await this.verify(ref))) return undefined;
    }
    return result;
  }

  async recordStep<S, O extends string>(result: StepResult<S, O>): Promise<void> {
    const body = JSON.stringify(result, null, 2);
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket.bucket,
        Key: stepKey(this.bucket, result.key),
        Body: body,
        ContentType: 'application/json',
      }),
    );
  }

  /**
   * Aborts multipart uploads under this store's prefix begun before `olderThanMs` ago: a writer
   * killed mid-upload leaves its parts on the server (never an object). The counterpart of `sweepTemp`.
   */
  async sweepIncompleteUploads(olderThanMs = 24 * 3600 * 1000): Promise<number> {
    const cutoff = Date.now() - olderThanMs;
    let swept = 0;
    let markers: { KeyMarker?: string; UploadIdMarker?: string } = {};
    for (;;) {
      const page = await this.client.send(
        new ListMultipartUploadsCommand({ Bucket: this.bucket.bucket, Prefix: this.bucket.prefix, ...markers }),
      );
      for (const { Key, UploadId, Initiated } of page.Uploads ?? []) {
        if (!Key || !UploadId || (Initiated && Initiated.getTime() > cutoff)) continue;
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket.bucket, Key, UploadId }));
        swept += 1;
      }
      if (!page.IsTruncated) return swept;
      markers = { KeyMarker: page.NextKeyMarker, UploadIdMarker: page.NextUploadIdMarker };
    }
  }

  /**
   * Uploads unless an object with this hash and size is already there. An object under the key with
   * another hash or size was damaged and is replaced; the content address says what belongs there.
   */
  private async putIfAbsent(
    key: string,
    sha256: string,
    bytes: number,
    body: () => Readable | Uint8Array,
    { signal }: TransferOptions,
  ): Promise<void> {
    const existing = await this.head(key);
    if (existing && existing.bytes === bytes && existing.sha256 === sha256) return;
    const upload = new Upload({
      client: this.client,
      params: {
        Bucket: this.bucket.bucket,
        Key: key,
        Body: body(),
        Metadata: { sha256 },
        // Closes the race with a concurrent writer of the same content on servers that honour it.
        ...(existing ? {} : { IfNoneMatch: '*' }),
      },
      partSize: this.partSizeBytes,
      queueSize: this.partsInFlight,
      leavePartsOnError: false,
    });
    const abort = () => void upload.abort();
    signal?.addEventListener('abort', abort, { once: true });
    try {
      if (signal?.aborted) await upload.abort();
      await upload.done();
    } catch (error) {
      // 412: another writer stored the same content first.
      if (statusOf(error) === 412) return;
      // A cancelled upload's done() settles at once while its own clean-up runs on behind it; the
      // multipart upload is aborted here too, so none of its parts is left when this throws.
      if (upload.uploadId) {
        const abortUpload = new AbortMultipartUploadCommand({ Bucket: this.bucket.bucket, Key: key, UploadId: upload.uploadId });
        await this.client.send(abortUpload).catch(() => undefined);
      }
      throw error;
    } finally {
      signal?.removeEventListener('abort', abort);
    }
  }

  private async head(key: string): Promise<{ bytes: number; sha256: string | undefined } | undefined> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket.bucket, Key: key }));
      return { bytes: head.ContentLength ?? -1, sha256: head.Metadata?.sha256 };
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw error;
    }
  }

  private async isIntact(key: string, sha256: string, bytes: number): Promise<boolean> {
    const head = await this.head(key);
    return head !== undefined && head.bytes === bytes && head.sha256 === sha256;
  }

  private async getObject(key: string, signal?: AbortSignal): Promise<Readable> {
    try {
      const response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket.bucket, Key: key }), { abortSignal: signal });
      return response.Body as Readable;
    } catch (error) {
      if (statusOf(error) === 404) throw new MissingObjectError(uriOf(this.bucket, key));
      throw error;
    }
  }

  private async getText(key: string): Promise<string> {
    const body = await this.getObject(key);
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }

  /** Streams an object to `path`, hashing it on the way; a wrong hash removes the file and throws. */
  private async downloadFile(key: string, sha256: string, path: string, { signal }: TransferOptions): Promise<void> {
    const hash = createHash('sha256');
    await mkdir(dirname(path), { recursive: true });
    await pipeline(await this.getObject(key, signal), hashing(hash), createWriteStream(path), { signal });
    const found = hash.digest('hex');
    if (found !== sha256) {
      await rm(path, { force: true });
      throw new CorruptObjectError(uriOf(this.bucket, key), sha256, found);
    }
  }

  /** A folder's manifest, refused unless its files hash to the folder's recorded tree hash. */
  private async readManifest(key: string, sha256: string): Promise<FolderManifest> {
    const uri = uriOf(this.bucket, key);
    const text = await this.getText(key);
    let parsed: FolderManifest;
    try {
      parsed = FolderManifest.parse(JSON.parse(text));
    } catch (error) {
      const problem = error instanceof z.ZodError ? z.prettifyError(error) : String(error);
      throw new CorruptObjectError(uri, sha256, `a manifest that does not parse (${problem}) of sha256 ${sha256Hex(text)}`);
    }
    const problems = folderManifestProblems(parsed);
    const found = treeSha256(parsed.files);
    if (found !== sha256 || problems.length) throw new CorruptObjectError(uri, sha256, [found, ...problems].join('; '));
    return parsed;
  }

  private async downloadFolder(key: string, sha256: string, dir: string, options: TransferOptions): Promise<void> {
    const manifest = await this.readManifest(key, sha256);
    await mkdir(dir, { recursive: true });
    for (const file of manifest.files) {
      await this.downloadFile(objectKey(this.bucket, file.sha256, ''), file.sha256, join(dir, file.path), options);
    }
  }
}
