/** The named files of a run folder (and a sweep folder) from what the stages made. */
import type { ArtifactRef, DataStageResult, TrialResult } from '../schemas/manifests';

/** The data stage's files: the source snapshot, the splits (train with its feedback rows), what was set aside and why, the data report. */
export function dataStageFiles(data: DataStageResult): Record<string, ArtifactRef> {
  return {
    'source-data': data.source,
    'train.arrow': data.splits.train,
    'validation.arrow': data.splits.validation,
    'test.arrow': data.splits.test,
    'quarantine.jsonl': data.quarantine,
    'removed-by-cleaning.jsonl': data.removedByCleaning,
    'removed-duplicates.jsonl': data.removedDuplicates,
    'conflicts.jsonl': data.conflicts,
    'data-report.md': data.dataReport.markdown,
    'data-report.json': data.dataReport.json,
    // Absent from the result of a run started before data.feedback existed.
    ...(data.feedback ? { 'feedback-quarantine.jsonl': data.feedback.quarantine, 'feedback-removed.jsonl': data.feedback.removed } : {}),
    ...(data.knowledge
      ? {
          'knowledge.arrow': data.knowledge.rows,
          'knowledge-quarantine.jsonl': data.knowledge.quarantine,
          'knowledge-removed.jsonl': data.knowledge.removed,
        }
      : {}),
  };
}

/** A trial's files: the trained model and its events, the export, the evaluation's files. */
export function trialFiles(made: TrialResult): Record<string, ArtifactRef> {
  return {
    model: made.trained.model,
    'training-events.jsonl': made.trained.events,
    ...(made.onnx ? { onnx: made.onnx } : {}),
    ...(made.evaluation?.files ?? {}),
  };
}
