/**
 * The one decode loop behind `generate` and `stream` (serve/generation.ts), so both make the same tokens.
 *
 * It picks each row's next token from the model's logits (greedy or sampled, after the repetition
 * controls), ends rows at eos, stop strings, repeats, maxNewTokens or the model's positions, and yields
 * after every step, so a stream shows each token as it is made, and a consumer that stops listening (or an
 * aborted signal) ends it before the next model run. How the model is run for a step is the DecodeModel's
 * business (serve/decode-models.ts: decoder-only or encoder-decoder). The repetition controls change each
 * row's logits from that row's own answer tokens, so padding and batching never affect them.
 */
import { mulberry32 } from '../lib/seeded-random';
import { AnswerText } from './answer-text';
import { argmax, controlRepetition, greedyWithEnd, sample } from './sampling';
import type { PromptTokenizer } from './tokenizer';

export type FinishReason = 'stop' | 'length' | 'stop-string' | 'repetition' | 'cancelled';

export interface Generation {
  /** Generated token ids, without the eos token that ended the answer (a stop string's or a repeat's tokens are kept). */
  tokens: number[];
  /** Their text, cut before a stop string or a repeated sentence; when cancelled, the text shown so far. */
  text: string;
  /**
   * `stop`: an eos/end-of-turn token; `length`: maxNewTokens reached; `stop-string`: a stop string appeared;
   * `repetition` (stopOnRepetition): a sentence repeated an earlier one, and was cut, whether generation
   * stopped on it or the answer's last sentence (at eos or maxNewTokens) was the repeat.
   */
  finishReason: FinishReason;
}

/** One token of a stream, as it is made; the eos token that ends an answer has a chunk too. */
export interface StreamChunk {
  token: number;
  /** The text this token adds; '' while an ending is held back (see serve/answer-text.ts). */
  text: string;
}

/** Checked options (serve/generation.ts), with defaults filled in. */
export interface DecodeSettings {
  maxNewTokens: number;
  greedy: boolean;
  temperature: number;
  topP: number;
  seed: number;
  stop: string[];
  /** Repetition controls (serve/generation.ts GenerateOptions); absent: off (1, 0, false). */
  repetitionPenalty?: number;
  noRepeatNgramSize?: number;
  stopOnRepetition?: boolean;
  /** Greedy only: end an answer only when the end tokens together have at least this probability; absent: plain argmax. */
  endProbability?: number;
  signal?: AbortSignal;
  /** Decode the text after every token: for a stream's chunks, stop strings and repeated sentences. Otherwise once, at the end. */
  followText: boolean;
}

/**
 * A loaded export as the loop steps it; the one part of decoding that differs between decoder-only and
 * encoder-decoder models (serve/decode-models.ts has both).
 */
export interface DecodeModel {
  tokenizer: PromptTokenizer;
  /** Positions a prompt may take (GPT-2's n_positions; BART's encoder's); a longer one is refused. Null: unbounded. */
  promptPositions: number | null;
  /** The most tokens an answer to a prompt of this many tokens may have before the model's positions run out; null: unbounded. */
  answerRoom(promptLength: number): number | null;
  /** Starts a batch of prompts (token ids, one list per row); returns the function that steps it. */
  begin(promptIds: number[][]): DecodeStep;
}

/**
 * One model run for a batch: `null` the first time (the prompts), then the token each row took (a finished
 * row gets the pad id and its output is ignored, so the batch stays rectangular). Resolves to each row's
 * logits for its next token.
 */
export type DecodeStep = (tokens: number[] | null) => Promise<Float32Array[]>;

/** One answer being made: its tokens, its text, and why it ended. */
export class AnswerRow {
  readonly tokens: number[] = [];
  finishReason: FinishReason | null = null;
  private readonly text: AnswerText;
  private readonly eos: Set<number>;

  constructor(
    readonly promptIds: number[],
    private readonly tokenizer: PromptTokenizer,
    private readonly settings: DecodeSettings,
  ) {
    this.text = new AnswerText(settings.stop, tokenizer.unsettledEndings, settings.stopOnRepetition ?? false);
    this.eos = new Set(tokenizer.eosIds);
  }

