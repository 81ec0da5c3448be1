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
import type * as evaluateActivities from '../activities/evaluate';
import type * as exportActivities from '../activities/export';
import type * as reportActivities from '../activities/report/evaluation-report';
import type * as trainActivities from '../activities/train';
import type { PipelineConfig } from '../schemas/config';
import type {
  ArtifactRef,
  MetricTable,
  PipelineInput,
  PipelineProgress,
  PipelineResult,
  StageName,
  StepResult,
} from '../schemas/manifests';
import { SearchAttributes, TaskQueues, progressQuery } from './definitions';
import { checkGates } from './gates';

const NON_RETRYABLE = ['ConfigError', 'DataError', 'ParityError'];

/** Activities on the cpu task queue: the data stage, the retrieval baseline, scoring and the report. */
function dataActivitiesFor(heartbeatTimeout: string) {
  return proxyActivities<typeof dataActivities & typeof evaluateActivities & typeof reportActivities>({
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

/** Activities that run the model, on the gpu task queue: training, export, generation, perplexity. */
function trainActivitiesFor(config: PipelineConfig) {
  const policy = config.training.activity;
  return proxyActivities<typeof trainActivities & typeof exportActivities & typeof evaluateActivities>({
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
  if (typeof s.tokensPerSecond === 'number' && typeof s.newTokens === 'number')
    parts.push(`${String(s.rows)} answers, ${s.newTokens} tokens at ${s.tokensPerSecond} tokens/s`);
  if (typeof s.indexRows === 'number') parts.push(`${String(s.rows)} answers from ${s.indexRows} training rows`);
  if (typeof s.testRows === 'number') parts.push(`${String(s.rows)} of ${s.testRows} test rows`);
  const table = s.metrics as MetricTable | undefined;
  if (table?.tuned) {
    const scores = (metric: string) =>
      Object.entries(table)
        .map(([system, m]) => `${system} ${typeof m?.[metric] === 'number' ? m[metric].toFixed(3) : '-'}`)
        .join(', ');
    parts.push(`rougeL: ${scores('rougeL')}; factualAccuracy: ${scores('factualAccuracy')}`);
  }
  const forgetting = s as { base?: { perplexity?: number | null }; tuned?: { perplexity?: number | null } };
  if (typeof forgetting.tuned?.perplexity === 'number' && typeof forgetting.base?.perplexity === 'number')
    parts.push(
      `general-English perplexity: base ${forgetting.base.perplexity.toFixed(2)} -> tuned ${forgetting.tuned.perplexity.toFixed(2)}`,
    );
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
  /** Runs one step as a progress line named `name` (the stage's name by default). */
  async function step<R extends StepResult<object>>(stage: StageName, run: () => Promise<R>, name: string = stage): Promise<R> {
    enter(stage);
    const line = { step: name, status: 'running' as const };
    progress.steps.push(line);
    const result = await run();
    Object.assign(line, { status: result.reused ? 'reused' : 'done', seconds: result.seconds, summary: summarize(result) });
    return result;
  }

  /**
   * Every system answers the same evaluation rows; the engine scores them together; the gate
   * decides; the report shows why. Retrieval runs on the cpu queue while the gpu queue generates.
   */
  async function evaluate(run: {
    config: PipelineConfig;
    training: NonNullable<PipelineResult['training']>;
    onnx: ArtifactRef;
    exportMetrics: Record<string, number | null>;
    splits: Record<string, ArtifactRef>;
    dataReport: ArtifactRef;
    finished: StepResult<object>[];
  }): Promise<NonNullable<PipelineResult['evaluation']>> {
    const { config } = run;
    const base = { config, configDir: input.configDir, noCache: input.noCache };
    const gpu = trainActivitiesFor(config);
    const { baselines, forgettingCheck } = config.evaluation;
    const record = <R extends StepResult<object>>(result: R): R => {
      run.finished.push(result);
      return result;
    };
    const evalSet = record(await step('evaluate', () => acts.prepareEvaluationSet({ ...base, test: run.splits.test! }), 'eval-set'));
    const questions = evalSet.outputs.questions!;
    let baseSkipped: string | null = null;
    const modelSide = async () => {
      const answers = [
        record(await step('evaluate', () => gpu.generateAnswers({ ...base, system: 'tuned', onnx: run.onnx, questions }), 'answers-tuned')),
      ];
      if (baselines.includes('base')) {
        try {
          const baseOnnx = record(await step('evaluate', () => gpu.exportBaseModel(base), 'export-base'));
          const onnx = baseOnnx.outputs.onnx!;
          answers.push(
            record(await step('evaluate', () => gpu.generateAnswers({ ...base, system: 'base', onnx, questions }), 'answers-base')),
          );
        } catch (err) {
          // A base model that cannot be prompted the same way (no chat template) has no fair baseline: say so, go on.
          const cause = err instanceof ActivityFailure ? err.cause : undefined;
          if (!(cause instanceof ApplicationFailure && cause.type === 'ConfigError')) throw err;
          baseSkipped = cause.message;
          const line = progress.steps.find((s) => s.step === 'export-base');
          if (line) Object.assign(line, { status: 'done', summary: `skipped: ${cause.message}` });
        }
      }
      const forgetting = forgettingCheck
        ? record(await step('evaluate', () => gpu.checkForgetting({ ...base, model: run.training.model }), 'forgetting'))
        : null;
      return { answers, forgetting };
    };
    const retrievalSide = async () =>
      baselines.includes('retrieval')
        ? record(await step('evaluate', () => acts.retrieveAnswers({ ...base, train: run.splits.train!, questions }), 'answers-retrieval'))
        : null;
    const [{ answers, forgetting }, retrieval] = await Promise.all([modelSide(), retrievalSide()]);
    const allAnswers = retrieval ? [...answers, retrieval] : answers;
    const scored = record(
      await step('evaluate', () => acts.scoreAnswers({ ...base, answers: allAnswers.map((a) => a.outputs.answers!) }), 'score'),
    );
    // A copy with the forgetting check's perplexities added (structuredClone is not in the workflow sandbox).
    const metrics: MetricTable = Object.fromEntries(Object.entries(scored.stats.metrics).map(([system, m]) => [system, { ...m }]));
    if (forgetting) {
      if (metrics.tuned) metrics.tuned.perplexity = forgetting.stats.tuned.perplexity;
      metrics.base = { ...metrics.base, perplexity: forgetting.stats.base.perplexity };
    }
    enter('gate');
    const gate = checkGates(config.gates, metrics);
    const written = record(
      await step(
        'evaluate',
        () =>
          acts.writeRunReport({
            ...base,
            runId: workflowInfo().workflowId,
            verdict: gate,
            questions: evalSet,
            answers: allAnswers,
            generation: answers.map((a) => a.stats),
            scores: scored.outputs.scores!,
            forgetting: forgetting?.stats ?? null,
            baseSkipped,
            retrievalIndexRows: retrieval?.stats.indexRows ?? null,
            training: run.training,
            exportMetrics: run.exportMetrics,
            dataReport: run.dataReport,
          }),
        'report',
      ),
    );
    const files: Record<string, ArtifactRef> = {
      report: written.outputs.report!,
      'eval-questions.jsonl': questions,
      'scores.json': scored.outputs.scores!,
    };
    for (const a of allAnswers) files[`${a.step}.jsonl`] = a.outputs.answers!;
    await acts.publishRunFolder({ ...base, runId: workflowInfo().workflowId, files });
    return { rows: evalSet.stats.rows, metrics, gate, report: written.outputs.report! };
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
    let evaluation: PipelineResult['evaluation'];
    if (input.stopAfter !== 'data') {
      const gpu = trainActivitiesFor(config);
      const trained = await step('train', () =>
        gpu.trainModel({ ...base, train: split.outputs.train!, validation: split.outputs.validation! }),
      );
      finished.push(trained);
      training = { model: trained.outputs.model!, events: trained.outputs.events!, ...trained.stats };
      const exported = await step('export', () => gpu.exportModel({ ...base, model: trained.outputs.model! }));
      finished.push(exported);
      onnx = exported.outputs.onnx!;
      await acts.publishRunFolder({
        ...base,
        runId: workflowInfo().workflowId,
        files: { model: trained.outputs.model!, 'training-events.jsonl': trained.outputs.events!, onnx },
      });
      if (input.stopAfter !== 'train') {
        evaluation = await evaluate({
          config,
          training,
          onnx,
          exportMetrics: exported.stats.metrics,
          splits: split.outputs,
          dataReport: report.outputs.json!,
          finished,
        });
      }
    }
    enter('done');
    return {
      pipeline: config.name,
      status: evaluation ? (evaluation.gate.passed ? 'candidate' : 'not-promoted') : onnx ? 'exported' : 'data-ready',
      evaluation,
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
