/**
 * The S3 artifact store against a real SeaweedFS: round trips, put-if-absent, a damaged object
 * refused, an interrupted multipart upload, the cache's byte limit; and a training paused at a rung
 * on one machine and continued on another from the checkpoint it left in the bucket.
 */
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactStore, sha256File, sha256Tree } from '../../activities/artifacts';
import { openStore } from '../../activities/context';
import { writeRows } from '../../activities/data/arrow-io';
import { trainModel, type TrainInput } from '../../activities/train';
import { loadConfigFile } from '../../cli/config';
import { dataRow } from '../unit/qa-fixtures';
import { s3ClientFromEnvironment } from '../../activities/object-store/client';
import { keyOfUri, objectKey } from '../../activities/object-store/layout';
import { CorruptObjectError, ObjectStore, type ObjectStoreOptions } from '../../activities/object-store/store';
import type { ArtifactRef, StepResult, TrainProgress } from '../../schemas/manifests';
import { buildTinyModel, tempDir, tinyRun, waitFor, writePipeline } from './harness';
import { startSeaweedS3, type SeaweedS3 } from '../../lib/seaweedfs';

const MiB = 1024 * 1024;
let s3: SeaweedS3;

beforeAll(async () => {
  s3 = await startSeaweedS3();
  // The store reads the standard AWS variables, as it would on a worker.
  Object.assign(process.env, s3.env);
  console.log(`SeaweedFS answered S3 after ${s3.startSeconds.toFixed(1)} s`);
});
afterAll(async () => s3?.stop());

/** A store over its own prefix with an empty cache, as a worker on another machine would have. */
function storeFor(prefix: string, options: Partial<ObjectStoreOptions> = {}): ObjectStore {
  return new ObjectStore(`s3://${s3.bucket}/${prefix}`, {
    cacheDir: tempDir('tuneline-cache-'),
    cacheLimitBytes: 256 * MiB,
    partSizeBytes: 5 * MiB,
    ...options,
  });
}

/** A client that counts the commands it sends, by name. */
function countingClient(): { client: S3Client; sent: Record<string, number> } {
  const client = s3ClientFromEnvironment();
  const sent: Record<string, number> = {};
  client.middlewareStack.add(
    (next, context) => (args) => {
      sent[context.commandName!] = (sent[context.commandName!] ?? 0) + 1;
      return next(args);
    },
    { step: 'initialize' },
  );
  return { client, sent };
}

function modelFolder(): string {
  const dir = tempDir('tuneline-model-');
  mkdirSync(join(dir, 'a'), { recursive: true });
  writeFileSync(join(dir, 'config.json'), '{"layers": 2}\n');
  writeFileSync(join(dir, 'a.txt'), 'beside the folder a, sorted after it\n');
  writeFileSync(join(dir, 'a', 'weights.bin'), randomBytes(300_000));
  writeFileSync(join(dir, 'a', 'same.bin'), 'equal bytes are one object\n');
  writeFileSync(join(dir, 'same-too.bin'), 'equal bytes are one object\n');
  return dir;
}

async function headOrUndefined(key: string) {
  return s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key })).catch(() => undefined);
}