  /** Takes the token the model made for this row; returns the chunk a stream shows for it. */
  accept(token: number): StreamChunk {
    if (this.eos.has(token)) return { token, text: this.finish('stop') };
    this.tokens.push(token);
    let added = '';
    if (this.settings.followText) {
      added = this.text.update(this.tokenizer.decode(this.tokens));
      if (this.text.stopAt !== null) this.finishReason = 'stop-string';
      else if (this.text.repeatAt !== null) this.finishReason = 'repetition';
    }
    if (this.finishReason === null && this.tokens.length >= this.settings.maxNewTokens) added += this.finish('length');
    return { token, text: added };
  }

  /** Ends the answer; returns the text that adds to what was shown. Cancelled: the text stays what was shown. */
  finish(reason: Exclude<FinishReason, 'stop-string' | 'repetition'>): string {
    this.finishReason = reason;
    if (reason !== 'cancelled') {
      const added = this.text.end(this.tokenizer.decode(this.tokens));
      if (this.text.repeatAt !== null) this.finishReason = 'repetition'; // its last sentence was a repeat
      return added;
    }
    // Not followed (a batch without stop strings): work out once what a stream would have shown by now.
    if (!this.settings.followText) this.text.update(this.tokenizer.decode(this.tokens));
    return '';
  }

  result(): Generation {
    if (this.finishReason === null) throw new Error('internal: result of an answer still being made');
    return { tokens: this.tokens, text: this.text.shown, finishReason: this.finishReason };
  }
}

/** Runs the rows to their end; yields each step's chunks, one per row still going, in row order. */
export async function* decodeSteps(
  model: DecodeModel,
  rows: AnswerRow[],
  settings: DecodeSettings,
): AsyncGenerator<Array<{ row: number; chunk: StreamChunk }>, void> {
  const { greedy, temperature, topP, signal, repetitionPenalty = 1, noRepeatNgramSize = 0, endProbability } = settings;
  const endIds = model.tokenizer.eosIds;
  const pickGreedy = endProbability === undefined ? argmax : (logits: Float32Array) => greedyWithEnd(logits, endIds, endProbability);
  const controlled = repetitionPenalty !== 1 || noRepeatNgramSize > 0;
  if (rows.length === 0) return;
  if (settings.maxNewTokens === 0 && !signal?.aborted) {
    for (const row of rows) row.finish('length');
    return;
  }
  // One draw per row per step, finished rows included: a seed gives the same tokens as it always has.
  const random = mulberry32(settings.seed).next;
  const padId = model.tokenizer.padId;

  const width = Math.max(...rows.map((row) => row.promptIds.length));
  const { promptPositions } = model;
  if (promptPositions !== null && width > promptPositions) {
    throw new Error(
      `prompt: ${width} tokens, more than the ${promptPositions} positions this model has; shorten the prompt or the conversation`,
    );
  }
  const answerRoom = rows.map((row) => model.answerRoom(row.promptIds.length));
  const step = model.begin(rows.map((row) => row.promptIds));
  let fed: number[] | null = null;

  while (!signal?.aborted) {
    const logits = await step(fed);
    if (signal?.aborted) break; // aborted while the step ran: its tokens come after the abort
    const next: number[] = [];
    const chunks: Array<{ row: number; chunk: StreamChunk }> = [];
    for (const [n, row] of rows.entries()) {
      if (row.finishReason !== null) {
        if (!greedy) random();
        next.push(padId); // finished rows keep stepping with a pad (output ignored) so the batch stays rectangular
        continue;
      }
      const modelLogits = logits[n]!;
      const rowLogits = controlled ? controlRepetition(modelLogits, row.tokens, repetitionPenalty, noRepeatNgramSize) : modelLogits;
      const token = greedy ? pickGreedy(rowLogits) : sample(rowLogits, temperature, topP, random);
      next.push(token);
      const chunk = row.accept(token);
      // The model's positions are used up: this token is the last one it can be fed.
      const room = answerRoom[n] ?? null;
      if (room !== null && row.finishReason === null && row.tokens.length >= room) chunk.text += row.finish('length');
      chunks.push({ row: n, chunk });
    }
    yield chunks;
    if (rows.every((row) => row.finishReason !== null)) return;
    fed = next;
  }
  for (const row of rows) if (row.finishReason === null) row.finish('cancelled');
}
