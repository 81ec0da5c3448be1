/**
 * The export activities (gpu task queue): a trained artifact, or the untuned base model for the
 * base-model baseline, becomes a self-contained ONNX folder (merged weights with a KV cache,
 * tokenizer, chat template, prompt format, generation config), accepted only when ONNX Runtime's
 * greedy tokens equal PyTorch's. What is evaluated and served is this folder.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { PipelineConfig } from '../schemas/config';
import type { ArtifactRef, StepResult } from '../schemas/manifests';
import { artifactPath, type ArtifactStore } from './artifacts';
import { baseModelFor, storeFor } from './data-stage';
import { engineMetrics } from './engine-process';
import { engineVersion, runCachedStep } from './steps';

export interface ExportStats {
  metrics: Record<string, number | null>;
}

interface ExportInput {
  config: PipelineConfig;
  configDir: string;
  noCache?: boolean;
}

function runExport(
  store: ArtifactStore,
  options: { step: string; config: object; inputs: ArtifactRef[]; noCache?: boolean },
  args: string[],
): Promise<StepResult<ExportStats>> {
  return runCachedStep(store, { ...options, config: { ...options.config, engine: engineVersion() } }, async (key) => {
    const workDir = store.workDir(key);
    // An export is minutes at most: a retried attempt starts over rather than resuming.
    await rm(workDir, { recursive: true, force: true });
    const output = join(workDir, 'onnx');
    const metrics = await engineMetrics(['export', ...args, '--output', output], options.step);
    const onnx = await store.putDir(output);
    await rm(workDir, { recursive: true, force: true });
    return { outputs: { onnx }, stats: { metrics } };
  });
}

/** The trained model, exported and parity-checked. */
export async function exportModel(input: ExportInput & { model: ArtifactRef }): Promise<StepResult<ExportStats>> {
  return runExport(storeFor(input), { step: 'export', config: {}, inputs: [input.model], noCache: input.noCache }, [
    '--model',
    artifactPath(input.model),
  ]);
}

/**
 * The untuned base model, exported the same way and prompted with the same system prompt: the
 * base-model baseline. Keyed on the base model and prompt alone, so runs of one base share it.
 */
export async function exportBaseModel(input: ExportInput): Promise<StepResult<ExportStats>> {
  const { systemPrompt } = input.config.model;
  const base = baseModelFor(input);
  return runExport(
    storeFor(input),
    { step: 'export-base', config: { base, systemPrompt: systemPrompt ?? null }, inputs: [], noCache: input.noCache },
    ['--model', base, ...(systemPrompt !== undefined ? ['--system-prompt', systemPrompt] : [])],
  );
}
