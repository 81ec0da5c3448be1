/**
 * The content-addressed artifact store, which is also the step cache.
 *
 * Files live at `objects/<first two hex>/<sha256><ext>`; a step's result lives at
 * `steps/<key>.json`, where the key hashes the step name, its config, its inputs' hashes and the
 * code version. Every write goes to `tmp/` first and is renamed into place, so a crash never leaves
 * a half-written file under a final name.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, readdir, readlink, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, extname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import type { ArtifactRef, StepResult } from '../schemas/manifests';

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** JSON with sorted keys, so equal values always hash the same. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );
}

/** Files under a folder, sorted, as paths relative to it. */
async function listFiles(root: string, dir = root): Promise<string[]> {
  const out: string[] = [];
  for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(root, path)));
    else out.push(relative(root, path));
  }
  return out;
}

/** One file of a folder: its path relative to the folder ('/'-separated), content hash and size in bytes. */
export interface TreeFile {
  path: string;
  sha256: string;
  bytes: number;
}

/** The order `listFiles` walks a folder in: names sorted within each folder ('a/x' before 'a.txt'). */
function compareTreePaths(a: string, b: string): number {
  const [as, bs] = [a.split('/'), b.split('/')];
  for (let i = 0; i < Math.min(as.length, bs.length); i++) if (as[i] !== bs[i]) return as[i]! < bs[i]! ? -1 : 1;
  return as.length - bs.length;
}

/** A folder's hash from its files: sha256 over each relative path and content hash, in walk order. */
export function treeSha256(files: readonly Pick<TreeFile, 'path' | 'sha256'>[]): string {
  const sorted = [...files].sort((a, b) => compareTreePaths(a.path, b.path));
  return sha256Hex(sorted.map((file) => `${file.path}\0${file.sha256}`).join('\n'));
}

/** A folder's hash (see `treeSha256`), its total size in bytes and its files. */
export async function sha256Tree(dir: string): Promise<{ sha256: string; bytes: number; files: TreeFile[] }> {
  const files: TreeFile[] = [];
  for (const path of await listFiles(dir)) {
    files.push({ path, sha256: await sha256File(join(dir, path)), bytes: (await stat(join(dir, path))).size });
  }
  return { sha256: treeSha256(files), bytes: files.reduce((sum, file) => sum + file.bytes, 0), files };
}

/** JSON lines text: one JSON value per line, each ending in a newline. */
export function toJsonl(items: readonly unknown[]): string {
  return items.map((item) => JSON.stringify(item) + '\n').join('');
}

/**
 * The local path of an artifact in a local store. An artifact in a bucket has none: read it
 * through its store's `fetch` (activities) or bring the run over with `tuneline fetch` (people).
 */
export function artifactPath(ref: Pick<ArtifactRef, 'uri'>): string {
  if (!ref.uri.startsWith('file:')) {
    throw new Error(`${ref.uri} is in an object store, not on this machine; \`tuneline fetch RUN_ID\` brings a run's files here`);
  }
  return fileURLToPath(ref.uri);
}

/**
 * What every step stores its outputs in and reads its inputs from: the local `ArtifactStore` or the
 * `ObjectStore` in an S3 bucket (`storage.artifacts: s3://...`). The engine and the readers work on
 * local files: `fetch` gives the local path of any stored artifact (for a bucket, through the
 * worker's verified read-through cache), and outputs are written to `tempPath()` first.
 */
export interface StepStore {
  /** `file:///...` or `s3://bucket/prefix`: where the refs it makes point. */
  readonly location: string;
  put(data: string | Uint8Array, extension: string, rows: number | null): Promise<ArtifactRef>;
  /** Stores a file written at a `tempPath()` path, moving it away. */
  putFile(tmp: string, extension: string, rows: number | null): Promise<ArtifactRef>;
  /** Stores a finished folder written at a `tempPath()` path, moving it away. */
  putDir(dir: string): Promise<ArtifactRef>;
  tempPath(): Promise<string>;
  /** A local scratch folder kept across attempts of one step key (checkpoints). */
  workDir(key: string): string;
  /** The local path of a stored file or folder, its hash checked. */
  fetch(ref: Pick<ArtifactRef, 'uri' | 'sha256'>): Promise<string>;
  verify(ref: ArtifactRef): Promise<boolean>;
  cachedStep<S, O extends string>(key: string): Promise<StepResult<S, O> | undefined>;
  recordStep<S, O extends string>(result: StepResult<S, O>): Promise<void>;
  /** Names a run's (or sweep's) artifacts under `runs/<id>/`; returns where a person finds them. */
  publishRun(runId: string, files: Record<string, ArtifactRef>): Promise<string>;
  /** The files `publishRun` named for this run, or undefined when it named none. */
  runFiles(runId: string): Promise<Record<string, ArtifactRef> | undefined>;
}

