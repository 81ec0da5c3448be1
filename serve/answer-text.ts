/**
 * The text of one answer as its tokens come: how much of it may be shown yet, and where a stop string
 * or a repeated sentence ends it. Shown text only ever grows, so a stream's chunks add up to the
 * answer's final text.
 *
 * An ending that the next tokens may still change or cut is held back until it is settled:
 * - an incomplete UTF-8 character: byte-level tokens split characters, and decoding renders the part
 *   it has as U+FFFD;
 * - the start of a stop string: it may complete, and then the answer is cut before it (as OpenAI's API
 *   does), so none of it may have been shown;
 * - the start of a text the tokenizer's cleanup rewrites (" ." becomes "."): a shown space could not be
 *   taken back;
 * - with stopOnRepetition, a sentence that may still turn out to repeat an earlier one, and the space
 *   before it (serve/repetition.ts): the answer would be cut before it.
 * Because shown text never ends with the start of a stop string, a stop string can only begin at or
 * after the end of the shown text: each step searches the new part alone.
 */
import { repeatedSentenceCut, repetitionHoldFrom } from './repetition';

/** Where the first of `stops` begins in `text` at or after `from`, or null. */
export function firstStop(text: string, stops: readonly string[], from: number): number | null {
  let first: number | null = null;
  for (const stop of stops) {
    const at = text.indexOf(stop, from);
    if (at >= 0 && (first === null || at < first)) first = at;
  }
  return first;
}

/** Length of the longest ending of `text` that is the start (not the whole) of one of `patterns`. */
export function heldBackLength(text: string, patterns: readonly string[]): number {
  let longest = 0;
  for (const pattern of patterns) {
    for (let length = Math.min(pattern.length - 1, text.length); length > longest; length--) {
      if (text.endsWith(pattern.slice(0, length))) {
        longest = length;
        break;
      }
    }
  }
  return longest;
}

export class AnswerText {
  /** The text shown so far: a stream's chunks joined, and the answer's text once finished. */
  shown = '';
  /** Where the first stop string begins in the answer's text, once one has appeared. */
  stopAt: number | null = null;
  /** Where the text was cut before a sentence that repeats an earlier one (stopOnRepetition), once it has been. */
  repeatAt: number | null = null;
  private readonly heldPatterns: readonly string[];

  constructor(
    private readonly stops: readonly string[],
    unsettledEndings: readonly string[],
    private readonly stopOnRepetition = false,
  ) {
    this.heldPatterns = [...stops, ...unsettledEndings];
  }

  /** Takes the whole decoded text so far; returns what it adds to the shown text. */
  update(text: string): string {
    const settled = text.replace(/\uFFFD+$/, '');
    // Decoding more tokens only appends (held-back endings aside). Should a decoder ever rewrite shown
    // text, nothing more is shown until the end, and stop strings are searched for everywhere.
    const appended = settled.startsWith(this.shown);
    const stopAt = firstStop(settled, this.stops, appended ? this.shown.length : 0);
    if (stopAt !== null) {
      this.stopAt = stopAt;
      return this.finish(settled.slice(0, stopAt));
    }
    const repeatAt = this.stopOnRepetition ? repeatedSentenceCut(settled, false) : null;
    if (repeatAt !== null) {
      this.repeatAt = repeatAt;
      return this.finish(settled.slice(0, repeatAt));
    }
    if (!appended) return '';
    let settledEnd = settled.length - heldBackLength(settled, this.heldPatterns);
    if (this.stopOnRepetition) settledEnd = Math.min(settledEnd, repetitionHoldFrom(settled));
    const end = Math.max(this.shown.length, settledEnd);
    const added = settled.slice(this.shown.length, end);
    this.shown += added;
    return added;
  }

  /**
   * The answer ended (an eos token or maxNewTokens): sets its final text, whose last sentence is now
   * complete, so with stopOnRepetition it is cut as well when it repeats an earlier one. Returns what it
   * adds to the shown text.
   */
  end(text: string): string {
    const repeatAt = this.stopOnRepetition ? repeatedSentenceCut(text, true) : null;
    if (repeatAt === null) return this.finish(text);
    this.repeatAt = repeatAt;
    return this.finish(text.slice(0, repeatAt));
  }

  /** Sets the answer's final text; returns what it adds to the shown text. */
  finish(text: string): string {
    const added = text.startsWith(this.shown) ? text.slice(this.shown.length) : '';
    this.shown = text;
    return added;
  }
}
