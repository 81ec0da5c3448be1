/**
 * A worker's bounded local read-through cache of stored files and folders.
 *
 * Each entry is a file or folder at `entries/<name>`, named by content hash, so an entry never goes
 * stale. The entry's modification time is its last use; past the byte limit the least recently used
 * entries are removed. The state lives on disk only, so several workers on one machine may share
 * the folder. Entries arrive through `tmp/` and a rename, like the local store's writes.
 */
import { randomUUID } from 'node:crypto';
import { cp, mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';

export interface CacheEntry {
  name: string;
  bytes: number;
  lastUsedMs: number;
}

/**
 * The entries to remove so the rest fit in `limitBytes`: least recently used first, never one in
 * `keep` (the entry being handed out, even when it alone is over the limit).
 */
export function entriesToEvict(entries: readonly CacheEntry[], limitBytes: number, keep: ReadonlySet<string>): string[] {
  let total = entries.reduce((sum, entry) => sum + entry.bytes, 0);
  const evicted: string[] = [];
  for (const entry of [...entries].sort((a, b) => a.lastUsedMs - b.lastUsedMs || (a.name < b.name ? -1 : 1))) {
    if (total <= limitBytes) break;
    if (keep.has(entry.name)) continue;
    evicted.push(entry.name);
    total -= entry.bytes;
  }
  return evicted;
}

async function sizeOf(path: string): Promise<number> {
  const info = await stat(path);
  if (!info.isDirectory()) return info.size;
  let bytes = 0;
  for (const name of await readdir(path)) bytes += await sizeOf(join(path, name));
  return bytes;
}

export class ReadThroughCache {
  readonly root: string;
  readonly limitBytes: number;
  /**
   * The entries' total at this process's last scan plus what it admitted since, or undefined before
   * the first scan. Measuring every entry on each admit made storing n files cost n² stats; now the
   * folder is measured again only when this estimate passes the limit. Entries that another process
   * sharing the folder adds count from this process's next scan.
   */
  private estimatedBytes: number | undefined;

  constructor(root: string, limitBytes: number) {
    this.root = root;
    this.limitBytes = limitBytes;
  }

  /** The entry's path when it is cached (its use recorded), else undefined. */
  async lookup(name: string): Promise<string | undefined> {
    const path = this.entryPath(name);
    try {
      const now = new Date();
      await utimes(path, now, now);
      return path;
    } catch {
      return undefined;
    }
  }

  /** A fresh path under the cache's own `tmp/`, on the same file system as its entries. */
  async tempPath(): Promise<string> {
    const dir = join(this.root, 'tmp');
    await mkdir(dir, { recursive: true });
    return join(dir, randomUUID());
  }

  /** Moves a finished file or folder in as `name` (keeping an equal entry already there), then evicts. */
  async admit(source: string, name: string): Promise<string> {
    const path = this.entryPath(name);
    await mkdir(join(this.root, 'entries'), { recursive: true });
    if (await this.lookup(name)) await rm(source, { recursive: true, force: true });
    else {
      await rename(source, path).catch(async (error: NodeJS.ErrnoException) => {
        if (error.code !== 'EXDEV') throw error;
        // From another file system: copied in beside the entries first, so the entry appears whole.
        const copy = await this.tempPath();
        await cp(source, copy, { recursive: true });
        await rename(copy, path);
        await rm(source, { recursive: true, force: true });
      });
      const now = new Date();
      await utimes(path, now, now);
      if (this.estimatedBytes !== undefined) this.estimatedBytes += await sizeOf(path);
    }
    if (this.estimatedBytes === undefined || this.estimatedBytes > this.limitBytes) await this.evict(new Set([name]));
    return path;
  }

  async entries(): Promise<CacheEntry[]> {
    const dir = join(this.root, 'entries');
    const out: CacheEntry[] = [];
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      // Another worker sharing the folder may remove an entry while this one is measured.
      const measured = await Promise.all([sizeOf(join(dir, name)), stat(join(dir, name))]).catch(() => undefined);
      if (measured) out.push({ name, bytes: measured[0], lastUsedMs: measured[1].mtimeMs });
    }
    return out;
  }

  async evict(keep: ReadonlySet<string> = new Set()): Promise<void> {
    const entries = await this.entries();
    const evicted = new Set(entriesToEvict(entries, this.limitBytes, keep));
    for (const name of evicted) await rm(this.entryPath(name), { recursive: true, force: true });
    this.estimatedBytes = entries.reduce((sum, entry) => sum + (evicted.has(entry.name) ? 0 : entry.bytes), 0);
  }

  private entryPath(name: string): string {
    return join(this.root, 'entries', name);
  }
}
