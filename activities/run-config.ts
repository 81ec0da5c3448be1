/**
 * The config checks that run as activities (cpu task queue), so a client that skips the CLI cannot
 * skip them: the pipeline file as given, and a trial's training overrides applied to it.
 */
import { z } from 'zod';
import { PipelineConfig } from '../schemas/config';
import type { TrainingOverrides } from '../schemas/manifests';
import { checkConfig, formatProblems } from '../schemas/validate';
import { configError } from './context';

/** First step of a run: the same checks as `tuneline validate`, every problem at once. */
export async function validatePipelineConfig(input: { config: unknown; configDir: string }): Promise<PipelineConfig> {
  const check = checkConfig(input.config);
  if (!check.ok) throw configError(formatProblems(check.problems));
  return check.config;
}

/**
 * A trial's config: the pipeline's with the trial's training overrides, checked against the same
 * schema (bounds included), so a sweep's grid point cannot smuggle in a learning rate of 5.
 */
export async function applyTrainingOverrides(input: { config: PipelineConfig; overrides: TrainingOverrides }): Promise<PipelineConfig> {
  const { stopAtStep: _stop, lora, ...rest } = input.overrides;
  const training = { ...input.config.training, ...rest, lora: { ...input.config.training.lora, ...lora } };
  const parsed = PipelineConfig.safeParse({ ...input.config, training });
  if (!parsed.success) throw configError(`the trial's training overrides are invalid: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}
