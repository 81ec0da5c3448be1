import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, vi } from 'vitest';
import { sha256Tree } from '../../activities/artifacts';
import { ReadThroughCache, entriesToEvict } from '../../activities/object-store/cache';
import { configuredEndpoint } from '../../activities/object-store/client';
import {
  folderKey,
  folderManifest,
  folderManifestProblems,
  isFolderUri,
  keyOfUri,
  objectKey,
  parseS3Uri,
  stepKey,
  uriOf,
} from '../../activities/object-store/layout';
import { tempDir } from '../integration/harness';
import { cacheSettings, runLocation } from '../../activities/context';
import { localFilesOf } from '../../cli/stage';
import { PipelineConfig } from '../../schemas/config';

const sha = 'ab' + 'c'.repeat(62);

describe('object store layout', () => {
  it('parses s3:// URIs into a bucket and a prefix ending in /', () => {
    expect(parseS3Uri('s3://bucket')).toEqual({ bucket: 'bucket', prefix: '' });
    expect(parseS3Uri('s3://bucket/')).toEqual({ bucket: 'bucket', prefix: '' });
    expect(parseS3Uri('s3://bucket/team/runs/')).toEqual({ bucket: 'bucket', prefix: 'team/runs/' });
    expect(() => parseS3Uri('/var/artifacts')).toThrow('not an s3:// URI');
  });

  it('lays objects out like the local store, folders as manifests, steps by key', () => {
    const at = parseS3Uri('s3://bucket/team');
    expect(objectKey(at, sha, '.arrow')).toBe(`team/objects/ab/${sha}.arrow`);
    expect(objectKey(at, sha, 'arrow')).toBe(`team/objects/ab/${sha}.arrow`);
    expect(objectKey(at, sha, '')).toBe(`team/objects/ab/${sha}`);
    expect(folderKey(at, sha)).toBe(`team/objects/ab/${sha}.dir`);
    expect(stepKey(at, 'k1')).toBe('team/steps/k1.json');
    const uri = uriOf(at, folderKey(at, sha));
    expect(uri).toBe(`s3://bucket/team/objects/ab/${sha}.dir`);
    expect(isFolderUri(uri)).toBe(true);
    expect(keyOfUri(at, uri)).toBe(folderKey(at, sha));
    expect(() => keyOfUri(at, `s3://other/team/objects/ab/${sha}`)).toThrow('not an object in s3://bucket');
    expect(() => keyOfUri(at, 'file:///tmp/x')).toThrow('not an object in s3://bucket');
  });

  it('gives a folder manifest the local folder hash, whatever order its files come in', async () => {
    // 'a/x' walks before 'a.txt' (names sorted within each folder), though '.' sorts before '/'.
    const dir = tempDir();
    mkdirSync(join(dir, 'a'));
    writeFileSync(join(dir, 'a.txt'), 'one');
    writeFileSync(join(dir, 'a', 'x'), 'two');
    writeFileSync(join(dir, 'b'), 'three');
    const tree = await sha256Tree(dir);
    expect(tree.files.map((f) => f.path)).toEqual(['a/x', 'a.txt', 'b']);
    const manifest = folderManifest([...tree.files].reverse());
    expect(manifest.sha256).toBe(tree.sha256);
    expect(manifest.bytes).toBe(11);
    expect(folderManifestProblems(manifest)).toEqual([]);
  });

  it('finds a manifest whose files were changed or whose paths leave the folder', () => {
    const manifest = folderManifest([{ path: 'weights.bin', sha256: sha, bytes: 4 }]);
    const changed = { ...manifest, files: [{ path: 'weights.bin', sha256: 'd'.repeat(64), bytes: 4 }] };
    expect(folderManifestProblems(changed)[0]).toMatch(/^its files hash to [0-9a-f]{64}, not the recorded /);
    const escaping = folderManifest([{ path: '../outside', sha256: sha, bytes: 4 }]);
    expect(folderManifestProblems(escaping)).toEqual(['file path "../outside" is not a plain relative path']);
  });

  it('takes the endpoint from AWS_ENDPOINT_URL_S3 before AWS_ENDPOINT_URL', () => {
    expect(configuredEndpoint({ AWS_ENDPOINT_URL: 'http://a', AWS_ENDPOINT_URL_S3: 'http://b' })).toBe('http://b');
    expect(configuredEndpoint({ AWS_ENDPOINT_URL: 'http://a' })).toBe('http://a');
    expect(configuredEndpoint({})).toBeUndefined();
  });
});

