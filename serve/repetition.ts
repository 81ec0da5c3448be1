/**
 * The sentence rule of `stopOnRepetition`: an answer ends as soon as a sentence it has just completed
 * repeats an earlier sentence of the same answer ("I don't know. I don't know. ..."), and its text is cut
 * before the repeat. `engine/decoding.py` implements the very same rule for the PyTorch reference, and
 * `engine/score.py` counts answers it catches; keep the three in step.
 *
 * A sentence ends at a run of `.`, `!` or `?` followed by whitespace, or at a line break; the end of the
 * answer ends its last sentence. The whitespace must have come, so "4.5" or "e.g." mid-word never ends
 * one; closing quotes after the stop are not handled (the sentence then runs on). Sentences are compared
 * normalised: lower-cased, punctuation (Unicode P*) removed, whitespace collapsed and trimmed; one that
 * normalises to nothing (a lone "...") never counts as a repeat.
 *
 * The cut falls right after the end mark of the sentence before the repeat, so the whitespace between
 * them goes too. Whitespace is spelled out (not `\s`), because JavaScript and Python disagree on a few
 * characters of `\s` and the two sides must split the same text the same way.
 */

const WHITESPACE = '[\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
/** The end of a sentence: its end marks (group 1) and the whitespace after them, or a line break with the whitespace around it. */
const SENTENCE_END = new RegExp(`([.!?]+)${WHITESPACE}+|${WHITESPACE}*\\n${WHITESPACE}*`, 'gu');
const WHITESPACE_RUN = new RegExp(`${WHITESPACE}+`, 'gu');
const PUNCTUATION = /\p{P}/gu;

/** A sentence as compared, and where the text is cut if it turns out to be a repeat. */
interface Sentence {
  key: string;
  /** Just after the end mark of the sentence before it (0 for the first). */
  cutBefore: number;
}

export function normalisedSentence(text: string): string {
  return text.toLowerCase().replace(PUNCTUATION, '').replace(WHITESPACE_RUN, ' ').replace(/^ | $/g, '');
}

/** The text's complete sentences, and the open one after them (possibly empty). */
function splitSentences(text: string): { complete: Sentence[]; open: Sentence } {
  const complete: Sentence[] = [];
  let start = 0;
  let cutBefore = 0;
  for (const end of text.matchAll(SENTENCE_END)) {
    complete.push({ key: normalisedSentence(text.slice(start, end.index)), cutBefore });
    cutBefore = end.index + (end[1]?.length ?? 0);
    start = end.index + end[0].length;
  }
  return { complete, open: { key: normalisedSentence(text.slice(start)), cutBefore } };
}

/**
 * Where `text` is cut because one of its sentences repeats an earlier one: before the first such
 * sentence; null when none does. `ended`: the answer is over, so its last sentence is complete too.
 */
export function repeatedSentenceCut(text: string, ended: boolean): number | null {
  const { complete, open } = splitSentences(text);
  const seen = new Set<string>();
  for (const sentence of ended ? [...complete, open] : complete) {
    if (sentence.key === '') continue;
    if (seen.has(sentence.key)) return sentence.cutBefore;
    seen.add(sentence.key);
  }
  return null;
}

/**
 * How much of `text` a stream may show: all of it, unless the open sentence could still turn out to
 * repeat an earlier one (its normalised text so far begins one of theirs); then only up to where the
 * cut would fall. Normalising a longer text only appends to the shorter one's result, so a sentence
 * whose start matches no earlier sentence can never become a repeat, and shown text is never cut.
 */
export function repetitionHoldFrom(text: string): number {
  const { complete, open } = splitSentences(text);
  const mayRepeat = complete.some((sentence) => sentence.key !== '' && sentence.key.startsWith(open.key));
  return mayRepeat ? open.cutBefore : text.length;
}
