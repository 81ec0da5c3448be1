/**
 * `finetunePipeline`: one run. It validates the config, runs the data stage and one trial as child
 * workflows, records the run manifest (`run.json`) and writes the report from it. Deterministic
 * orchestration only: every side effect is an activity passing small manifests. A user's error
 * (config, data) ends the run with its message; crashes and lost workers are retried by Temporal.
 */
import type { SearchAttributeUpdatePair } from '@temporalio/common';
import { executeChild, patched, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { PipelineConfig } from '../schemas/config';
import type {
  ArtifactRef,
  DataStageResult,
  PipelineInput,
  PipelineResult,
  ReviewState,
  RunOutcome,
  StepRecord,
  StepResult,
  TrialResult,
} from '../schemas/manifests';
import { cpuActivitiesFor } from './activities';
import { dataStage } from './data-stage';
import { SearchAttributes, childWorkflowId } from './definitions';
import { StageTracker, asWorkflowFailure, childOptions, rootCause } from './progress';
import { dataStageFiles, trialFiles } from './run-files';
import { humanReview, reviewSummary, reviewedEvaluation } from './review';
import { trial } from './trial';

/** The run folder's named files, from what the stages made so far. */
function runFiles(data: DataStageResult | null, made: TrialResult | null, report: ArtifactRef | null): Record<string, ArtifactRef> {
  return { ...(data ? dataStageFiles(data) : {}), ...(made ? trialFiles(made) : {}), ...(report ? { report } : {}) };
}

export async function finetunePipeline(input: PipelineInput): Promise<PipelineResult> {
  // Runs started before the registry and the lineage search attributes neither promote nor set them.
  const withRegistry = patched('registry-and-lineage');
  const tracker = new StageTracker('validate');
  const runId = workflowInfo().workflowId;
  const heartbeatTimeout = input.dataHeartbeatTimeout;
  const cpu = cpuActivitiesFor(heartbeatTimeout);
  const steps: Array<{ stage: StepRecord['stage']; result: StepResult }> = [];
  let config: PipelineConfig | null = null;
  let data: DataStageResult | null = null;
  let made: TrialResult | null = null;
  let report: StepResult<unknown, 'report'> | null = null;
  let review: ReviewState | null = null;

  /** Writes `run.json` as the run stands now, and links the run folder. */
  const recordRun = (status: 'running' | 'completed' | 'failed', outcome: RunOutcome | null, error: string | null = null) =>
    cpu.recordRun({
      runId,
      run: input,
      config,
      status,
      outcome,
      error,
      startedAt: workflowInfo().startTime.toISOString(),
      updatedAt: new Date().toISOString(),
      steps: report ? [...steps, { stage: 'pipeline', result: report }] : steps,
      source: data?.source ?? null,
      metrics: made?.evaluation?.metrics ?? null,
      gate: made?.evaluation?.gate ?? null,
      review,
      notes: made?.notes ?? [],
      artifacts: runFiles(data, made, report?.outputs.report ?? null),
    });

  /** The run's lineage, searchable: set as soon as each part is known, the verdict and code version at the end. */
  const mark = (...pairs: SearchAttributeUpdatePair[]) => {
    if (withRegistry) upsertSearchAttributes(pairs);
  };

  try {
    config = await cpu.validatePipelineConfig({ config: input.config, configDir: input.configDir });
    upsertSearchAttributes([
      { key: SearchAttributes.pipeline, value: config.name },
      { key: SearchAttributes.configHash, value: input.configHash },
    ]);
    mark({ key: SearchAttributes.baseModel, value: config.model.base });
    const context = { config, configDir: input.configDir, noCache: input.noCache, staged: input.staged };

    tracker.enter('data');
    const dataId = childWorkflowId.data(runId);
    data = await tracker.child('data', dataId, () =>
      executeChild(dataStage, { ...childOptions(dataId), args: [{ context, runId, heartbeatTimeout }] }),
    );
    steps.push(...data.steps.map((result) => ({ stage: 'data' as const, result })));
    mark({ key: SearchAttributes.datasetHash, value: data.source.sha256 });

    let outcome: RunOutcome = 'data-ready';
    // The files read beside the data count as data (registry.ts dataFingerprint picks them): new feedback is something new to learn.
    const dataFiles = data.steps.map(({ step, stats }) => ({ step, stats }));
    // A scheduled run with nothing new to learn from: the production model was trained on this data and config.
    const check =
      withRegistry && input.onlyIfChanged ? await cpu.checkUnchanged({ context, dataset: data.source.sha256, dataFiles }) : null;
    if (check?.unchanged) {
      outcome = 'unchanged';
      tracker.decided('unchanged', `nothing new: the production model (run ${check.production}) was made from this data and config`);
    } else if (input.stopAfter !== 'data') {
      await recordRun('running', null); // the data files are in the run folder while the model trains
      tracker.enter('trial');
      const trialId = childWorkflowId.trial(runId);
      const splits = data.splits;
      const knowledge = data.knowledge?.rows;
      const stopAfter = input.stopAfter === 'train' ? 'export' : undefined;
      made = await tracker.child('trial', trialId, () =>
        executeChild(trial, {
          ...childOptions(trialId),
          args: [{ context, runId, splits, knowledge, overrides: {}, stopAfter, heartbeatTimeout }],
        }),
      );
      steps.push(...made.steps.map((result) => ({ stage: 'trial' as const, result })));
      outcome = made.evaluation ? made.evaluation.gate.verdict : 'exported';
      // Human review: only a model the automatic gates let through, and only in runs started since review existed.
      if (
        made.evaluation &&
        (outcome === 'candidate' || outcome === 'awaiting-review') &&
        config.review.enabled &&
        patched('human-review')
      ) {
        tracker.enter('review');
        const { gate, files } = made.evaluation;
        const items = await cpu.drawReviewSample({ ...context, answers: files[`answers-${gate.system}.jsonl`]! });
        review = await humanReview(config, items);
        const decided = reviewedEvaluation(made.evaluation, review);
        made = { ...made, evaluation: decided };
        outcome = review.status === 'expired' ? 'review-expired' : decided.gate.verdict;
        tracker.decided('review', reviewSummary(review));
      }
      if (withRegistry && outcome === 'candidate' && config.promotion === 'auto' && made.onnx) {
        tracker.enter('promote');
        const moved = await cpu.promoteModel({
          context,
          runId,
          onnx: made.onnx,
          dataset: data.source.sha256,
          dataFiles,
          configHash: input.configHash,
        });
        tracker.decided('promote', `the production model of ${moved.pipeline} now (before: ${moved.previous ?? 'none'})`);
        outcome = 'promoted';
      }
    }
    if (made?.evaluation) {
      // The report is written from the manifest, then the manifest records the report.
      const { manifest } = await recordRun('running', outcome);
      report = await tracker.step('report', () => cpu.writeRunReport({ ...context, manifest }), 'run-report');
    }
    tracker.enter('manifest');
    const recorded = await recordRun('completed', outcome);
    mark({ key: SearchAttributes.verdict, value: outcome }, { key: SearchAttributes.codeVersion, value: recorded.codeVersion });
    tracker.enter('done');
    return {
      pipeline: config.name,
      outcome,
      configHash: input.configHash,
      runFolder: recorded.runFolder,
      manifest: recorded.manifest,
      data: {
        source: data.source,
        splits: data.splits,
        dataReport: data.dataReport,
        quarantine: data.quarantine,
        conflicts: data.conflicts,
        removedByCleaning: data.removedByCleaning,
        removedDuplicates: data.removedDuplicates,
        knowledge: data.knowledge,
        feedback: data.feedback ?? null,
      },
      training: made?.trained ?? null,
      onnx: made?.onnx ?? null,
      evaluation: made?.evaluation && report ? { ...made.evaluation, report: report.outputs.report } : null,
      steps: [...steps.map((s) => s.result), ...(report ? [report] : [])].map(({ step, key, reused, seconds }) => ({
        step,
        key,
        reused,
        seconds,
      })),
    };
  } catch (err) {
    tracker.fail(err);
    mark({ key: SearchAttributes.verdict, value: 'failed' });
    const cause = rootCause(err);
    // The manifest of a failed run says what it did and why it stopped; failing to write it must not hide the error.
    await recordRun('failed', null, cause instanceof Error ? cause.message : String(cause)).catch(() => undefined);
    throw asWorkflowFailure(err);
  }
}