describe('read-through cache', () => {
  it('evicts least recently used entries until the rest fit, never a kept one', () => {
    const entries = [
      { name: 'old', bytes: 40, lastUsedMs: 1 },
      { name: 'mid', bytes: 40, lastUsedMs: 2 },
      { name: 'new', bytes: 40, lastUsedMs: 3 },
    ];
    expect(entriesToEvict(entries, 120, new Set())).toEqual([]);
    expect(entriesToEvict(entries, 100, new Set())).toEqual(['old']);
    expect(entriesToEvict(entries, 40, new Set())).toEqual(['old', 'mid']);
    expect(entriesToEvict(entries, 40, new Set(['old']))).toEqual(['mid', 'new']);
    // One entry larger than the whole limit is still handed out; everything else goes.
    expect(entriesToEvict([...entries, { name: 'huge', bytes: 500, lastUsedMs: 4 }], 100, new Set(['huge']))).toEqual([
      'old',
      'mid',
      'new',
    ]);
  });

  it('admits files and folders, counts a lookup as a use, and stays under its limit', async () => {
    const cache = new ReadThroughCache(tempDir(), 25);
    const admitFile = async (name: string, text: string) => {
      const tmp = await cache.tempPath();
      writeFileSync(tmp, text);
      await sleep(15); // modification times order the uses
      return cache.admit(tmp, name);
    };
    const first = await admitFile('first', '0123456789');
    const folder = await cache.tempPath();
    mkdirSync(join(folder, 'sub'), { recursive: true });
    writeFileSync(join(folder, 'sub', 'f'), '0123456789');
    await cache.admit(folder, 'folder.dir');
    await sleep(15);
    expect(await cache.lookup('first')).toBe(first);
    await admitFile('third', '0123456789');

    const entries = await cache.entries();
    expect(entries.map((e) => e.name).sort()).toEqual(['first', 'third']);
    expect(readFileSync(first, 'utf8')).toBe('0123456789');
    expect(await cache.lookup('folder.dir')).toBeUndefined();
    // The same name again keeps the entry there and drops the newcomer.
    await admitFile('first', '0123456789');
    expect((await cache.entries()).length).toBe(2);
  });

  it('measures its folder again only when what it admitted may pass the limit', async () => {
    const cache = new ReadThroughCache(tempDir(), 100);
    const scans = vi.spyOn(cache, 'entries');
    const admit = async (name: string) => {
      const tmp = await cache.tempPath();
      writeFileSync(tmp, '0123456789');
      return cache.admit(tmp, name);
    };
    for (let n = 0; n < 10; n++) await admit(`f${n}`); // 100 bytes: at the limit, not over it
    expect(scans).toHaveBeenCalledTimes(1);
    await admit('f10');
    expect(scans).toHaveBeenCalledTimes(2);
    expect((await cache.entries()).reduce((sum, e) => sum + e.bytes, 0)).toBe(100);
  });

  it('admits a file from another file system by copying it in', async () => {
    const elsewhere = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'tuneline-'));
    writeFileSync(join(elsewhere, 'f'), 'bytes');
    const cache = new ReadThroughCache(tempDir(), 100);
    expect(readFileSync(await cache.admit(join(elsewhere, 'f'), 'f'), 'utf8')).toBe('bytes');
    expect(existsSync(join(elsewhere, 'f'))).toBe(false);
    rmSync(elsewhere, { recursive: true, force: true });
  });
});

describe('runs with a bucket for artifacts', () => {
  const config = (raw: object) => PipelineConfig.parse({ name: 'x', promotion: 'manual', storage: { artifacts: 's3://team/p' }, ...raw });

  it('stages every local file the config names, once, and nothing else', () => {
    expect(
      localFilesOf(
        config({
          data: { path: 'data/qa.csv', feedback: [{ path: 'fb.jsonl' }] },
          retrieval: { knowledge: [{ path: 'kb.csv' }, { path: 'fb.jsonl' }] },
          training: { grounding: { k: 2 } },
          evaluation: { generalText: 'general.txt' },
          model: { base: './models/base' },
        }),
      ),
    ).toEqual(['data/qa.csv', 'fb.jsonl', 'kb.csv', 'general.txt', './models/base']);
    // The sample set is made by a worker, `default` and hub ids are not files.
    expect(localFilesOf(config({ data: { sample: { rows: 10 } }, model: { base: 'HuggingFaceTB/SmolLM2-135M-Instruct' } }))).toEqual([]);
  });

  it('names a run folder in the bucket, or on disk for a local store', () => {
    expect(runLocation(config({ data: { sample: { rows: 10 } } }).storage, '/home/me/proj', 'run-1')).toBe('s3://team/p/runs/run-1/');
    expect(runLocation(PipelineConfig.parse({ name: 'x', data: { sample: { rows: 10 } } }).storage, '/home/me/proj', 'run-1')).toBe(
      '/home/me/proj/.tuneline/runs/run-1',
    );
  });

  it('caches under TUNELINE_CACHE_DIR within TUNELINE_CACHE_GB, and refuses a size that is not one', () => {
    expect(cacheSettings({ TUNELINE_CACHE_DIR: '/var/cache/tl', TUNELINE_CACHE_GB: '1.5' })).toEqual({
      dir: '/var/cache/tl',
      limitBytes: 1.5 * 1024 ** 3,
    });
    expect(() => cacheSettings({ TUNELINE_CACHE_GB: 'lots' })).toThrow(
      'TUNELINE_CACHE_GB must be a positive number of gigabytes, not "lots"',
    );
  });
});
