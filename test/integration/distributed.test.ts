/**
 * Workers that share no disk: a full tiny-model pipeline with its artifacts in a real SeaweedFS
 * bucket, a cpu worker and a gpu worker in two processes with their own homes and caches, each in
 * a mount namespace where the client's folder and the other worker's folder are hidden (empty file
 * systems mounted over them). They share the Temporal server, the bucket and the installed project.
 * `tuneline fetch` then brings the run's report to a third folder. The gpu worker trains with two
 * processes (training.distributed.processes: 2, torchrun on the CPU).
 */
import { execFile, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../cli/config';
import { startPipeline } from '../../cli/client';
import { RunManifest } from '../../schemas/manifests';
import { writeSampleJsonl } from '../../sample-data/generate';
import {
  buildTinyModel,
  cliPath,
  killAndWait,
  spawnWorker,
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
const folders = { client: tempDir('tuneline-client-'), cpu: tempDir('tuneline-cpu-'), gpu: tempDir('tuneline-gpu-') };
const workers: Array<ChildProcess & { logs: string[] }> = [];

beforeAll(async () => {
  if (!canHideFolders) return;
  [env, s3] = await Promise.all([startTestServer(), startSeaweedS3({ bucket: 'tuneline-runs' })]);
  // The client's own cache of what it stages and fetches.
  Object.assign(process.env, s3.env, { TUNELINE_CACHE_DIR: join(folders.client, 'cache') });
  const start = (queue: 'cpu' | 'gpu') => {
    const home = folders[queue];
    const other = folders[queue === 'cpu' ? 'gpu' : 'cpu'];
    const worker = spawnWorker(queue, env.server.address, { ...s3.env, HOME: home }, undefined, {
      args: ['--cache-dir', join(home, 'cache'), '--cache-gb', '2', '--slots', '1'],
      hide: [folders.client, other],
    });
    workers.push(worker);
  };
  start('cpu');
  start('gpu');
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
      throw new Error(
        `${String(error)}\ncpu worker:\n${workers[0]!.logs.join('').slice(-3000)}\ngpu worker:\n${workers[1]!.logs.join('').slice(-3000)}`,
      );
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
});
