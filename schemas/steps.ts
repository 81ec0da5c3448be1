/**
 * The statistics of the model steps, which the run manifest records and the run report reads back
 * from it: training, export, the evaluation set, generation, the forgetting check and scoring.
 */
import { z } from 'zod';
import { ExportMetrics, SystemName, TrainMetrics } from './engine';
import { BaseModelIdentity, MetricTable } from './manifests';

export const TrainStats = z.strictObject({
  steps: z.number().int(),
  resumedFromStep: z.number().int().nullable(),
  metrics: TrainMetrics,
  device: z.string(),
  trainableParameters: z.number().int(),
  baseModel: BaseModelIdentity,
});
export type TrainStats = z.infer<typeof TrainStats>;

export const ExportStats = z.strictObject({ metrics: ExportMetrics });
export type ExportStats = z.infer<typeof ExportStats>;

export const EvalSetStats = z.strictObject({
  rows: z.number().int().describe('Rows every system answers.'),
  testRows: z.number().int().describe('Rows of the test split they were drawn from.'),
});
export type EvalSetStats = z.infer<typeof EvalSetStats>;

export const GenerationStats = z.strictObject({
  system: SystemName,
  rows: z.number().int(),
  newTokens: z.number().int(),
  tokensPerSecond: z.number(),
  truncated: z.number().int().describe('Answers cut off at maxNewTokens before they ended their turn.'),
});
export type GenerationStats = z.infer<typeof GenerationStats>;

export const RetrievalStats = z.strictObject({
  rows: z.number().int(),
  indexRows: z.number().int(),
  similarityMean: z.number().min(-1).max(1),
});
export type RetrievalStats = z.infer<typeof RetrievalStats>;

const Perplexity = z.strictObject({ perplexity: z.number(), tokens: z.number().int() });

export const ForgettingStats = z.strictObject({
  text: z.string().describe('The text file: relative to the project when it is the shipped one, else absolute.'),
  textSha256: z.string(),
  base: Perplexity,
  tuned: Perplexity,
  ratio: z.number().describe('tuned / base: above 1 means the model now predicts general English worse.'),
});
export type ForgettingStats = z.infer<typeof ForgettingStats>;

export const ScoreStats = z.strictObject({ rows: z.number().int(), metrics: MetricTable });
export type ScoreStats = z.infer<typeof ScoreStats>;