describe('S3 artifact store on SeaweedFS', () => {
  it('round-trips files, folders and step records, with the same refs as the local store', async () => {
    const local = new ArtifactStore(tempDir());
    const writer = storeFor('round-trip');
    const text = 'question,answer\nHow?,Like this.\n';
    const fileRef = await writer.put(text, '.csv', 1);
    const localFileRef = await local.put(text, '.csv', 1);
    expect({ ...fileRef, uri: '' }).toEqual({ ...localFileRef, uri: '' });
    expect(fileRef.uri).toBe(`s3://${s3.bucket}/round-trip/objects/${fileRef.sha256.slice(0, 2)}/${fileRef.sha256}.csv`);

    const folder = modelFolder();
    const expected = await sha256Tree(folder);
    const copy = tempDir('tuneline-model-copy-');
    cpSync(folder, copy, { recursive: true });
    const dirRef = await writer.putDir(folder);
    expect({ ...dirRef, uri: '' }).toEqual({ ...(await local.putDir(copy)), uri: '' });
    expect(dirRef.sha256).toBe(expected.sha256);

    // Another worker: nothing cached, everything downloaded and checked.
    const reader = storeFor('round-trip');
    expect(readFileSync(await reader.fetch(fileRef), 'utf8')).toBe(text);
    const fetched = await reader.fetch(dirRef);
    expect((await sha256Tree(fetched)).sha256).toBe(dirRef.sha256);
    expect(readFileSync(join(fetched, 'a', 'same.bin'), 'utf8')).toBe('equal bytes are one object\n');
    expect(await reader.verify(fileRef)).toBe(true);
    expect(await reader.verify(dirRef)).toBe(true);

    const result: StepResult<{ n: number }, 'table' | 'model'> = {
      step: 'probe',
      key: 'k'.repeat(64),
      codeVersion: 'v1',
      reused: false,
      attempt: 1,
      inputs: [],
      outputs: { table: fileRef, model: dirRef },
      stats: { n: 1 },
      summary: 'probe',
      seconds: 0,
    };
    await writer.recordStep(result);
    expect(await reader.cachedStep('k'.repeat(64))).toEqual(result);
    expect(await reader.cachedStep('m'.repeat(64))).toBeUndefined();
  });

  it('writes an object only when absent: the same content twice is uploaded once', async () => {
    const { client, sent } = countingClient();
    const store = storeFor('if-absent', { client });
    const first = await store.put('same bytes\n', '.txt', null);
    const key = keyOfUri(store.bucket, first.uri);
    const before = await headOrUndefined(key);
    await sleep(1100); // LastModified has one-second resolution
    const second = await storeFor('if-absent', { client }).put('same bytes\n', '.txt', null);
    expect(second).toEqual(first);
    expect(sent.PutObjectCommand).toBe(1);
    expect((await headOrUndefined(key))?.LastModified).toEqual(before?.LastModified);

    // SeaweedFS honours If-None-Match: * itself, which closes the race between two writers.
    const racing = s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: 'other bytes', IfNoneMatch: '*' }));
    await expect(racing).rejects.toMatchObject({ $metadata: { httpStatusCode: 412 } });
  });

  it('refuses an object changed behind its back, with the key, both hashes and what to do', async () => {
    const writer = storeFor('damaged');
    const ref = await writer.put('the true bytes\n', '.txt', null);
    const key = keyOfUri(writer.bucket, ref.uri);
    await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: 'the fake bytes\n' }));

    const reader = storeFor('damaged');
    const refused = await reader.fetch(ref).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(CorruptObjectError);
    const message = (refused as Error).message;
    expect(message).toContain(ref.uri);
    expect(message).toContain(`expected sha256 ${ref.sha256}`);
    expect(message).toMatch(/found [0-9a-f]{64}/);
    expect(message).toContain(`aws s3 rm ${ref.uri}`);
    expect(await reader.cache.entries()).toEqual([]);
    expect(readdirSync(join(reader.cache.root, 'tmp')).length).toBe(0);
    expect(await reader.verify(ref)).toBe(false);

    // A folder whose member file was changed: refused, naming that member.
    const folder = modelFolder();
    const config = (await sha256Tree(folder)).files.find((file) => file.path === 'config.json')!;
    const dirRef = await writer.putDir(folder);
    const memberKey = objectKey(writer.bucket, config.sha256, '');
    await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: memberKey, Body: '{"layers": 3}\n' }));
    await expect(storeFor('damaged').fetch(dirRef)).rejects.toThrow(
      `s3://${s3.bucket}/${memberKey} is damaged: expected sha256 ${config.sha256}`,
    );

    // Storing the true bytes again replaces the damaged object (the content address says what belongs there).
    await writer.put('the true bytes\n', '.txt', null);
    expect(readFileSync(await storeFor('damaged').fetch(ref), 'utf8')).toBe('the true bytes\n');
  });

  it('leaves no object behind an interrupted multipart upload, and a retry succeeds', async () => {
    const { client, sent } = countingClient();
    const controller = new AbortController();
    // The first part arrives, then the upload is cancelled (as a cancelled activity would).
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const out = await next(args);
        if (context.commandName === 'UploadPartCommand') controller.abort();
        return out;
      },
      { step: 'initialize' },
    );
    const store = storeFor('multipart', { client, partsInFlight: 1 });
    const path = await store.tempPath();
    writeFileSync(path, randomBytes(12 * MiB));

    await expect(store.putFile(path, '.bin', null, { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(sent.CreateMultipartUploadCommand).toBe(1);
    expect(sent.AbortMultipartUploadCommand).toBeGreaterThanOrEqual(1);
    const listed = await s3.client.send(new ListMultipartUploadsCommand({ Bucket: s3.bucket, Prefix: 'multipart/' }));
    expect(listed.Uploads ?? []).toEqual([]);
    expect(existsSync(path)).toBe(true);

    // A writer killed mid-upload never completes or aborts: its parts stay, but no object appears.
    const retryStore = storeFor('multipart');
    const key = objectKey(retryStore.bucket, await sha256File(path), '.bin');
    const killed = await s3.client.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: key }));
    await s3.client.send(
      new UploadPartCommand({ Bucket: s3.bucket, Key: key, UploadId: killed.UploadId, PartNumber: 1, Body: randomBytes(5 * MiB) }),
    );
    expect(await headOrUndefined(key)).toBeUndefined();
    const pending = await s3.client.send(new ListMultipartUploadsCommand({ Bucket: s3.bucket, Prefix: 'multipart/' }));
    expect(pending.Uploads?.map((upload) => upload.UploadId)).toEqual([killed.UploadId]);

    const ref: ArtifactRef = await retryStore.putFile(path, '.bin', null);
    expect(keyOfUri(retryStore.bucket, ref.uri)).toBe(key);
    expect((await headOrUndefined(key))?.ContentLength).toBe(12 * MiB);
    const fetched = await storeFor('multipart').fetch(ref);
    expect(await sha256File(fetched)).toBe(ref.sha256);

    // The killed writer's parts are swept once they are old enough; a fresh upload is left alone.
    expect(await retryStore.sweepIncompleteUploads()).toBe(0);
    expect(await retryStore.sweepIncompleteUploads(0)).toBe(1);
    const left = await s3.client.send(new ListMultipartUploadsCommand({ Bucket: s3.bucket, Prefix: 'multipart/' }));
    expect(left.Uploads ?? []).toEqual([]);
  });

  it('keeps the cache under its byte limit, evicting the least recently used', async () => {
    const store = storeFor('cache', { cacheLimitBytes: 3 * MiB + 1000 });
    const refs: ArtifactRef[] = [];
    for (let i = 0; i < 3; i++) {
      refs.push(await store.put(randomBytes(MiB), '.bin', null));
      await sleep(20);
    }
    await store.fetch(refs[0]!); // used again: now the most recent
    await sleep(20);
    refs.push(await store.put(randomBytes(MiB), '.bin', null));

    const entries = await store.cache.entries();
    expect(entries.reduce((sum, e) => sum + e.bytes, 0)).toBeLessThanOrEqual(3 * MiB + 1000);
    expect(entries.map((e) => e.name).sort()).toEqual([refs[0], refs[2], refs[3]].map((r) => `${r!.sha256}.bin`).sort());
    // The evicted one comes back from the bucket.
    expect(await store.fetch(refs[1]!)).toContain(refs[1]!.sha256);
  });
});

