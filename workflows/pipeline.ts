/**
 * `finetunePipeline`: the durable spine. Deterministic orchestration only; every side effect is an
 * activity that passes small manifests. Data and config errors arrive as non-retryable failures and
 * end the run with their message; crashes and lost workers are retried by Temporal.
 */
import {
  ApplicationFailure,
  ActivityFailure,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type * as dataActivities from '../activities/data-stage';
import type * as exportActivities from '../activities/export';
import type * as trainActivities from '../activities/train';
import type { PipelineConfig } from '../schemas/config';
import type { PipelineInput, PipelineProgress, PipelineResult, StageName, StepResult } from '../schemas/manifests';
import { SearchAttributes, TaskQueues, progressQuery } from './definitions';

const NON_RETRYABLE = ['ConfigError', 'DataError', 'ParityError'];

function dataActivitiesFor(heartbeatTimeout: string) {
  return proxyActivities<typeof dataActivities>({
    taskQueue: TaskQueues.cpu,
    startToCloseTimeout: '30m',
    heartbeatTimeout,
    retry: {
      initialInterval: '1s',
      backoffCoefficient: 2,
      maximumInterval: '1m',
      maximumAttempts: 5,
      nonRetryableErrorTypes: NON_RETRYABLE,
    },
  });
}

function trainActivitiesFor(config: PipelineConfig) {
  const policy = config.training.activity;
  return proxyActivities<typeof trainActivities & typeof exportActivities>({
    taskQueue: TaskQueues.gpu,
    startToCloseTimeout: policy.startToClose,
    heartbeatTimeout: policy.heartbeat,
    retry: {
      initialInterval: '5s',
      backoffCoefficient: 2,
      maximumInterval: '2m',
      maximumAttempts: policy.maxAttempts,
      nonRetryableErrorTypes: NON_RETRYABLE,
    },
  });
}

/** One line per step for progress displays: the counts a person looks at first. */
function summarize(result: StepResult<object>): string {
  const s = result.stats as Record<string, unknown>;
  const parts = ['rowsIn', 'valid', 'quarantined', 'rowsOut', 'exactDuplicates', 'nearDuplicates', 'conflictGroups']
    .filter((k) => typeof s[k] === 'number')
    .map((k) => `${k}=${String(s[k])}`);
  const counts = s.counts as Record<string, number> | undefined;
  const metrics = s.metrics as Record<string, number | null> | undefined;
  const num = (k: string, digits: number) => (typeof metrics?.[k] === 'number' ? metrics[k].toFixed(digits) : '?');
  if (metrics && typeof s.steps === 'number') {
    parts.push(`steps=${s.steps} validationLoss ${num('initialValidationLoss', 3)} -> ${num('finalValidationLoss', 3)}`);
  } else if (metrics && 'parityPrompts' in metrics) {
    parts.push(
      `parity: ${num('parityTokens', 0)} greedy tokens over ${num('parityPrompts', 0)} prompts identical, ${((metrics.onnxBytes ?? 0) / 1e6).toFixed(0)} MB`,
    );
  }
  if (counts) parts.push(`train=${counts.train} validation=${counts.validation} test=${counts.test}`);
  return parts.join(' ');
}

export async function finetunePipeline(input: PipelineInput): Promise<PipelineResult> {
  const acts = dataActivitiesFor(input.dataHeartbeatTimeout ?? '1m');
  const progress: PipelineProgress = { stage: 'validate', steps: [] };
  setHandler(progressQuery, () => progress);

  const enter = (stage: StageName) => {
    progress.stage = stage;
    upsertSearchAttributes([{ key: SearchAttributes.stage, value: stage }]);
  };
  async function step<R extends StepResult<object>>(stage: StageName, run: () => Promise<R>): Promise<R> {
    enter(stage);
    const line = { step: stage, status: 'running' as const };
    progress.steps.push(line);
    const result = await run();
    Object.assign(line, { status: result.reused ? 'reused' : 'done', seconds: result.seconds, summary: summarize(result) });
    return result;
  }

  try {
    enter('validate');
    const config = await acts.validatePipelineConfig({ config: input.config, configDir: input.configDir });
    upsertSearchAttributes([
      { key: SearchAttributes.pipeline, value: config.name },
      { key: SearchAttributes.configHash, value: input.configHash },
    ]);
    const base = { config, configDir: input.configDir, noCache: input.noCache };
    const source = await step('source', () => acts.prepareSource(base));
    const ingest = await step('ingest', () => acts.ingestData({ ...base, source }));
    const clean = await step('clean', () => acts.cleanData({ ...base, rows: ingest.outputs.rows! }));
    const dedup = await step('dedup', () => acts.dedupData({ ...base, rows: clean.outputs.rows! }));
    const split = await step('split', () => acts.splitData({ ...base, rows: dedup.outputs.rows! }));
    const steps = [source, ingest, clean, dedup, split];
    const report = await step('report', () => acts.writeDataReport({ ...base, steps }));
    const runFolder = await acts.publishRunFolder({
      ...base,
      runId: workflowInfo().workflowId,
      files: {
        'train.arrow': split.outputs.train!,
        'validation.arrow': split.outputs.validation!,
        'test.arrow': split.outputs.test!,
        'quarantine.jsonl': ingest.outputs.quarantine!,
        'removed-by-cleaning.jsonl': clean.outputs.removed!,
        'removed-duplicates.jsonl': dedup.outputs.removed!,
        'conflicts.jsonl': dedup.outputs.conflicts!,
        'data-report.md': report.outputs.markdown!,
        'data-report.json': report.outputs.json!,
      },
    });
    const finished: StepResult<object>[] = [...steps, report];
    let training: PipelineResult['training'];
    let onnx: PipelineResult['onnx'];
    if (input.stopAfter !== 'data') {
      const trained = await step('train', () =>
        trainActivitiesFor(config).trainModel({ ...base, train: split.outputs.train!, validation: split.outputs.validation! }),
      );
      finished.push(trained);
      training = { model: trained.outputs.model!, events: trained.outputs.events!, ...trained.stats };
      const exported = await step('export', () => trainActivitiesFor(config).exportModel({ ...base, model: trained.outputs.model! }));
      finished.push(exported);
      onnx = exported.outputs.onnx!;
      await acts.publishRunFolder({
        ...base,
        runId: workflowInfo().workflowId,
        files: { model: trained.outputs.model!, 'training-events.jsonl': trained.outputs.events!, onnx },
      });
    }
    enter('done');
    return {
      pipeline: config.name,
      status: onnx ? 'exported' : 'data-ready',
      training,
      onnx,
      configHash: input.configHash,
      steps: finished.map(({ step: name, key, reused, seconds }) => ({ step: name, key, reused, seconds })),
      splits: { train: split.outputs.train!, validation: split.outputs.validation!, test: split.outputs.test! },
      report: { json: report.outputs.json!, markdown: report.outputs.markdown! },
      quarantine: ingest.outputs.quarantine!,
      conflicts: dedup.outputs.conflicts!,
      runFolder,
    };
  } catch (err) {
    const cause = err instanceof ActivityFailure ? err.cause : err;
    progress.error = cause instanceof Error ? cause.message : String(cause);
    const failedLine = progress.steps.find((s) => s.status === 'running');
    if (failedLine) failedLine.status = 'failed';
    enter('failed');
    // Surface the user's error as the workflow's own failure, so `tuneline status` and the Web UI show it first.
    if (cause instanceof ApplicationFailure && cause.nonRetryable) {
      throw ApplicationFailure.nonRetryable(cause.message, cause.type ?? undefined);
    }
    throw err;
  }
}
