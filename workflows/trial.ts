/**
 * `trial`: train → export → evaluate → score → gate, on split artifacts from a data stage, with a
 * set of training overrides (strategy, LoRA rank/alpha/dropout, learning rate, budget, a pause
 * point). A run is one trial; a sweep is many, each a child workflow with a deterministic id.
 */
import type { StepResult, TrialInput, TrialResult } from '../schemas/manifests';
import { cpuActivitiesFor, gpuActivitiesFor } from './activities';
import { evaluateModel } from './evaluate';
import { needsRetriever, prepareRetriever } from './grounding';
import { StageTracker, asWorkflowFailure } from './progress';

/** True when the overrides change the training settings (a pause point alone does not). */
const changesTraining = (overrides: TrialInput['overrides']) => Object.keys(overrides).some((key) => key !== 'stopAtStep');

export async function trial(input: TrialInput & { heartbeatTimeout?: string }): Promise<TrialResult> {
  const tracker = new StageTracker('train');
  const cpu = cpuActivitiesFor(input.heartbeatTimeout);
  try {
    const config = changesTraining(input.overrides)
      ? await cpu.applyTrainingOverrides({ config: input.context.config, overrides: input.overrides })
      : input.context.config;
    const context = { ...input.context, config };
    const gpu = gpuActivitiesFor(config);
    const { train, validation } = input.splits;
    const steps: StepResult[] = [];
    const record = <R extends StepResult<unknown, string>>(result: R): R => (steps.push(result), result);
    const retriever = needsRetriever(config)
      ? await prepareRetriever(tracker, { cpu, gpu }, context, { train, knowledge: input.knowledge }, record)
      : null;
    // Grounded training: every training and validation prompt carries its known pairs.
    const ground = () => cpu.retrieveKnownPairs({ ...context, ...retriever!, mode: 'training', rows: [train, validation] });
    const contexts =
      retriever && config.training.grounding.k > 0
        ? record(await tracker.step('ground', ground, 'ground-training')).outputs.contexts
        : undefined;
    const { stopAtStep } = input.overrides;
    const trained = record(await tracker.step('train', () => gpu.trainModel({ ...context, train, validation, contexts, stopAtStep })));
    const exported =
      input.stopAfter === 'train'
        ? null
        : record(await tracker.step('export', () => gpu.exportModel({ ...context, model: trained.outputs.model, validation })));
    const evaluated =
      exported === null || input.stopAfter === 'export'
        ? null
        : await evaluateModel(
            tracker,
            { cpu, gpu },
            { context, splits: input.splits, model: trained.outputs.model, onnx: exported.outputs.onnx, retriever },
          );
    tracker.enter('done');
    const { steps: trainSteps, resumedFromStep, device, trainableParameters, metrics } = trained.stats;
    return {
      training: config.training,
      trained: { ...trained.outputs, steps: trainSteps, resumedFromStep, device, trainableParameters, metrics },
      onnx: exported?.outputs.onnx ?? null,
      evaluation: evaluated?.evaluation ?? null,
      notes: evaluated?.notes ?? [],
      steps: [...steps, ...(evaluated?.steps ?? [])],
      progress: tracker.progress.steps,
    };
  } catch (err) {
    tracker.fail(err);
    throw asWorkflowFailure(err);
  }
}
