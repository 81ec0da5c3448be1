/**
 * `gpu-check.json`: what `scripts/gpu-check.sh` measured on one machine. It trains the default
 * pipeline's model with LoRA and with full fine-tuning, kills one training mid-run and resumes it,
 * exports, evaluates and gates both, and writes every figure here, failures included.
 */
import { z } from 'zod';
import { GateVerdict, MetricTable, RunOutcome } from './manifests';

const seconds = z.number().min(0);
const count = z.number().int().min(0);

export const GpuCheckMachine = z
  .strictObject({
    device: z.enum(['cuda', 'cpu']).describe('Where training ran: `cuda` in GPU mode, `cpu` otherwise.'),
    deviceName: z.string().describe('torch.cuda.get_device_name(0) in GPU mode; the CPU model otherwise.'),
    gpuCount: count.describe('CUDA devices torch sees (0 without a CUDA build of torch or a GPU).'),
    gpus: z.array(z.string()).describe('The name of every CUDA device torch sees.'),
    gpuMemoryBytes: count.nullable().describe('Total memory of the first GPU; null on CPU.'),
    nvidiaSmiGpus: count.describe('GPUs `nvidia-smi -L` lists (0 when it is missing): a GPU torch cannot see shows here.'),
    torch: z.string().describe('torch.__version__ of the engine (.venv).'),
    cuda: z.string().nullable().describe('torch.version.cuda: the CUDA the torch build was made for; null for a CPU build.'),
    bf16: z.boolean().describe('torch.cuda.is_bf16_supported(): the engine trains under bf16 autocast when true.'),
    cpuCores: count,
  })
  .describe("The machine, as the engine's Python sees it.");
export type GpuCheckMachine = z.infer<typeof GpuCheckMachine>;

export const ModelFlopsUtilization = z
  .strictObject({
    value: z.number().nullable().describe('Achieved / peak FLOP/s, 0 to 1; null with `reason` when it cannot be said.'),
    achievedFlopsPerSecond: z.number().nullable().describe('6 × totalParameters × tokensPerSecond.'),
    peakFlopsPerSecond: z.number().nullable().describe("The GPU's peak dense bf16 FLOP/s, from a table of known GPUs."),
    formula: z.string(),
    reason: z.string().nullable().describe('Why `value` is null (CPU, an unknown GPU); null when it is set.'),
  })
  .describe('Model FLOPs utilisation of the training steps.');
export type ModelFlopsUtilization = z.infer<typeof ModelFlopsUtilization>;

export const GpuCheckStep = z.strictObject({
  stage: z.enum(['pipeline', 'data', 'trial']),
  step: z.string(),
  seconds,
  reused: z.boolean().describe('Taken from the step cache (the second strategy reuses the data stage and the baselines).'),
  attempt: z.number().int().positive(),
});

export const GpuCheckStrategy = z
  .strictObject({
    strategy: z.enum(['lora', 'full']),
    runId: z.string(),
    outcome: RunOutcome,
    runManifest: z.string().describe("Path of the run's `run.json`, where every figure here comes from."),
    wallSeconds: seconds.describe('From the start of the run to its result, as the check saw it.'),
    stages: z
      .record(z.string(), seconds)
      .describe('Seconds per stage, summed from run.json steps: data, grounding, train, export, evaluate, report.'),
    steps: z.array(GpuCheckStep),
    training: z.strictObject({
      device: z.string().describe('The device the engine reported (`cuda`, `cpu`).'),
      steps: count,
      epochs: z.number().nullable().describe('Optimizer steps × batch × accumulation / training rows; null when unknown.'),
      trainRows: count,
      validationRows: count,
      trainTokens: count.describe('Non-padding tokens seen by optimizer steps.'),
      trainSeconds: seconds.describe('Time in optimizer steps, over every attempt.'),
      tokensPerSecond: z.number().nullable().describe('Non-padding tokens per second of optimizer steps.'),
      peakMemoryBytes: count.describe("Of the last attempt's process: CUDA max_memory_allocated, or the CPU peak resident set."),
      trainableParameters: count,
      totalParameters: count.nullable().describe('Every parameter of the model trained, base weights included.'),
      initialValidationLoss: z.number(),
      validationLoss: z.number().describe('Of the trained weights (the best seen).'),
      resumedFromStep: count.nullable(),
    }),
    mfu: ModelFlopsUtilization,
    metrics: MetricTable.describe('The metric table: every system on the same test rows.'),
    gate: GateVerdict.nullable(),
  })
  .describe('One strategy trained, exported, evaluated and gated.');
export type GpuCheckStrategy = z.infer<typeof GpuCheckStrategy>;

export const ResumeCheck = z
  .strictObject({
    strategy: z.enum(['lora', 'full']),
    killedAfterStep: count.describe('The last step the killed attempt logged before its worker was killed (SIGKILL).'),
    resumedFromStep: count.describe('The checkpoint the retried attempt started from.'),
    comparedStep: count.describe('The first step after the checkpoint, trained by both attempts.'),
    killedAttemptLoss: z.number().nullable(),
    resumedAttemptLoss: z.number().nullable(),
    difference: z.number().nullable().describe('|killed − resumed| loss at comparedStep.'),
    device: z.string(),
    passed: z
      .boolean()
      .describe(
        "The retried attempt started at the newest checkpoint, and its loss at comparedStep equals the killed one's (within 1e-6 relative).",
      ),
  })
  .describe('A training killed mid-run resumed from its checkpoint with the same loss.');
export type ResumeCheck = z.infer<typeof ResumeCheck>;

export const GpuCheckFailure = z.strictObject({
  step: z.string().describe('What failed: setup, machine, server, lora, resume, full, …'),
  error: z.string(),
});
export type GpuCheckFailure = z.infer<typeof GpuCheckFailure>;

export const GpuCheckReport = z
  .strictObject({
    reportVersion: z.literal(1),
    mode: z.enum(['gpu', 'cpu']).describe('`gpu`: the whole sample store on CUDA; `cpu`: tiny settings, to test the check itself.'),
    status: z.enum(['passed', 'failed']).describe('`failed` when any step failed (see `failures`); the script then exits 1.'),
    startedAt: z.string(),
    finishedAt: z.string(),
    wallSeconds: seconds.describe('The whole check after setup.'),
    stages: z
      .record(z.string(), seconds)
      .describe("Wall seconds of the check's own stages: setup (from the shell script), machine, server, lora, full."),
    machine: GpuCheckMachine.nullable(),
    baseModel: z.string().describe('model.base of both pipelines.'),
    pipelines: z.record(z.string(), z.string()).describe('The pipeline file each strategy ran.'),
    strategies: z.strictObject({ lora: GpuCheckStrategy.nullable(), full: GpuCheckStrategy.nullable() }),
    resume: ResumeCheck.nullable(),
    notes: z.array(z.string()).describe('What a reader of the figures must know.'),
    failures: z.array(GpuCheckFailure),
  })
  .describe('What `scripts/gpu-check.sh` measured (`gpu-check.json`).');
export type GpuCheckReport = z.infer<typeof GpuCheckReport>;
