/**
 * The export activities (gpu task queue): a trained artifact, or the untuned base model for the
 * base-model baseline, becomes a self-contained ONNX folder (merged weights with a KV cache,
 * tokenizer, chat template, prompt format, generation config), accepted only when ONNX Runtime's
 * greedy tokens equal PyTorch's; with `export.quantize`, its weights then quantized to int8 or int4
 * and accepted only within the quality limits against float32. What is evaluated and served is this folder.
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
  `parity: ${m.parityTokens} greedy tokens over ${m.parityPrompts} prompts identical, ${(m.onnxBytes / 1e6).toFixed(0)} MB` +
  (m.weightBits === 32
    ? ''
    : ` int${m.weightBits}: ${(m.tokenAgreement! * 100).toFixed(1)}% of float32's greedy tokens, perplexity ${(m.perplexityIncrease! * 100).toFixed(2)}%`);

/**
 * `export:` of the config, as the step's cache key and the engine's arguments. A quantized export is
 * checked on the run's validation split (`--quality-rows`), which joins its inputs; a float32 one keys
 * on nothing new, so its cached exports stay valid.
 */
async function quantization(store: StepStore, input: StepContext & { validation?: ArtifactRef }) {
  const { quantize, minTokenAgreement, maxPerplexityIncrease } = input.config.export;
  if (quantize === 'none') return { key: {}, inputs: [], args: [] };
  const args = ['--quantize', quantize, '--min-token-agreement', String(minTokenAgreement)];
  args.push('--max-perplexity-increase', String(maxPerplexityIncrease));
  if (input.validation) args.push('--quality-rows', await store.fetch(input.validation));
  return { key: { export: input.config.export }, inputs: input.validation ? [input.validation] : [], args };
}

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

/** The trained model, exported, parity-checked and, with `export.quantize`, quantized and quality-checked. */
export async function exportModel(
  input: StepContext & { model: ArtifactRef; validation?: ArtifactRef },
): Promise<StepResult<ExportStats, 'onnx'>> {
  const store = storeFor(input);
  const quantized = await quantization(store, input);
  return runExport(store, { step: 'export', config: quantized.key, inputs: [input.model, ...quantized.inputs], noCache: input.noCache }, [
    '--model',
    await store.fetch(input.model),
    ...quantized.args,
  ]);
}

/**
 * The untuned base model, exported the same way (at the same precision, so tuned and base are compared
 * at one) and prompted with the same system prompt: the base-model baseline. Keyed on the base model's
 * bytes and the prompt alone, so runs of one base share it; a quantized one also on `export:` and the
 * validation split its quality is checked on.
 */
export async function exportBaseModel(input: StepContext & { validation?: ArtifactRef }): Promise<StepResult<ExportStats, 'onnx'>> {
  const { systemPrompt } = input.config.model;
  const base = await baseModelFor(input);
  const { sha256, revision } = await describeBaseModel(input);
  const store = storeFor(input);
  const quantized = await quantization(store, input);
  return runExport(
    store,
    {
      step: 'export-base',
      config: { base: base.name, sha256, revision, systemPrompt, ...quantized.key },
      inputs: quantized.inputs,
      noCache: input.noCache,
    },
    ['--model', base.path, ...(systemPrompt ? ['--system-prompt', systemPrompt] : []), ...quantized.args],
  );
}
