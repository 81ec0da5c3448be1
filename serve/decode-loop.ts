/**
 * The one decode loop behind `generate` and `stream` (serve/generation.ts), so both make the same tokens.
 *
 * It is the loop `engine/export.py` parity-checks against PyTorch, extended to batches: prompts are
 * padded on the LEFT so every row's next token comes from the last column; pads get attention mask 0
 * and positions count only real tokens. The first pass runs the whole padded prompt with an empty past;
 * each later step feeds one token per row and the `present.*` outputs back as `past_key_values.*`.
 * The loop yields after every step, so a stream shows each token as it is made, and a consumer that
 * stops listening (or an aborted signal) ends it before the next `session.run`. The repetition controls
 * change each row's logits from that row's own answer tokens, so padding and batching never affect them.
 */
import ort from 'onnxruntime-node';
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

/** What the loop needs of a loaded export. */
export interface DecodeModel {
  tokenizer: PromptTokenizer;
  /** `session.run`, refused once the generator is closed. */
  run(feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.ReturnType>;
  pastNames: string[];
  numKeyValueHeads: number;
  headDim: number;
  /** Positions the model has (GPT-2's n_positions): prompt and answer together fit in them; null when unbounded. */
  maxPositions: number | null;
}

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

function int64Tensor(values: number[], dims: number[]): ort.Tensor {
  return new ort.Tensor(
    'int64',
    BigInt64Array.from(values, (value) => BigInt(value)),
    dims,
  );
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
  const batch = rows.length;
  if (batch === 0) return;
  if (settings.maxNewTokens === 0 && !signal?.aborted) {
    for (const row of rows) row.finish('length');
    return;
  }
  // One draw per row per step, finished rows included: a seed gives the same tokens as it always has.
  const random = mulberry32(settings.seed).next;
  const padId = model.tokenizer.padId;

  // Left padding: every row's last column is its last prompt token.
  const width = Math.max(...rows.map((row) => row.promptIds.length));
  const { maxPositions } = model;
  if (maxPositions !== null && width > maxPositions) {
    throw new Error(
      `prompt: ${width} tokens, more than the ${maxPositions} positions this model has; shorten the prompt or the conversation`,
    );
  }
  const mask: number[][] = rows.map(({ promptIds }) => [...Array(width - promptIds.length).fill(0), ...promptIds.map(() => 1)]);
  let inputIds = rows.flatMap(({ promptIds }) => [...Array(width - promptIds.length).fill(padId), ...promptIds]);
  // Position = real tokens before this one; pads sit at 0 (masked out anyway).
  let positions = mask.flatMap((row) => {
    let seen = 0;
    return row.map((m) => Math.max(0, (seen += m) - 1));
  });
  let step = width;
  const emptyPast = new ort.Tensor('float32', new Float32Array(0), [batch, model.numKeyValueHeads, 0, model.headDim]);
  let past: Record<string, ort.Tensor> = Object.fromEntries(model.pastNames.map((name) => [name, emptyPast]));

  while (!signal?.aborted) {
    const outputs = await model.run({
      input_ids: int64Tensor(inputIds, [batch, step]),
      attention_mask: int64Tensor(mask.flat(), [batch, mask[0]!.length]),
      position_ids: int64Tensor(positions, [batch, step]),
      ...past,
    });
    if (signal?.aborted) break; // aborted while the step ran: its tokens come after the abort
    const logits = outputs.logits!;
    const vocab = logits.dims[2]!;
    const data = logits.data as Float32Array;
    const next: number[] = [];
    const chunks: Array<{ row: number; chunk: StreamChunk }> = [];
    for (const [n, row] of rows.entries()) {
      if (row.finishReason !== null) {
        if (!greedy) random();
        next.push(padId); // finished rows keep stepping with a pad (output ignored) so the batch stays rectangular
        continue;
      }
      const start = (n * step + step - 1) * vocab;
      const modelLogits = data.subarray(start, start + vocab);
      const rowLogits = controlled ? controlRepetition(modelLogits, row.tokens, repetitionPenalty, noRepeatNgramSize) : modelLogits;
      const token = greedy ? pickGreedy(rowLogits) : sample(rowLogits, temperature, topP, random);
      next.push(token);
      const chunk = row.accept(token);
      // The model's positions are used up: this token is the last one it can be fed.
      if (maxPositions !== null && row.finishReason === null && row.promptIds.length + row.tokens.length >= maxPositions) {
        chunk.text += row.finish('length');
      }
      chunks.push({ row: n, chunk });
    }
    yield chunks;
    if (rows.every((row) => row.finishReason !== null)) return;
    past = Object.fromEntries(model.pastNames.map((name) => [name, outputs[name.replace('past_key_values.', 'present.')] as ort.Tensor]));
    for (const row of mask) row.push(1);
    // A finished row keeps stepping with pads past its end; its position stays inside the model's (output ignored).
    const lastPosition = (maxPositions ?? Infinity) - 1;
    positions = mask.map((row) => Math.min(row.reduce((sum, m) => sum + m, 0) - 1, lastPosition));
    inputIds = next;
    step = 1;
  }
  for (const row of rows) if (row.finishReason === null) row.finish('cancelled');
}
