/**
 * The evaluation inside a trial: every system answers the same evaluation rows, the engine scores
 * them together, and the gate decides. The retrieval baseline runs on the cpu queue while the gpu
 * queue generates.
 */
import { ApplicationFailure } from '@temporalio/workflow';
import type { PipelineConfig } from '../schemas/config';
import { ErrorTypes } from '../schemas/errors';
import type { ArtifactRef, EvaluationSummary, MetricTable, SplitName, StepContext, StepResult } from '../schemas/manifests';
import type { cpuActivitiesFor, gpuActivitiesFor } from './activities';
import { checkGates } from './gates';
import { rootCause, type StageTracker } from './progress';

export interface EvaluateModelInput {
  context: StepContext & { config: PipelineConfig };
  splits: Record<SplitName, ArtifactRef>;
  /** The trained model (for the forgetting check) and its export (what answers). */
  model: ArtifactRef;
  onnx: ArtifactRef;
}

export async function evaluateModel(
  tracker: StageTracker,
  queues: { cpu: ReturnType<typeof cpuActivitiesFor>; gpu: ReturnType<typeof gpuActivitiesFor> },
  input: EvaluateModelInput,
): Promise<{ evaluation: EvaluationSummary; steps: StepResult[]; notes: string[] }> {
  const { cpu, gpu } = queues;
  const { context } = input;
  const { baselines, forgettingCheck } = context.config.evaluation;
  const steps: StepResult[] = [];
  const notes: string[] = [];
  const record = <R extends StepResult<unknown, string>>(result: R): R => {
    steps.push(result);
    return result;
  };
  const evaluate = <R extends StepResult<unknown, string>>(name: string, run: () => Promise<R>) =>
    tracker.step('evaluate', run, name).then(record);

  const evalSet = await evaluate('eval-set', () => cpu.prepareEvaluationSet({ ...context, test: input.splits.test }));
  const questions = evalSet.outputs.questions;
  const modelSide = async () => {
    const answers = [
      await evaluate('answers-tuned', () => gpu.generateAnswers({ ...context, system: 'tuned', onnx: input.onnx, questions })),
    ];
    if (baselines.includes('base')) {
      try {
        const base = await evaluate('export-base', () => gpu.exportBaseModel(context));
        answers.push(
          await evaluate('answers-base', () => gpu.generateAnswers({ ...context, system: 'base', onnx: base.outputs.onnx, questions })),
        );
      } catch (err) {
        // A base model that cannot be prompted the same way (no chat template) has no fair baseline: say so, go on.
        const cause = rootCause(err);
        if (!(cause instanceof ApplicationFailure && cause.type === ErrorTypes.config)) throw err;
        notes.push(`Base model baseline skipped: ${cause.message}`);
        tracker.skipped('export-base', cause.message);
      }
    }
    const forgetting = forgettingCheck ? await evaluate('forgetting', () => gpu.checkForgetting({ ...context, model: input.model })) : null;
    return { answers, forgetting };
  };
  const retrievalSide = async () =>
    baselines.includes('retrieval')
      ? await evaluate('answers-retrieval', () => cpu.retrieveAnswers({ ...context, train: input.splits.train, questions }))
      : null;
  const [{ answers, forgetting }, retrieval] = await Promise.all([modelSide(), retrievalSide()]);
  const allAnswers = retrieval ? [...answers, retrieval] : answers;
  const scored = await evaluate('score', () => cpu.scoreAnswers({ ...context, answers: allAnswers.map((a) => a.outputs.answers) }));

  // A copy with the forgetting check's perplexities added (structuredClone is not in the workflow sandbox).
  const metrics: MetricTable = Object.fromEntries(Object.entries(scored.stats.metrics).map(([system, m]) => [system, { ...m }]));
  if (forgetting) {
    if (metrics.tuned) metrics.tuned.perplexity = forgetting.stats.tuned.perplexity;
    metrics.base = { ...metrics.base, perplexity: forgetting.stats.base.perplexity };
  }
  tracker.enter('gate');
  const files: Record<string, ArtifactRef> = { 'eval-questions.jsonl': questions, 'scores.json': scored.outputs.scores };
  for (const a of allAnswers) files[`${a.step}.jsonl`] = a.outputs.answers;
  return { evaluation: { rows: evalSet.stats.rows, metrics, gate: checkGates(context.config.gates, metrics), files }, steps, notes };
}
