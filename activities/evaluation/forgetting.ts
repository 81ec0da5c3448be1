/**
 * The forgetting check (gpu task queue): perplexity of the base and of the tuned model on general
 * English. A large rise means fine-tuning cost the model its general language.
 */
import { existsSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { PerplexityMetrics } from '../../schemas/engine';
import type { ArtifactRef, StepContext, StepResult } from '../../schemas/manifests';
import type { ForgettingStats } from '../../schemas/steps';
import { sha256File } from '../artifacts';
import { describeBaseModel } from '../base-model';
import { codeVersion } from '../code-version';
import { baseModelFor, configError, configuredPath, storeFor } from '../context';
import { engineMetrics } from '../engine-process';
import { runCachedStep } from '../steps';

const projectRoot = join(import.meta.dirname, '..', '..');
export const DEFAULT_GENERAL_TEXT = join(projectRoot, 'assets', 'general-english.txt');

/** The text file of the forgetting check: the config's, or the general English the project ships. */
export async function generalTextPath(context: Pick<StepContext, 'config' | 'configDir' | 'staged'>): Promise<string> {
  const configured = context.config.evaluation.generalText;
  return configured ? configuredPath(context, configured) : DEFAULT_GENERAL_TEXT;
}

async function perplexityStep(context: StepContext, model: ArtifactRef | null, text: string, textSha256: string) {
  const store = storeFor(context);
  const base = await baseModelFor(context);
  // The base model's perplexity depends only on its bytes and the text: it is measured once per base model.
  const baseIdentity = model ? null : await describeBaseModel(context);
  return runCachedStep(
    store,
    {
      step: model ? 'perplexity-tuned' : 'perplexity-base',
      config: {
        text: textSha256,
        ...(baseIdentity ? { base: base.name, sha256: baseIdentity.sha256, revision: baseIdentity.revision } : {}),
      },
      inputs: model ? [model] : [],
      code: codeVersion(import.meta.url, 'perplexity'),
      noCache: context.noCache,
      summarize: (m: PerplexityMetrics) => `perplexity ${m.perplexity.toFixed(2)} over ${m.tokens} tokens`,
    },
    async () => {
      const args = ['perplexity', '--model', model ? await store.fetch(model) : base.path, '--text', text];
      return { outputs: {}, stats: await engineMetrics(args, 'perplexity', PerplexityMetrics) };
    },
  );
}

export async function checkForgetting(context: StepContext & { model: ArtifactRef }): Promise<StepResult<ForgettingStats, never>> {
  const text = await generalTextPath(context);
  if (!existsSync(text)) {
    throw configError(`evaluation.generalText: ${text} does not exist; point it at a plain-text file or remove it to use the shipped one`);
  }
  const textSha256 = await sha256File(text);
  const started = performance.now();
  const base = await perplexityStep(context, null, text, textSha256);
  const tuned = await perplexityStep(context, context.model, text, textSha256);
  const stats: ForgettingStats = {
    text: text.startsWith(projectRoot) ? relative(projectRoot, text) : text,
    textSha256,
    base: base.stats,
    tuned: tuned.stats,
    ratio: tuned.stats.perplexity / base.stats.perplexity,
  };
  return {
    step: 'forgetting',
    key: tuned.key,
    codeVersion: tuned.codeVersion,
    reused: base.reused && tuned.reused,
    attempt: tuned.attempt,
    inputs: [context.model],
    outputs: {},
    stats,
    summary: `general-English perplexity: base ${stats.base.perplexity.toFixed(2)} -> tuned ${stats.tuned.perplexity.toFixed(2)}`,
    seconds: Math.round(performance.now() - started) / 1000,
  };
}
