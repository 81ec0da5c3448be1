/**
 * The evaluation inside a trial: every system answers the same evaluation rows, the engine scores
 * them together, and the gate decides on the system that would be served. The systems: the tuned
 * model asked plainly (`tuned`) and with its known pairs (`tuned-grounded`, served when training was
 * grounded), the untuned base model both ways (`base`, `base-grounded`), and the retriever's answer
 * (`retrieval`). The retrieval baseline runs on the cpu queue while the gpu queue generates.
 */
import { ApplicationFailure, patched } from '@temporalio/workflow';
import type { RetrieverParts } from '../activities/grounding';
import type { PipelineConfig } from '../schemas/config';
import type { SystemName } from '../schemas/engine';
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
  /** The retriever's parts, when grounding or a retrieving baseline needs it. */
  retriever: RetrieverParts | null;
}

export async function evaluateModel(
  tracker: StageTracker,
  queues: { cpu: ReturnType<typeof cpuActivitiesFor>; gpu: ReturnType<typeof gpuActivitiesFor> },
  input: EvaluateModelInput,
): Promise<{ evaluation: EvaluationSummary; steps: StepResult[]; notes: string[] }> {
  const { cpu, gpu } = queues;
  const { context, retriever } = input;
  const { baselines, forgettingCheck } = context.config.evaluation;
  const grounded = retriever !== null && context.config.training.grounding.k > 0;
  const served: SystemName = grounded ? 'tuned-grounded' : 'tuned';
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
  const contexts = grounded
    ? (
        await evaluate('ground-evaluation', () =>
          cpu.retrieveKnownPairs({ ...context, ...retriever, mode: 'evaluation', rows: [questions] }),
        )
      ).outputs.contexts
    : undefined;
  if (!grounded && baselines.includes('base-grounded'))
    notes.push('The base + grounding baseline was skipped: training.grounding.k is 0, so no known pairs are retrieved.');
  const answer = (system: Exclude<SystemName, 'retrieval'>, onnx: ArtifactRef, withPairs: boolean) =>
    evaluate(`answers-${system}`, () => gpu.generateAnswers({ ...context, system, onnx, questions, ...(withPairs ? { contexts } : {}) }));

  const modelSide = async () => {
    const answers = [await answer('tuned', input.onnx, false)];
    if (grounded) answers.push(await answer('tuned-grounded', input.onnx, true));
    if (baselines.includes('base') || (grounded && baselines.includes('base-grounded'))) {
      const baseAnswers = async () => {
        const base = await evaluate('export-base', () => gpu.exportBaseModel({ ...context, validation: input.splits.validation }));
        if (baselines.includes('base')) answers.push(await answer('base', base.outputs.onnx, false));
        if (grounded && baselines.includes('base-grounded')) answers.push(await answer('base-grounded', base.outputs.onnx, true));
      };
      if (patched('base-baseline-always')) {
        // Every base model is exported for the baseline: one without a chat template in the plain format, as it trained.
        await baseAnswers();
      } else {
        // Runs started before: a base model without a chat template could not be exported, and its baseline was skipped.
        try {
          await baseAnswers();
        } catch (err) {
          const cause = rootCause(err);
          if (!(cause instanceof ApplicationFailure && cause.type === ErrorTypes.config)) throw err;
          notes.push(`Base model baseline skipped: ${cause.message}`);
          tracker.skipped('export-base', cause.message);
        }
      }
    }
    const forgetting = forgettingCheck ? await evaluate('forgetting', () => gpu.checkForgetting({ ...context, model: input.model })) : null;
    return { answers, forgetting };
  };
  const retrievalSide = async () =>
    retriever && baselines.includes('retrieval')
      ? await evaluate('answers-retrieval', () => cpu.retrieveAnswers({ ...context, ...retriever, questions }))
      : null;
  const [{ answers, forgetting }, retrieval] = await Promise.all([modelSide(), retrievalSide()]);
  const allAnswers = retrieval ? [...answers, retrieval] : answers;
  const scored = await evaluate('score', () =>
    cpu.scoreAnswers({ ...context, answers: allAnswers.map((a) => a.outputs.answers), lengthMatchedTo: served }),
  );

  // A copy with the forgetting check's perplexities added (structuredClone is not in the workflow sandbox).
  const metrics: MetricTable = Object.fromEntries(Object.entries(scored.stats.metrics).map(([system, m]) => [system, { ...m }]));
  if (forgetting) {
    // The tuned model's perplexity, whichever way it is asked.
    for (const system of ['tuned', 'tuned-grounded'] as const)
      if (metrics[system]) metrics[system].perplexity = forgetting.stats.tuned.perplexity;
    metrics.base = { ...metrics.base, perplexity: forgetting.stats.base.perplexity };
  }
  tracker.enter('gate');
  const files: Record<string, ArtifactRef> = { 'eval-questions.jsonl': questions, 'scores.json': scored.outputs.scores };
  if (contexts) files['eval-known-pairs.jsonl'] = contexts;
  for (const a of allAnswers) files[`${a.step}.jsonl`] = a.outputs.answers;
  return {
    evaluation: { rows: evalSet.stats.rows, metrics, gate: checkGates(context.config.gates, metrics, served), files },
    steps,
    notes,
  };
}
