/**
 * Grounding: a question with the known Q&A pairs retrieved for it, rendered into one text by the
 * templates the export records in `prompt_format.json` (written by `engine/prompts.py`), so a
 * grounded prompt at inference is, character for character, what the model was trained on.
 */
import type { KnownPair, PromptFormat } from '../schemas/engine';

export type { KnownPair };

const PLACEHOLDER = /\{(question|answer|pairs)\}/g;

/** Fills `{question}`, `{answer}` and `{pairs}` in one pass, so braces inside the values stay as they are. */
function fill(template: string, values: Partial<Record<'question' | 'answer' | 'pairs', string>>): string {
  return template.replace(PLACEHOLDER, (match, name: 'question' | 'answer' | 'pairs') => values[name] ?? match);
}

/** The question's text with its known pairs; the question alone without pairs. */
export function groundedQuestion(
  format: Pick<PromptFormat, 'grounding'>,
  question: string,
  pairs: readonly Pick<KnownPair, 'question' | 'answer'>[],
): string {
  if (pairs.length === 0) return question;
  const grounding = format.grounding;
  if (!grounding) throw new Error('this export has no grounding templates in prompt_format.json; re-run the export');
  const rendered = pairs.map((p) => fill(grounding.pairTemplate, { question: p.question, answer: p.answer })).join(grounding.pairSeparator);
  return fill(grounding.template, { pairs: rendered, question });
}
