/**
 * JSON Schemas emitted from the zod definitions: for editors (`temporal.yaml` refers to the
 * pipeline schema), for the Python engine (it checks its spec against one and its tests check its
 * outputs against the rest) and for anyone reading `run.json`. `npm run schema` rewrites the
 * committed files; a test fails when they are stale.
 */
import { z } from 'zod';
import { PipelineConfig } from './config';
import {
  ContextRow,
  EngineEvent,
  EvaluationRow,
  ExportManifest,
  ExportMetrics,
  PerplexityMetrics,
  Prediction,
  PromptFormat,
  RetrievalMetrics,
  ScoreReport,
  TrainMetrics,
  TrainingHistory,
} from './engine';
import { EngineExit, ErrorTypes, NON_RETRYABLE_ERROR_TYPES, engineErrorKinds, errorTypeForExit } from './errors';
import { EmbedderExportMetrics, EmbedderManifest } from './embedder';
import { GpuCheckReport } from './gpu-check';
import { RunManifest } from './manifests';
import { TrainSpec } from './train-spec';

export const emittedSchemas: Record<string, z.ZodType> = {
  'pipeline.schema.json': PipelineConfig,
  'train-spec.schema.json': TrainSpec,
  'engine-event.schema.json': EngineEvent,
  'train-metrics.schema.json': TrainMetrics,
  'training-history.schema.json': TrainingHistory,
  'prompt-format.schema.json': PromptFormat,
  'export-manifest.schema.json': ExportManifest,
  'export-metrics.schema.json': ExportMetrics,
  'retrieval-metrics.schema.json': RetrievalMetrics,
  'perplexity-metrics.schema.json': PerplexityMetrics,
  'evaluation-row.schema.json': EvaluationRow,
  'context-row.schema.json': ContextRow,
  'prediction.schema.json': Prediction,
  'score-report.schema.json': ScoreReport,
  'run-manifest.schema.json': RunManifest,
  'embedder-manifest.schema.json': EmbedderManifest,
  'embedder-export-metrics.schema.json': EmbedderExportMetrics,
  'gpu-check.schema.json': GpuCheckReport,
};

/** The file text for one schema: input shape (defaults make fields optional), stable formatting. */
export function renderJsonSchema(schema: z.ZodType): string {
  return JSON.stringify(z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }), null, 2) + '\n';
}

/** `engine-errors.json`: exit codes, error kinds and which failures are final, for the engine's tests. */
export function renderEngineErrors(): string {
  const contract = {
    exitCodes: EngineExit,
    errorKinds: engineErrorKinds,
    errorTypeForExit,
    errorTypes: ErrorTypes,
    nonRetryable: NON_RETRYABLE_ERROR_TYPES,
  };
  return JSON.stringify(contract, null, 2) + '\n';
}
