/**
 * The spec `python -m engine train --spec SPEC.json` reads. The engine checks it against the JSON
 * Schema emitted from here (`schemas/json/train-spec.schema.json`) and takes its defaults from it.
 */
import { z } from 'zod';
import { ModelSection, TrainingSection } from './config';

export const TrainSpec = z
  .strictObject({
    // The engine adds no system prompt of its own: the pipeline passes its resolved one (or none).
    model: ModelSection.extend({ systemPrompt: z.string().optional().describe('System prompt placed before every question.') }),
    training: TrainingSection.omit({ activity: true, grounding: true, distributed: true }),
    data: z.strictObject({
      train: z.string().describe('Arrow IPC file with the training split.'),
      validation: z.string().describe('Arrow IPC file with the validation split.'),
      contexts: z
        .string()
        .optional()
        .describe(
          'Grounding: JSON lines `{"id", "context": [{"id", "question", "answer"}]}` with the known pairs each training and ' +
            'validation row is prompted with; rows are joined by id.',
        ),
    }),
    sources: z
      .strictObject({
        model: z.string().describe("sha256 of the base model's weights; a hub model's id and revision."),
        train: z.string().describe('sha256 of the training split.'),
        validation: z.string().describe('sha256 of the validation split.'),
        contexts: z.string().optional().describe('sha256 of the grounding contexts.'),
      })
      .optional()
      .describe(
        'What the model and data files are, by content. When a checkpoint and the spec resuming it both have sources, ' +
          'resuming compares these instead of the paths, which differ between machines.',
      ),
    outputDir: z
      .string()
      .describe('Folder the engine writes checkpoints and the final artifact into; kept between runs of the same budget.'),
    resumeFrom: z.string().optional().describe('Absolute path of a checkpoint folder to continue from exactly.'),
    stopAtStep: z
      .number()
      .int()
      .positive()
      .optional()
      .describe(
        'Pause at this optimizer step (a rung) inside the budget: checkpoint, evaluate, write final/ and exit. ' +
          'The schedule still spans the whole budget, so continuing later ends with the same weights as a straight run.',
      ),
  })
  .describe('Input of `python -m engine train --spec SPEC.json`.');
export type TrainSpec = z.infer<typeof TrainSpec>;
