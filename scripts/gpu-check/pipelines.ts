/**
 * The two pipeline files the GPU check runs, LoRA and full fine-tuning, for each mode:
 *
 * - `gpu`: the default pipeline (`temporal.yaml`: its model, prompts, grounding, evaluation and
 *   gates) on the whole sample store, every product and every training row, one epoch, on CUDA.
 * - `cpu` with the default model: the same pipeline cut to a few steps over a few rows.
 * - `cpu` with `--model DIR` (the tests' tiny random model): the integration tests' tiny run.
 *
 * Nothing waits for people: review is off and promotion manual, so a run whose gates pass ends as a
 * candidate. Every file keeps its artifacts, runs and registry inside the check's work folder.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { tinyRun } from '../../test/integration/harness';

export type CheckMode = 'gpu' | 'cpu';
export type Strategy = 'lora' | 'full';

const root = join(import.meta.dirname, '..', '..');

/** Steps between checkpoints in GPU mode: the killed run loses at most this many. */
export const GPU_CHECKPOINT_EVERY = 100;

// The YAML as parsed; the schema checks it when the run loads the file.
type Config = Record<string, any>;

/** The default pipeline, as shipped. */
function defaultPipeline(): Config {
  return parse(readFileSync(join(root, 'temporal.yaml'), 'utf8')) as Config;
}

function gpuPipeline(): Config {
  const config = defaultPipeline();
  // The whole store: every product (so every category), every training and validation row.
  delete config.data.sample.products;
  config.data.columns.category = 'category';
  const { maxSteps: _steps, maxTrainRows: _rows, maxValidationRows: _validation, ...training } = config.training;
  config.training = {
    ...training,
    epochs: 1,
    device: 'cuda',
    evalEvery: GPU_CHECKPOINT_EVERY,
    checkpointEvery: GPU_CHECKPOINT_EVERY,
    // A killed worker's attempt is retried once its heartbeat is this late.
    activity: { heartbeat: '20s', maxAttempts: 3 },
  };
  return config;
}

function cpuDefaultModelPipeline(): Config {
  const config = defaultPipeline();
  config.data.sample.rows = 2000;
  config.training = {
    ...config.training,
    maxSteps: 12,
    maxTrainRows: 48,
    maxValidationRows: 8,
    evalEvery: 4,
    checkpointEvery: 4,
    device: 'cpu',
    activity: { heartbeat: '30s', maxAttempts: 3 },
  };
  config.evaluation = { ...config.evaluation, maxTestRows: 8, maxNewTokens: 24 };
  return config;
}

function cpuTinyModelPipeline(model: string): Config {
  const config: Config = tinyRun(model, 24);
  // Steps take milliseconds here: checkpoints far enough apart that the killed attempt cannot write
  // another between the step the check sees and the kill.
  config.training.checkpointEvery = 8;
  return config;
}

/**
 * Writes `<work>/<strategy>.yaml` for both strategies and returns their paths. Full fine-tuning
 * changes every weight, so it gets a learning rate 25 times smaller than LoRA's (as in
 * recipes/strategy-comparison.yaml).
 */
/** `gpus`: on a machine with several, the gpu mode trains on all of them (one engine process per GPU). */
export function writeCheckPipelines(work: string, mode: CheckMode, model?: string, gpus = 1): Record<Strategy, string> {
  const base = mode === 'gpu' ? gpuPipeline() : model ? cpuTinyModelPipeline(model) : cpuDefaultModelPipeline();
  if (model) base.model = { ...base.model, base: model };
  if (mode === 'gpu' && gpus > 1) base.training = { ...base.training, distributed: { processes: gpus } };
  const loraRate: number = base.training.learningRate ?? 0.001;
  const files = {} as Record<Strategy, string>;
  for (const strategy of ['lora', 'full'] as const) {
    const config: Config = {
      ...base,
      name: `gpu-check-${strategy}`,
      training: { ...base.training, strategy, learningRate: strategy === 'full' ? loraRate / 25 : loraRate },
      review: { enabled: false },
      promotion: 'manual',
      storage: {
        artifacts: join(work, 'artifacts'),
        runs: join(work, 'runs'),
        registry: join(work, 'registry'),
        feedback: join(work, 'feedback.sqlite'),
      },
    };
    files[strategy] = join(work, `${strategy}.yaml`);
    writeFileSync(files[strategy], `# Written by scripts/gpu-check.ts (${mode} mode).\n${stringify(config)}`);
  }
  return files;
}
