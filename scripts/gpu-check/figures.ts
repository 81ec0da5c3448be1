/**
 * The GPU check's figures, computed from what the runs recorded (run.json, the training events
 * log), never from worker logs: stage times, model FLOPs utilisation, the resume check.
 */
import type { GpuCheckMachine, GpuCheckStrategy, ModelFlopsUtilization, ResumeCheck } from '../../schemas/gpu-check';
import type { PipelineResult, RunManifest } from '../../schemas/manifests';
import type { TrainStats } from '../../schemas/steps';
import type { LoggedTrainingEvent } from '../../activities/train';

/**
 * Peak dense bf16 tensor FLOP/s (no sparsity) from the vendors' data sheets, most specific name
 * first: `NVIDIA H100 PCIe` must not match the SXM figure.
 */
export const PEAK_BF16_FLOPS: ReadonlyArray<readonly [pattern: RegExp, flopsPerSecond: number]> = [
  [/GB200|B200/i, 2250e12],
  [/B100/i, 1750e12],
  [/H100.*(PCIe|PCI-E)/i, 756e12],
  [/H100.*NVL/i, 835e12],
  [/H100|H200|H800|GH200/i, 989e12],
  [/A100|A800/i, 312e12],
  [/L40S/i, 362e12],
  [/L40/i, 181e12],
  [/A6000 Ada|RTX 6000 Ada/i, 364e12],
  [/A6000/i, 155e12],
  [/RTX 4090/i, 165e12],
  [/A10G/i, 70e12],
  [/A10\b/i, 125e12],
  [/L4\b/i, 121e12],
  [/A30/i, 165e12],
];

export function peakBf16Flops(deviceName: string): number | null {
  return PEAK_BF16_FLOPS.find(([pattern]) => pattern.test(deviceName))?.[1] ?? null;
}

const MFU_FORMULA =
  '6 × totalParameters × tokensPerSecond / (peak dense bf16 FLOP/s × GPUs): forward and backward through every weight, ' +
  'LoRA included (its frozen weights still compute); attention over the sequence and padding left out';

/** Model FLOPs utilisation of the training steps; null with a reason on CPU or an unknown GPU. */
export function modelFlopsUtilization(
  machine: Pick<GpuCheckMachine, 'device' | 'deviceName'>,
  trainedOn: string,
  tokensPerSecond: number | null,
  totalParameters: number | null,
  /** Engine processes, one per GPU: the peak is that many GPUs'. */
  processes = 1,
): ModelFlopsUtilization {
  const achieved = tokensPerSecond !== null && totalParameters !== null ? 6 * totalParameters * tokensPerSecond : null;
  const none = (reason: string) => ({
    value: null,
    achievedFlopsPerSecond: achieved,
    peakFlopsPerSecond: null,
    formula: MFU_FORMULA,
    reason,
  });
  if (!trainedOn.startsWith('cuda')) return none(`trained on ${trainedOn}: there is no peak bf16 tensor rate to compare with`);
  const onePeak = peakBf16Flops(machine.deviceName);
  const peak = onePeak === null ? null : onePeak * processes;
  if (peak === null) return none(`${machine.deviceName} is not in the table of known GPUs (scripts/gpu-check/figures.ts)`);
  if (achieved === null) return none('the run reported no tokens per second or the parameter count is unknown');
  return { value: achieved / peak, achievedFlopsPerSecond: achieved, peakFlopsPerSecond: peak, formula: MFU_FORMULA, reason: null };
}

/** The stage of the check a run step belongs to. */
export function stageOfStep(record: Pick<RunManifest['steps'][number], 'stage' | 'step'>): string {
  if (record.stage === 'data') return 'data';
  if (record.step === 'run-report') return 'report';
  if (['export-embedder', 'retrieval-index', 'ground-training'].includes(record.step)) return 'grounding';
  if (record.step === 'train') return 'train';
  if (record.step === 'export') return 'export';
  return 'evaluate';
}

function stageSeconds(steps: RunManifest['steps']): Record<string, number> {
  const stages: Record<string, number> = {};
  for (const s of steps) stages[stageOfStep(s)] = (stages[stageOfStep(s)] ?? 0) + s.seconds;
  return stages;
}

