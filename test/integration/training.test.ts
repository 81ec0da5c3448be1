import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { artifactPath } from '../../activities/artifacts';
import { startPipeline, trainingProgress } from '../../cli/client';
import { loadConfigFile } from '../../cli/config';
import {
  activityAttempts,
  killAndWait,
  projectRoot,
  spawnWorker,
  startTestServer,
  tempDir,
  waitFor,
  writePipeline,
  type TestServer,
} from './harness';

let env: TestServer;
let tinyModel: string;
const workers: Array<ReturnType<typeof spawnWorker>> = [];

beforeAll(async () => {
  env = await startTestServer();
  tinyModel = join(tempDir('tuneline-tiny-'), 'tiny-llama');
  // A random 2-layer Llama with the default model's real tokenizer and chat template: real training, seconds per step.
  execFileSync(join(projectRoot, '.venv', 'bin', 'python'), ['-m', 'engine.tests.tiny_models', 'llama', tinyModel], {
    cwd: projectRoot,
    stdio: 'inherit',
  });
  workers.push(spawnWorker('cpu', env.server.address));
});

afterAll(async () => {
  for (const w of workers) await killAndWait(w);
  await env?.close();
});

interface LoggedEvent {
  attempt: number;
  event: string;
  step: number;
  path?: string;
}

describe('training and export on a real dev server', () => {
  it('resumes from the last checkpoint after the gpu worker is killed, training no step before it twice', async () => {
    const dir = tempDir();
    const loaded = loadConfigFile(
      writePipeline(dir, {
        name: 'it-train',
        data: { sample: { rows: 400, seed: 5 }, columns: { category: 'category', product: 'product', fact: 'fact' } },
        model: { base: tinyModel },
        training: {
          maxSteps: 24,
          batchSize: 4,
          maxLength: 96,
          learningRate: 0.001,
          checkpointEvery: 4,
          evalEvery: 8,
          maxValidationRows: 16,
          device: 'cpu',
          // Long enough for a loaded 2-core machine; the killed attempt is retried after this long.
          activity: { heartbeat: '30s', maxAttempts: 3 },
        },
      }),
    );
    const gpu = spawnWorker('gpu', env.server.address);
    workers.push(gpu);
    const handle = await startPipeline(env.client, loaded);
    const atCheckpoint = await waitFor(
      () => trainingProgress(handle),
      (p) => p?.checkpoint != null,
      180_000,
    );
    await killAndWait(gpu, 'SIGKILL');
    workers.push(spawnWorker('gpu', env.server.address));
    const result = await handle.result();

    expect(result.status).toBe('exported');
    expect(result.training!.steps).toBe(24);
    expect(await activityAttempts(handle)).toMatchObject({ trainModel: 2 });
    const events = readFileSync(artifactPath(result.training!.events), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as LoggedEvent);
    const firstCheckpoints = events.filter((e) => e.attempt === 1 && e.event === 'checkpoint').map((e) => e.step);
    expect(firstCheckpoints).toContain(atCheckpoint!.checkpointStep);
    const resumedStart = events.find((e) => e.attempt === 2 && e.event === 'start')!;
    // The resumed attempt starts at the newest checkpoint the first attempt wrote, not at zero.
    expect(resumedStart.step).toBe(Math.max(...firstCheckpoints));
    expect(result.training!.resumedFromStep).toBe(resumedStart.step);
    const resumedSteps = events.filter((e) => e.attempt === 2 && e.event === 'step').map((e) => e.step);
    expect(Math.min(...resumedSteps)).toBe(resumedStart.step + 1);
    expect(resumedSteps.at(-1)).toBe(24);
    expect(existsSync(join(artifactPath(result.training!.model), 'metrics.json'))).toBe(true);
    // The export step ran on the trained model and its parity check passed.
    expect(existsSync(join(artifactPath(result.onnx!), 'model.onnx'))).toBe(true);
    expect(JSON.parse(readFileSync(join(artifactPath(result.onnx!), 'export.json'), 'utf8')).parity).toBeTruthy();
  });
});
