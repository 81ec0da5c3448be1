/**
 * The retriever a trial needs: over the training split and the knowledge files (retrieval.knowledge),
 * for grounded prompts (training.grounding) and the grounded and retrieval baselines. Embedding
 * retrieval exports the embedder (gpu queue, the engine runs it) and embeds the indexed questions
 * (cpu queue); both are cached, so a sweep's trials share them. Lexical retrieval needs nothing prepared.
 */
import type { RetrieverParts } from '../activities/grounding';
import type { PipelineConfig } from '../schemas/config';
import type { StepContext, StepResult } from '../schemas/manifests';
import type { cpuActivitiesFor, gpuActivitiesFor } from './activities';
import type { StageTracker } from './progress';

/** True when a trial retrieves at all: grounded training, or a baseline that retrieves. */
export function needsRetriever(config: PipelineConfig): boolean {
  return config.training.grounding.k > 0 || config.evaluation.baselines.some((b) => b === 'retrieval' || b === 'base-grounded');
}

export async function prepareRetriever(
  tracker: StageTracker,
  queues: { cpu: ReturnType<typeof cpuActivitiesFor>; gpu: ReturnType<typeof gpuActivitiesFor> },
  context: StepContext,
  rows: Pick<RetrieverParts, 'train' | 'knowledge'>,
  /** Keeps a step's result for the run manifest. */
  record: <R extends StepResult<unknown, string>>(result: R) => R,
): Promise<RetrieverParts> {
  if (context.config.retrieval.method === 'lexical') return rows;
  const embedder = record(await tracker.step('ground', () => queues.gpu.exportEmbedder(context), 'export-embedder'));
  const index = record(
    await tracker.step(
      'ground',
      () => queues.cpu.buildRetrievalIndex({ ...context, ...rows, embedder: embedder.outputs.embedder }),
      'retrieval-index',
    ),
  );
  return { ...rows, embedder: embedder.outputs.embedder, index: index.outputs.index };
}