/** The records of a JSON-lines artifact (blank lines skipped), each checked against its schema. */
export async function readJsonl<T>(store: StepStore, ref: Pick<ArtifactRef, 'uri' | 'sha256'>, schema: z.ZodType<T>): Promise<T[]> {
  const path = await store.fetch(ref);
  const lines = (await readFile(path, 'utf8')).split('\n');
  return lines.flatMap((line, n) => {
    if (!line.trim()) return [];
    const parsed = schema.safeParse(JSON.parse(line));
    if (!parsed.success) throw new Error(`${path} line ${n + 1}: ${z.prettifyError(parsed.error)}`);
    return [parsed.data];
  });
}

/** A JSON artifact checked against its schema. */
export async function readJsonArtifact<T>(store: StepStore, ref: Pick<ArtifactRef, 'uri' | 'sha256'>, schema: z.ZodType<T>): Promise<T> {
  return parseJsonFile(await store.fetch(ref), schema);
}

/** A JSON file checked against its schema; the error names the file and every problem. */
export async function parseJsonFile<T>(path: string, schema: z.ZodType<T>): Promise<T> {
  const parsed = schema.safeParse(JSON.parse(await readFile(path, 'utf8')));
  if (!parsed.success) throw new Error(`${path}: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

export class ArtifactStore implements StepStore {
  readonly root: string;
  /** `storage.runs`: a folder per run of named links into `objects/`. */
  readonly runsRoot: string;

  constructor(root: string, runsRoot = join(root, '..', 'runs')) {
    this.root = resolve(root);
    this.runsRoot = resolve(runsRoot);
  }

  get location(): string {
    return pathToFileURL(this.root).href;
  }

  /** The file's path, once its bytes (or a folder's files) are checked against the ref's hash. */
  async fetch(ref: Pick<ArtifactRef, 'uri' | 'sha256'>): Promise<string> {
    const path = artifactPath(ref);
    if (!(await this.hasIntact(path, ref.sha256))) {
      throw new Error(
        `${path} is missing or changed since it was stored (expected sha256 ${ref.sha256}). ` +
          'Run the pipeline again: the step that made it runs again and stores it anew.',
      );
    }
    return path;
  }

  /**
   * `<storage.runs>/<run id>/` with a named link per artifact (train.arrow, report.html, ...), so
   * people and tools need not know the hashes. Links are made under a temp name and renamed over
   * any that a previous attempt left: retries are safe.
   */
  async publishRun(runId: string, files: Record<string, ArtifactRef>): Promise<string> {
    const folder = join(this.runsRoot, runId);
    await mkdir(folder, { recursive: true });
    for (const [name, ref] of Object.entries(files)) {
      const tmp = join(folder, `.${name}.tmp`);
      await symlink(artifactPath(ref), tmp).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
      await rename(tmp, join(folder, name));
    }
    return folder;
  }

  async runFiles(runId: string): Promise<Record<string, ArtifactRef> | undefined> {
    const folder = join(this.runsRoot, runId);
    const names = await readdir(folder).catch(() => undefined);
    if (!names) return undefined;
    const files: Record<string, ArtifactRef> = {};
    for (const name of names.filter((n) => !n.startsWith('.'))) {
      const target = await readlink(join(folder, name)).catch(() => undefined);
      const sha256 = target && /([0-9a-f]{64})[^/]*$/.exec(target)?.[1];
      if (!target || !sha256) continue;
      const info = await stat(target);
      const bytes = info.isDirectory() ? (await sha256Tree(target)).bytes : info.size;
      files[name] = { uri: pathToFileURL(target).href, sha256, bytes, rows: null };
    }
    return files;
  }

  /** Stores bytes under their hash and returns the reference. */
  async put(data: string | Uint8Array, extension: string, rows: number | null): Promise<ArtifactRef> {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    const sha256 = sha256Hex(bytes);
    const finalPath = this.objectPath(sha256, extension);
    if (!(await this.hasIntact(finalPath, sha256))) {
      const tmp = await this.tempPath();
      await writeFile(tmp, bytes);
      await mkdir(dirname(finalPath), { recursive: true });
      await rename(tmp, finalPath);
    }
    return { uri: pathToFileURL(finalPath).href, sha256, bytes: bytes.byteLength, rows };
  }

  /** Stores a file that was written to a temp path from `tempPath()`, moving it into place. */
  async putFile(tmp: string, extension: string, rows: number | null): Promise<ArtifactRef> {
    const sha256 = await sha256File(tmp);
    const finalPath = this.objectPath(sha256, extension);
    const { size } = await stat(tmp);
    await mkdir(dirname(finalPath), { recursive: true });
    await rename(tmp, finalPath);
    return { uri: pathToFileURL(finalPath).href, sha256, bytes: size, rows };
  }

  /** Stores a finished folder (a trained model, say) under its tree hash, moving it into place. */
  async putDir(dir: string): Promise<ArtifactRef> {
    const { sha256, bytes } = await sha256Tree(dir);
    const finalPath = this.objectPath(sha256, '.dir');
    if (await this.hasIntact(finalPath, sha256)) await rm(dir, { recursive: true, force: true });
    else {
      await mkdir(dirname(finalPath), { recursive: true });
      await rm(finalPath, { recursive: true, force: true });
      await rename(dir, finalPath);
    }
    return { uri: pathToFileURL(finalPath).href, sha256, bytes, rows: null };
  }

  /** A stable scratch folder for one step key: a retried attempt finds what the last one left (checkpoints). */
  workDir(key: string): string {
    return join(this.root, 'work', key.slice(0, 16));
  }

  async tempPath(): Promise<string> {
    const dir = join(this.root, 'tmp');
    await mkdir(dir, { recursive: true });
    return join(dir, randomUUID());
  }

  /** True when the referenced file exists and still has the recorded hash. */
  async verify(ref: ArtifactRef): Promise<boolean> {
    return this.hasIntact(artifactPath(ref), ref.sha256);
  }

  /** The cached result for a step key, or undefined when absent or when any output no longer hashes right. */
  async cachedStep<S, O extends string>(key: string): Promise<StepResult<S, O> | undefined> {
    let text: string;
    try {
      text = await readFile(this.stepPath(key), 'utf8');
    } catch {
      return undefined;
    }
    const result = JSON.parse(text) as StepResult<S, O>;
    for (const ref of Object.values<ArtifactRef>(result.outputs)) {
      if (!(await this.verify(ref))) return undefined;
    }
    return result;
  }

  async recordStep<S, O extends string>(result: StepResult<S, O>): Promise<void> {
    const tmp = await this.tempPath();
    await writeFile(tmp, JSON.stringify(result, null, 2));
    await mkdir(join(this.root, 'steps'), { recursive: true });
    await rename(tmp, this.stepPath(result.key));
  }

  /** Removes temp files left by crashed writers. */
  async sweepTemp(): Promise<void> {
    const dir = join(this.root, 'tmp');
    for (const name of await readdir(dir).catch(() => [] as string[])) await rm(join(dir, name), { force: true, recursive: true });
  }

  private objectPath(sha256: string, extension: string): string {
    const ext = extension.startsWith('.') ? extension : `.${extension}`;
    return join(this.root, 'objects', sha256.slice(0, 2), `${sha256}${ext}`);
  }

  private stepPath(key: string): string {
    return join(this.root, 'steps', `${key}.json`);
  }

  private async hasIntact(path: string, sha256: string): Promise<boolean> {
    try {
      const isDir = (await stat(path)).isDirectory();
      return (isDir ? (await sha256Tree(path)).sha256 : await sha256File(path)) === sha256;
    } catch {
      return false;
    }
  }
}

export function extensionOf(path: string): string {
  return extname(path).toLowerCase();
}
