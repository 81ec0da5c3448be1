/**
 * `dataStage`: the data stage as its own workflow. Source, ingest, clean, dedup, split, the feedback
 * files added to the training split and the knowledge files (each when the config names any) and
 * the data report, each a cached activity on the cpu queue.
 * It runs once per run; trials take its splits.
 */
import type { DataStageInput, DataStageResult } from '../schemas/manifests';
import { cpuActivitiesFor } from './activities';
import { StageTracker, asWorkflowFailure } from './progress';

export async function dataStage(input: DataStageInput & { heartbeatTimeout?: string }): Promise<DataStageResult> {
  const tracker = new StageTracker('source');
  const cpu = cpuActivitiesFor(input.heartbeatTimeout);
  const context = input.context;
  try {
    const source = await tracker.step('source', () => cpu.prepareSource(context));
    const ingest = await tracker.step('ingest', () => cpu.ingestData({ ...context, source }));
    const clean = await tracker.step('clean', () => cpu.cleanData({ ...context, rows: ingest.outputs.rows }));
    const dedup = await tracker.step('dedup', () => cpu.dedupData({ ...context, rows: clean.outputs.rows }));
    const split = await tracker.step('split', () => cpu.splitData({ ...context, rows: dedup.outputs.rows }));
    // Only with data.feedback or retrieval.knowledge: a run without them records the same history as before the steps
    // existed. A run started before a key existed carries a config without it.
    const feedback =
      (context.config.data.feedback?.length ?? 0) > 0
        ? await tracker.step('feedback', () => cpu.prepareFeedbackFiles({ ...context, splits: split.outputs }))
        : null;
    // Feedback rows join the training split only; every later step (knowledge's repeat check, training, the index) reads it.
    const splits = feedback ? { ...split.outputs, train: feedback.outputs.train } : split.outputs;
    const knowledge =
      (context.config.retrieval.knowledge?.length ?? 0) > 0
        ? await tracker.step('knowledge', () => cpu.prepareKnowledgeFiles({ ...context, splits }))
        : null;
    const report = await tracker.step('report', () =>
      cpu.writeDataReport({
        ...context,
        steps: { source, ingest, clean, dedup, split, ...(feedback ? { feedback } : {}), ...(knowledge ? { knowledge } : {}) },
      }),
    );
    tracker.enter('done');
    return {
      source: source.outputs.source,
      splits,
      dataReport: report.outputs,
      quarantine: ingest.outputs.quarantine,
      conflicts: dedup.outputs.conflicts,
      removedByCleaning: clean.outputs.removed,
      removedDuplicates: dedup.outputs.removed,
      knowledge: knowledge?.outputs ?? null,
      feedback: feedback ? { quarantine: feedback.outputs.quarantine, removed: feedback.outputs.removed } : null,
      steps: [source, ingest, clean, dedup, split, ...(feedback ? [feedback] : []), ...(knowledge ? [knowledge] : []), report],
      progress: tracker.progress.steps,
    };
  } catch (err) {
    tracker.fail(err);
    throw asWorkflowFailure(err);
  }
}
