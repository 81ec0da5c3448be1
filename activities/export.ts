/**
 * The export activities (gpu task queue): a trained artifact, or the untuned base model for the
 * base-model baseline, becomes a self-contained ONNX folder (merged weights with a KV cache,
 * tokenizer, chat template, prompt format, generation config), accepted only when ONNX Runtime's
 * greedy tokens equal PyTorch's. What is evaluated and served is this folder.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ExportMetrics } from '../schemas/engine';
import type { ArtifactRef, StepContext, StepResult } from '../schemas/manifests';
import type { ExportStats } from '../schemas/steps';
import type { StepStore } from './artifacts';
import { describeBaseModel } from './base-model';
import { codeVersion } from './code-version';
import { baseModelFor, storeFor } from './context';
import { engineMetrics } from './engine-process';
import { runCachedStep } from './steps';

const summarize = ({ metrics: m }: ExportStats) =>
  `parity: ${m.parityTokens} greedy tokens over ${m.parityPrompts} prompts identical, ${(m.onnxBytes / 1e6).toFixed(0)} MB`;

function runExport(
  store: StepStore,
  options: { step: string; config: object; inputs: ArtifactRef[]; noCache?: boolean },
  args: string[],
): Promise<StepResult<ExportStats, 'onnx'>> {
  return runCachedStep(store, { ...options, code: codeVersion(import.meta.url, 'export'), summarize }, async (key) => {
    const workDir = store.workDir(key);
    // An export is minutes at most: a retried attempt starts over rather than resuming.
    await rm(workDir, { recursive: true, force: true });
    const output = join(workDir, 'onnx');
    const metrics = await engineMetrics(['export', ...args, '--output', output], options.step, ExportMetrics);
    const onnx = await store.putDir(output);
    await rm(workDir, { recursive: true, force: true });
    return { outputs: { onnx }, stats: { metrics } };
  });
}

/** The trained model, exported and parity-checked. */
export async function exportModel(input: StepContext & { model: ArtifactRef }): Promise<StepResult<ExportStats, 'onnx'>> {
  const store = storeFor(input);
  return runExport(store, { step: 'export', config: {}, inputs: [input.model], noCache: input.noCache }, [
    '--model',
    await store.fetch(input.model),
  ]);
}

/**
 * The untuned base model, exported the same way and prompted with the same system prompt: the
 * base-model baseline. Keyed on the base model's bytes and the prompt alone, so runs of one base share it.
 */
export async function exportBaseModel(input: StepContext): Promise<StepResult<ExportStats, 'onnx'>> {
  const { systemPrompt } = input.config.model;
  const base = await baseModelFor(input);
  const { sha256, revision } = await describeBaseModel(input);
  return runExport(
    storeFor(input),
    { step: 'export-base', config: { base: base.name, sha256, revision, systemPrompt }, inputs: [], noCache: input.noCache },
    ['--model', base.path, ...(systemPrompt ? ['--system-prompt', systemPrompt] : [])],
  );
}
