/**
 * Workers that share no disk: a full tiny-model pipeline with its artifacts in a real SeaweedFS
 * bucket, a cpu worker and a gpu worker in two processes with their own homes and caches, each in
 * a mount namespace where the client's folder and the other worker's folder are hidden (empty file
 * systems mounted over them). They share the Temporal server, the bucket and the installed project.
 * `tuneline fetch` then brings the run's report to a third folder. The gpu worker trains with two
 * processes (training.distributed.processes: 2, torchrun on the CPU). Then the gpu machine dies
 * mid-training and a new one, with a folder of its own, resumes from the checkpoint the first copied
 * to the bucket.
 */
import { execFile, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { defaultPayloadConverter } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../cli/config';
import { startPipeline } from '../../cli/client';
import { ObjectStore } from '../../activities/object-store/store';
import { parseTrainingEvents } from '../../activities/train';
import { RunManifest, type TrainProgress } from '../../schemas/manifests';
import { childWorkflowId } from '../../workflows/definitions';
import { writeSampleJsonl } from '../../sample-data/generate';
import {
  buildTinyModel,
  cliPath,
  killAndWait,
  spawnWorker,
  waitFor,
  startTestServer,
  tempDir,
  tinyRun,
  writePipeline,
  type TestServer,
} from './harness';
import { startSeaweedS3, type SeaweedS3 } from '../../lib/seaweedfs';

/**
 * Hiding folders takes a mount namespace (`unshare --mount`, root or CAP_SYS_ADMIN): CI runs as root;
 * elsewhere the test says why it is skipped.
 */
const canHideFolders = spawnSync('unshare', ['--mount', 'true']).status === 0;
if (!canHideFolders) console.warn('distributed.test.ts skipped: `unshare --mount` is not permitted here (it needs root)');

let env: TestServer;
let s3: SeaweedS3;
const folders = {
  client: tempDir('tuneline-client-'),
  cpu: tempDir('tuneline-cpu-'),
  gpu: tempDir('tuneline-gpu-'),
  secondGpu: tempDir('tuneline-gpu-'),
};
const workers: Array<ChildProcess & { logs: string[] }> = [];

/** A worker whose home, cache and working folder are `home`, and which cannot see the `hidden` folders. */
function startWorker(queue: 'cpu' | 'gpu', home: string, hidden: string[]): ChildProcess & { logs: string[] } {
  const worker = spawnWorker(queue, env.server.address, { ...s3.env, HOME: home }, undefined, {
    args: ['--cache-dir', join(home, 'cache'), '--cache-gb', '2', '--slots', '1'],
    hide: hidden,
  });
  workers.push(worker);
  return worker;
}

const logsOf = (worker: ChildProcess & { logs: string[] }) => worker.logs.join('').slice(-3000);

beforeAll(async () => {
  if (!canHideFolders) return;
  [env, s3] = await Promise.all([startTestServer(), startSeaweedS3({ bucket: 'tuneline-runs' })]);
  // The client's own cache of what it stages and fetches.
  Object.assign(process.env, s3.env, { TUNELINE_CACHE_DIR: join(folders.client, 'cache') });
  startWorker('cpu', folders.cpu, [folders.client, folders.gpu, folders.secondGpu]);
  startWorker('gpu', folders.gpu, [folders.client, folders.cpu, folders.secondGpu]);
}, 120_000);

afterAll(async () => {
  for (const worker of workers) await killAndWait(worker);
  await env?.close();
  await s3?.stop();
});

describe.skipIf(!canHideFolders)('a pipeline on workers that share no disk', () => {
  it('runs end to end from a bucket, and tuneline fetch brings the report to a third folder', async () => {
    // Everything the run reads from the client is in the client's folder: the data file and the base model.
    const model = join(folders.client, 'tiny-llama');
    cpSync(buildTinyModel(), model, { recursive: true });
    await writeSampleJsonl(join(folders.client, 'questions.jsonl'), 300, 5);
    const tiny = tinyRun('./tiny-llama', 8);
    const path = writePipeline(folders.client, {
      name: 'no-shared-disk',
      ...tiny,
      data: { path: 'questions.jsonl', columns: tiny.data.columns },
      promotion: 'manual',
      storage: { artifacts: `s3://${s3.bucket}/pipelines` },
      // Data-parallel training (torchrun, gloo) through the activity, on the gpu worker.
      training: { ...tiny.training, distributed: { processes: 2 } },
    });
    const handle = await startPipeline(env.client, loadConfigFile(path));
    const result = await handle.result().catch((error: unknown) => {
      throw new Error(`${String(error)}\ncpu worker:\n${logsOf(workers[0]!)}\ngpu worker:\n${logsOf(workers[1]!)}`);
    });

    expect(result.outcome).toBe('candidate');
    expect(result.runFolder).toBe(`s3://${s3.bucket}/pipelines/runs/${handle.workflowId}/`);
    expect(Object.keys(result.evaluation!.metrics).sort()).toEqual(['base', 'tuned']);
    // Every artifact the run recorded is in the bucket: no worker handed another a local path.
    const history = JSON.stringify(await handle.fetchHistory());
    expect(history).not.toContain('file://');
    // Each worker cached what it read in its own folder; the client's folder got no artifact.
    expect(readdirSync(join(folders.cpu, 'cache', 'objects', 'entries')).length).toBeGreaterThan(0);
    expect(readdirSync(join(folders.gpu, 'cache', 'objects', 'entries')).some((name) => name.endsWith('.dir'))).toBe(true);
    expect(existsSync(join(folders.client, '.tuneline'))).toBe(false);

    const third = tempDir('tuneline-fetched-');
    const fetched = await promisify(execFile)(
      process.execPath,
      [cliPath, 'fetch', handle.workflowId, '-c', path, '-o', join(third, 'run'), '--only', 'run.json,report'],
      {
        env: { ...process.env, ...s3.env, TUNELINE_CACHE_DIR: join(third, 'cache') },
      },
    );
    expect(fetched.stdout).toContain(`Fetched 2 file(s) of ${handle.workflowId}`);
    const manifest = RunManifest.parse(JSON.parse(readFileSync(join(third, 'run', 'run.json'), 'utf8')));
    expect(manifest.runId).toBe(handle.workflowId);
    expect(manifest.artifacts.onnx?.uri).toMatch(/^s3:\/\/tuneline-runs\/pipelines\/objects\//);
    // Two processes trained: the engine's metrics say so in the run's record.
    expect(result.training?.metrics.processes).toBe(2);
    const train = manifest.steps.find((s) => s.step === 'train');
    expect(train?.stats).toMatchObject({ metrics: { processes: 2, steps: 8 } });
    expect(train?.summary).toContain('on 2 processes');
    expect(readFileSync(join(third, 'run', 'report', 'report.html'), 'utf8')).toContain(handle.workflowId);
  }, 600_000);

  it('resumes a training on another gpu machine from the checkpoint in the bucket when the first dies', async () => {
    const tiny = tinyRun('./tiny-llama', 160);
    const path = writePipeline(folders.client, {
      name: 'no-shared-disk',
      ...tiny,
      data: { path: 'questions.jsonl', columns: tiny.data.columns },
      // A short heartbeat timeout: the dead machine's attempt is retried seconds after it stops answering.
      training: { ...tiny.training, activity: { heartbeat: '10s', maxAttempts: 4 } },
      evaluation: { ...tiny.evaluation, maxTestRows: 2 },
      promotion: 'manual',
      storage: { artifacts: `s3://${s3.bucket}/pipelines` },
    });
    const handle = await startPipeline(env.client, loadConfigFile(path));
    const trial = env.client.workflow.getHandle(childWorkflowId.trial(handle.workflowId));
    // The heartbeat names the checkpoint the first machine copied to the bucket.
    const heartbeat = async () => {
      const pending = (await trial.describe().catch(() => undefined))?.raw.pendingActivities ?? [];
      const payload = pending.find((a) => a.activityType?.name === 'trainModel')?.heartbeatDetails?.payloads?.[0];
      return payload ? defaultPayloadConverter.fromPayload<TrainProgress>(payload) : undefined;
    };
    const atDeath = await waitFor(heartbeat, (progress) => (progress?.mirrored?.step ?? 0) > 0, 300_000);
    // The machine dies: its worker and the engine it spawned (whose spec is in its folder).
    await killAndWait(workers[1]!, 'SIGKILL');
    spawnSync('pkill', ['-KILL', '-f', folders.gpu]);
    startWorker('gpu', folders.secondGpu, [folders.client, folders.cpu, folders.gpu]);

    const result = await handle.result().catch((error: unknown) => {
      throw new Error(`${String(error)}\nsecond gpu worker:\n${logsOf(workers.at(-1)!)}`);
    });
    const mirroredStep = atDeath!.mirrored!.step;
    expect(result.training!.steps).toBe(160);
    expect(result.training!.resumedFromStep).toBeGreaterThanOrEqual(mirroredStep);
    // The run's events log carries the dead machine's attempts, up to the checkpoint the new one resumed from.
    const store = new ObjectStore(`s3://${s3.bucket}/pipelines`, { cacheDir: tempDir(), cacheLimitBytes: 2 ** 30 });
    const events = parseTrainingEvents(readFileSync(await store.fetch(result.training!.events), 'utf8'));
    const resumedStart = events.findLast((e) => e.event === 'start')!;
    expect(resumedStart.step).toBe(result.training!.resumedFromStep);
    const earlier = events.filter((e) => e.attempt < resumedStart.attempt && e.event === 'checkpoint');
    expect(earlier.map((e) => e.step)).toContain(mirroredStep);
  }, 600_000);
});
