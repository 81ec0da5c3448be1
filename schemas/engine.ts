/**
 * The contract between the TypeScript activities and the Python engine: the spec a command reads
 * and the JSON-lines events it writes. The engine checks its input against the JSON Schema emitted
 * from these definitions (`schemas/json/train-spec.schema.json`).
 */
import { z } from 'zod';
import { ModelSection, TrainingSection } from './config';

export const TrainSpec = z
  .strictObject({
    model: ModelSection,
    training: TrainingSection.omit({ activity: true }),
    data: z.strictObject({
      train: z.string().describe('Arrow IPC file with the training split.'),
      validation: z.string().describe('Arrow IPC file with the validation split.'),
    }),
    outputDir: z.string().describe('Folder the engine writes checkpoints and the final artifact into.'),
    resumeFrom: z.string().optional().describe('Absolute path of a checkpoint folder to continue from exactly.'),
  })
  .describe('Input of `python -m engine train --spec SPEC.json`.');
export type TrainSpec = z.infer<typeof TrainSpec>;

/**
 * One line the engine prints on stdout. Unknown lines are logged, never parsed as events. An
 * interrupted run (SIGTERM or SIGINT) ends with a `checkpoint` event and exit code 130, no `error`.
 */
export const EngineEvent = z.discriminatedUnion('event', [
  z.strictObject({
    event: z.literal('start'),
    step: z.number().int().describe("The step training starts from: 0, or the resumed checkpoint's step."),
    totalSteps: z.number().int(),
    device: z.string(),
    trainableParameters: z.number().int(),
    resumedFrom: z.string().nullable(),
  }),
  z.strictObject({
    event: z.literal('step'),
    step: z.number().int(),
    loss: z.number(),
    learningRate: z.number(),
    tokensPerSecond: z.number().describe('Non-padding tokens per second over the step.'),
  }),
  z.strictObject({ event: z.literal('eval'), step: z.number().int(), validationLoss: z.number() }),
  z.strictObject({ event: z.literal('checkpoint'), step: z.number().int(), path: z.string() }),
  z.strictObject({
    event: z.literal('done'),
    step: z.number().int(),
    outputDir: z.string().describe("The spec's outputDir; the artifact is its `final/` folder."),
    metrics: z
      .record(z.string(), z.number().nullable())
      .describe(
        'initialValidationLoss, finalValidationLoss (of the weights in final/, the best ones), bestValidationLoss, bestStep, ' +
          'lastValidationLoss, steps, totalSteps, stoppedEarly (0/1), trainRows, validationRows, trainableParameters, ' +
          'trainTokens, trainSeconds, tokensPerSecond, wallSeconds.',
      ),
  }),
  z.strictObject({
    event: z.literal('error'),
    kind: z.enum(['config', 'data', 'parity', 'crash']),
    message: z.string(),
  }),
]);
export type EngineEvent = z.infer<typeof EngineEvent>;

/**
 * Engine exit codes: config and data errors are the user's to fix; a parity failure (ONNX and
 * PyTorch disagree) is deterministic; none of those is retried. Anything else is a crash.
 */
export const EngineExit = { ok: 0, crash: 1, config: 2, data: 3, parity: 4, interrupted: 130 } as const;
