/**
 * The export activity (gpu task queue): the trained artifact becomes a self-contained ONNX folder
 * (merged weights with a KV cache, tokenizer, chat template, prompt format, generation config),
 * accepted only when ONNX Runtime's greedy tokens equal PyTorch's. What is evaluated and served
 * is this folder.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { PipelineConfig } from '../schemas/config';
import type { EngineEvent } from '../schemas/engine';
import type { ArtifactRef, StepResult } from '../schemas/manifests';
import { artifactPath } from './artifacts';
import { storeFor } from './data-stage';
import { runEngine } from './engine-process';
import { engineVersion, runCachedStep } from './steps';

export interface ExportStats {
  metrics: Record<string, number | null>;
}

export async function exportModel(input: {
  config: PipelineConfig;
  configDir: string;
  noCache?: boolean;
  model: ArtifactRef;
}): Promise<StepResult<ExportStats>> {
  const store = storeFor(input);
  return runCachedStep(
    store,
    { step: 'export', config: { engine: engineVersion() }, inputs: [input.model], noCache: input.noCache },
    async (key) => {
      const workDir = store.workDir(key);
      // An export is minutes at most: a retried attempt starts over rather than resuming.
      await rm(workDir, { recursive: true, force: true });
      const output = join(workDir, 'onnx');
      let done: Extract<EngineEvent, { event: 'done' }> | undefined;
      await runEngine({
        args: ['export', '--model', artifactPath(input.model), '--output', output],
        heartbeatDetails: () => ({ phase: 'export' }),
        onEvent: (event) => {
          if (event.event === 'done') done = event;
        },
      });
      if (!done) throw new Error('the engine exited cleanly without a done event');
      const onnx = await store.putDir(output);
      await rm(workDir, { recursive: true, force: true });
      return { outputs: { onnx }, stats: { metrics: done.metrics } };
    },
  );
}