describe('a training moving between machines through the bucket', () => {
  /** A tiny-model pipeline whose artifacts are under `prefix`, its splits stored, and a way to switch machines. */
  async function setUp(prefix: string, maxSteps: number) {
    const dir = tempDir();
    const path = writePipeline(dir, {
      name: prefix,
      ...tinyRun(buildTinyModel(), maxSteps),
      promotion: 'manual',
      storage: { artifacts: `s3://${s3.bucket}/${prefix}` },
    });
    const { config, configDir } = loadConfigFile(path);
    const context = { config: config!, configDir };
    // Each machine has its own cache and work folders (the activity's store is per cache folder).
    const onMachine = (name: string) => (process.env.TUNELINE_CACHE_DIR = join(dir, name));
    onMachine('first');
    const rows = Array.from({ length: 48 }, (_, n) =>
      dataRow(`r${n}`, `How long is the warranty of model ${n}?`, `Model ${n} has a ${(n % 4) + 1}-year warranty.`),
    );
    const store = openStore(context.config.storage, configDir);
    const inputs = { ...context, train: await writeRows(store, rows.slice(0, 40)), validation: await writeRows(store, rows.slice(40)) };
    return { dir, inputs, onMachine };
  }
  const run = (input: TrainInput, env = new MockActivityEnvironment()) => env.run(trainModel, input) as ReturnType<typeof trainModel>;

  it('continues a training paused at a rung on another machine from the checkpoint it left in the bucket', async () => {
    const { inputs, onMachine } = await setUp('paused', 16);
    const paused = await run({ ...inputs, stopAtStep: 8 });
    expect(paused.stats.metrics.pausedAtStep).toBe(8);
    onMachine('second');
    const continued = await run(inputs);
    expect(continued.stats.resumedFromStep).toBe(8);
    expect(continued.stats.steps).toBe(16);
  }, 240_000);

  it('copies the checkpoint a cancelled training wrote on its way out, and the next machine starts there', async () => {
    const { dir, inputs, onMachine } = await setUp('cancelled', 64);
    const env = new MockActivityEnvironment();
    let progress: TrainProgress | undefined;
    env.on('heartbeat', (details: TrainProgress) => (progress = details));
    const running = run(inputs, env).catch((error: unknown) => error);
    await waitFor(
      async () => progress?.step ?? 0,
      (step) => step >= 6,
      120_000,
    );
    env.cancel('CANCELLED');
    expect(await running).toBeInstanceOf(CancelledFailure);
    // The engine checkpointed where SIGTERM found it, seldom a multiple of checkpointEvery (4).
    const work = join(dir, 'first', 'work');
    const checkpoints = join(work, readdirSync(work)[0]!, 'checkpoints');
    const stoppedAt = Math.max(
      ...readdirSync(checkpoints)
        .flatMap((name) => /^step-(\d+)$/.exec(name)?.[1] ?? [])
        .map(Number),
    );
    onMachine('second');
    const continued = await run(inputs);
    expect(continued.stats.resumedFromStep).toBe(stoppedAt);
    expect(continued.stats.steps).toBe(64);
  }, 240_000);
});
