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

describe('training, export and evaluation on a real dev server', () => {
  it('resumes training after the gpu worker is killed, then exports, evaluates against both baselines and gates', async () => {
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
        evaluation: { maxTestRows: 12, maxNewTokens: 12, batchSize: 4 },
        // One gate the tuned model passes whatever it learned, one no model can pass.
        gates: [
          { metric: 'rougeL', min: 0 },
          { metric: 'bleu', min: 101 },
        ],
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

    expect(result.status).toBe('not-promoted');
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

    // Evaluation: the same 12 test rows answered by every system, scored together, gated, reported.
    const evaluation = result.evaluation!;
    expect(evaluation.rows).toBe(12);
    expect(Object.keys(evaluation.metrics).sort()).toEqual(['base', 'retrieval', 'tuned']);
    expect(evaluation.metrics.tuned!.perplexity).toBeGreaterThan(1);
    expect(evaluation.metrics.base!.perplexity).toBeGreaterThan(1);
    expect(evaluation.gate.results.map((r) => r.status)).toEqual(['passed', 'failed']);
    expect(evaluation.gate.reasons).toEqual([expect.stringMatching(/^bleu >= 101: tuned \d/)]);
    const scores = JSON.parse(readFileSync(join(result.runFolder, 'scores.json'), 'utf8')) as {
      systems: Record<string, { rows: number }>;
    };
    expect(Object.values(scores.systems).map((s) => s.rows)).toEqual([12, 12, 12]);
    const idsOf = (file: string) =>
      readFileSync(join(result.runFolder, file), 'utf8')
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { id: string }).id)
        .sort();
    const questionIds = idsOf('eval-questions.jsonl');
    for (const system of ['tuned', 'base', 'retrieval']) expect(idsOf(`answers-${system}.jsonl`)).toEqual(questionIds);
    const markdown = readFileSync(join(result.runFolder, 'report', 'report.md'), 'utf8');
    expect(markdown).toContain('| metric | tuned | base (untuned) | retrieval |');
    expect(markdown).toContain('**Not promoted**: bleu >= 101');
    expect(readFileSync(join(result.runFolder, 'report', 'report.html'), 'utf8')).toContain('<td>ROUGE-L F1</td>');
    expect(existsSync(join(result.runFolder, 'report', 'training-curve.png'))).toBe(true);
  });
});
