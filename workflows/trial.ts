/**
 * `trial`: train → export → evaluate → score → gate, on split artifacts from a data stage, with a
 * set of training overrides (strategy, LoRA rank/alpha/dropout, learning rate, budget, a pause
 * point). A run is one trial; a sweep is many, each a child workflow with a deterministic id.
 */
import type { TrialInput, TrialResult } from '../schemas/manifests';
import { cpuActivitiesFor, gpuActivitiesFor } from './activities';
import { evaluateModel } from './evaluate';
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
    const trained = await tracker.step('train', () =>
      gpu.trainModel({ ...context, train, validation, stopAtStep: input.overrides.stopAtStep }),
    );
    const exported = await tracker.step('export', () => gpu.exportModel({ ...context, model: trained.outputs.model }));
    const evaluated =
      input.stopAfter === 'export'
        ? null
        : await evaluateModel(
            tracker,
            { cpu, gpu },
            { context, splits: input.splits, model: trained.outputs.model, onnx: exported.outputs.onnx },
          );
    tracker.enter('done');
    const { steps: trainSteps, resumedFromStep, device, trainableParameters, metrics } = trained.stats;
    return {
      training: config.training,
      trained: { ...trained.outputs, steps: trainSteps, resumedFromStep, device, trainableParameters, metrics },
      onnx: exported.outputs.onnx,
      evaluation: evaluated?.evaluation ?? null,
      notes: evaluated?.notes ?? [],
      steps: [trained, exported, ...(evaluated?.steps ?? [])],
      progress: tracker.progress.steps,
    };
  } catch (err) {
    tracker.fail(err);
    throw asWorkflowFailure(err);
  }
}