/** One strategy's figures from its run's result and manifest. */
export function strategyFigures(
  strategy: 'lora' | 'full',
  result: PipelineResult,
  manifest: RunManifest,
  machine: Pick<GpuCheckMachine, 'device' | 'deviceName'>,
  wallSeconds: number,
  baseParameters: number | null,
  runManifestPath: string,
): GpuCheckStrategy {
  const train = manifest.steps.find((s) => s.step === 'train');
  if (!result.training || !train) throw new Error(`the ${strategy} run recorded no training`);
  const stats = train.stats as TrainStats;
  const m = stats.metrics;
  const resolved = manifest.config.resolved as { training: { batchSize: number; gradientAccumulation: number } };
  const sequences = m.steps * resolved.training.batchSize * resolved.training.gradientAccumulation;
  // LoRA adds its adapters to the base weights; full fine-tuning trains the base weights themselves.
  const totalParameters = baseParameters === null ? null : strategy === 'lora' ? baseParameters + m.trainableParameters : baseParameters;
  return {
    strategy,
    runId: manifest.runId,
    outcome: result.outcome,
    runManifest: runManifestPath,
    wallSeconds,
    stages: stageSeconds(manifest.steps),
    steps: manifest.steps.map((s) => ({ stage: s.stage, step: s.step, seconds: s.seconds, reused: s.reused, attempt: s.attempt })),
    training: {
      device: stats.device,
      steps: m.steps,
      epochs: m.trainRows > 0 ? sequences / m.trainRows : null,
      trainRows: m.trainRows,
      validationRows: m.validationRows,
      trainTokens: m.trainTokens,
      trainSeconds: m.trainSeconds,
      tokensPerSecond: m.tokensPerSecond,
      peakMemoryBytes: m.peakMemoryBytes,
      trainableParameters: m.trainableParameters,
      totalParameters,
      initialValidationLoss: m.initialValidationLoss,
      validationLoss: m.finalValidationLoss,
      resumedFromStep: stats.resumedFromStep,
    },
    mfu: modelFlopsUtilization(machine, stats.device, m.tokensPerSecond, totalParameters, m.processes),
    metrics: manifest.metrics ?? {},
    gate: manifest.gate,
  };
}

/**
 * How far apart, relative to the loss, the two attempts' losses at the compared step may be: a few
 * float32 ulps, for a GPU kernel that sums in another order. On the CPU they are equal to the bit.
 */
export const RESUME_LOSS_TOLERANCE = 1e-6;

/**
 * The resume check from a killed training's events: the retried attempt must start at the newest
 * checkpoint the killed one wrote, and its loss at the next step must equal the killed attempt's
 * there (the same weights, batch and random state).
 */
export function resumeCheck(strategy: 'lora' | 'full', events: Array<Omit<LoggedTrainingEvent, 'at'>>): ResumeCheck {
  const killed = Math.min(...events.map((e) => e.attempt));
  const resumed = Math.max(...events.map((e) => e.attempt));
  const of = (attempt: number, event: string) => events.filter((e) => e.attempt === attempt && e.event === event);
  const killedSteps = of(killed, 'step');
  const checkpoints = of(killed, 'checkpoint').map((e) => e.step);
  const start = of(resumed, 'start')[0];
  const resumedFromStep = start?.step ?? 0;
  const comparedStep = resumedFromStep + 1;
  const killedLoss = killedSteps.find((e) => e.step === comparedStep)?.loss ?? null;
  const resumedLoss = of(resumed, 'step').find((e) => e.step === comparedStep)?.loss ?? null;
  const difference = killedLoss !== null && resumedLoss !== null ? Math.abs(killedLoss - resumedLoss) : null;
  return {
    strategy,
    killedAfterStep: killedSteps.at(-1)?.step ?? 0,
    resumedFromStep,
    comparedStep,
    killedAttemptLoss: killedLoss,
    resumedAttemptLoss: resumedLoss,
    difference,
    device: start?.device ?? 'unknown',
    passed:
      resumed > killed &&
      checkpoints.length > 0 &&
      resumedFromStep === Math.max(...checkpoints) &&
      difference !== null &&
      difference <= RESUME_LOSS_TOLERANCE * Math.max(1, Math.abs(killedLoss!)),
  };
}
