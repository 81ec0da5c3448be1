/**
 * Text generation from an exported model (`python -m engine export`) with ONNX Runtime and a KV cache:
 * the generator the chat server and the evaluation share.
 *
 * - `generate(prompts)`: a batch, padded; the evaluation's entry point.
 * - `stream(prompt)`: one conversation, a chunk per token as it is made; the chat server's.
 * Both run the same decode loop (serve/decode-loop.ts), so the same prompt and options give the same
 * tokens either way (a sampled batch draws for all its rows from one seed, so compare batches of one).
 * Decoder-only exports (GPT-2, Llama, ...) and encoder-decoder ones (T5, BART) differ only in how the
 * loop runs the model (serve/decode-models.ts).
 */
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { AnswerRow, decodeSteps, type DecodeSettings, type Generation, type StreamChunk } from './decode-loop';
import { decoderOnlyModel, encoderDecoderModel, type RunSession } from './decode-models';
import { readExportJson, readExportManifest } from './export-files';
import { loadPromptTokenizer, type Prompt, type PromptTokenizer } from './tokenizer';

export type { FinishReason, Generation, StreamChunk } from './decode-loop';
export type { ChatMessage, Prompt } from './tokenizer';

export interface GenerateOptions {
  /** Most tokens to generate per answer; an answer stops earlier at an eos token. */
  maxNewTokens: number;
  /** Argmax decoding (the default, as in the export's parity check); false samples. */
  greedy?: boolean;
  /** Sampling only: logits are divided by it; 1 by default. */
  temperature?: number;
  /** Sampling only: keep the fewest most likely tokens whose probabilities sum to at least topP; 1 by default. */
  topP?: number;
  /** Sampling only: seed of the PRNG, so the same seed gives the same text; 0 by default. */
  seed?: number;
  /** An answer ends when its text contains one of these; its text is cut before it. None by default. */
  stop?: string[];
  /**
   * Greedy and sampled alike: the logit of every token already in the answer (the prompt is not counted)
   * is divided by this, or multiplied when negative, before the token is picked, as transformers'
   * repetition_penalty does. At least 1; 1 (the default) turns it off.
   */
  repetitionPenalty?: number;
  /**
   * Greedy and sampled alike: a token that would repeat an n-gram of this many tokens already in the
   * answer (the prompt is not counted) is never picked, as transformers' no_repeat_ngram_size does;
   * applied after the penalty. 0 (the default) turns it off.
   */
  noRepeatNgramSize?: number;
  /**
   * An answer ends as soon as a sentence it has just completed repeats an earlier sentence of itself,
   * compared lower-cased without punctuation (serve/repetition.ts says what a sentence is); its text is cut
   * before the repeat, its tokens kept up to the one that completed it, and it ends with finishReason
   * `repetition`. False by default.
   */
  stopOnRepetition?: boolean;
  /**
   * Greedy only: an answer ends only when the end-of-answer tokens together have at least this
   * probability (after the repetition controls); until then the likeliest other token is picked. Plain
   * argmax (absent, the default here) ends at any point where one end token beats every single word,
   * which cuts answers short; 0.5 ends when ending is more likely than going on. In (0, 1).
   */
  endProbability?: number;
  /** Aborting it ends generation before the next decode step; answers end with finishReason `cancelled`. */
  signal?: AbortSignal;
}

export interface Generator {
  tokenizer: PromptTokenizer;
  /**
   * Positions the model has (null: unbounded). Decoder-only: a prompt and its answer together fit in them;
   * encoder-decoder: a prompt fits in them, and so does its answer (BART; T5 has no limit).
   */
  maxPositions: number | null;
  /** Answers for a batch of prompts (a string is one user turn). */
  generate(prompts: Prompt[], options: GenerateOptions): Promise<Generation[]>;
  /** One answer, a chunk per token as it is made; returns the whole answer. Leaving the loop early ends it. */
  stream(prompt: Prompt, options: GenerateOptions): AsyncGenerator<StreamChunk, Generation>;
  /** Waits for a decode step in progress, then frees the model; later calls fail. */
  close(): Promise<void>;
}

/** Threads ONNX Runtime uses within one run: the CPUs this process may use, at most 4 (more rarely pay off at batch sizes this small). */
export const INTRA_OP_THREADS = Math.min(4, os.availableParallelism());

/** Every problem with the options at once, or the settings the loop runs with. */
function checkOptions(options: GenerateOptions, stream: boolean): DecodeSettings {
  const { maxNewTokens, greedy = true, temperature = 1, topP = 1, seed = 0, stop = [], signal } = options;
  const { repetitionPenalty = 1, noRepeatNgramSize = 0, stopOnRepetition = false, endProbability } = options;
  const problems: string[] = [];
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) problems.push(`maxNewTokens: ${maxNewTokens}; must be an integer >= 0`);
  if (!greedy && !(temperature > 0)) problems.push(`temperature: ${temperature}; must be above 0 when sampling`);
  if (!greedy && !(topP > 0 && topP <= 1)) problems.push(`topP: ${topP}; must be in (0, 1]`);
  if (!Array.isArray(stop) || stop.some((text) => typeof text !== 'string')) problems.push('stop: must be a list of strings');
  else if (stop.includes('')) problems.push('stop: an empty stop string would end every answer before it begins; remove it');
  if (typeof repetitionPenalty !== 'number' || !Number.isFinite(repetitionPenalty) || repetitionPenalty < 1) {
    problems.push(`repetitionPenalty: ${repetitionPenalty}; must be a number >= 1 (1 turns it off; below 1 would favour repeats)`);
  }
  if (!Number.isInteger(noRepeatNgramSize) || noRepeatNgramSize < 0) {
    problems.push(`noRepeatNgramSize: ${noRepeatNgramSize}; must be an integer >= 0 (0 turns it off)`);
  }
  if (typeof stopOnRepetition !== 'boolean') problems.push(`stopOnRepetition: ${String(stopOnRepetition)}; must be true or false`);
  if (endProbability !== undefined && !(typeof endProbability === 'number' && endProbability > 0 && endProbability < 1)) {
    problems.push(`endProbability: ${String(endProbability)}; must be a number in (0, 1), or absent for plain argmax`);
  }
  if (problems.length > 0) throw new Error(problems.join('\n'));
  return {
    maxNewTokens,
    greedy,
    temperature,
    topP,
    seed,
    stop,
    repetitionPenalty,
    noRepeatNgramSize,
    stopOnRepetition,
    endProbability,
    signal,
    // Stop strings and repeated sentences are found in the text as it is made.
    followText: stream || stop.length > 0 || stopOnRepetition,
  };
}

export async function loadGenerator(exportDir: string): Promise<Generator> {
  const manifest = readExportManifest(exportDir);
  const tokenizer = loadPromptTokenizer(exportDir, manifest);
  const encoderDecoder = manifest.architecture === 'encoder-decoder';
  if (encoderDecoder && (manifest.encoderFile === null || manifest.decoderStartTokenId === null)) {
    throw new Error(
      `${path.join(exportDir, 'export.json')}: an encoder-decoder export without encoderFile or decoderStartTokenId; re-run the export`,
    );
  }

  let closed = false;
  const sessions: ort.InferenceSession[] = [];
  const running = new Set<Promise<unknown>>(); // model runs in progress; close() waits for them
  const checkOpen = () => {
    if (closed) throw new Error(`the generator of ${exportDir} is closed; load it again with loadGenerator`);
  };
  async function openSession(file: string): Promise<RunSession> {
    const session = await ort.InferenceSession.create(path.join(exportDir, file), {
      executionProviders: ['cpu'],
      intraOpNumThreads: INTRA_OP_THREADS,
      logSeverityLevel: 3, // errors only: ORT warns about unused initializers of tied weights
    });
    sessions.push(session);
    return async (feeds) => {
      checkOpen();
      const run = session.run(feeds);
      running.add(run);
      try {
        return await run;
      } finally {
        running.delete(run);
      }
    };
  }

  // The model's positions (config.json beside the export): GPT-2 has n_positions (1024, a tiny one far
  // fewer), Llama max_position_embeddings; BART max_position_embeddings; T5 none (relative positions).
  const config = readExportJson(exportDir, 'config.json');
  const text = (config.text_config ?? config) as Record<string, unknown>;
  const positions = encoderDecoder ? text.max_position_embeddings : (text.n_positions ?? text.max_position_embeddings);
  const maxPositions = typeof positions === 'number' ? positions : null;
  const model = encoderDecoder
    ? encoderDecoderModel(
        await openSession(manifest.encoderFile!),
        await openSession(manifest.file),
        tokenizer,
        manifest,
        manifest.decoderStartTokenId!,
        maxPositions,
      )
    : decoderOnlyModel(await openSession(manifest.file), tokenizer, manifest, maxPositions);

  async function generate(prompts: Prompt[], options: GenerateOptions): Promise<Generation[]> {
    checkOpen();
    const settings = checkOptions(options, false);
    const rows = prompts.map((prompt) => new AnswerRow(tokenizer.encodePrompt(prompt), tokenizer, settings));
    for await (const _ of decodeSteps(model, rows, settings));
    return rows.map((row) => row.result());
  }

  async function* stream(prompt: Prompt, options: GenerateOptions): AsyncGenerator<StreamChunk, Generation> {
    checkOpen();
    const settings = checkOptions(options, true);
    const row = new AnswerRow(tokenizer.encodePrompt(prompt), tokenizer, settings);
    for await (const step of decodeSteps(model, [row], settings)) {
      for (const { chunk } of step) yield chunk;
    }
    return row.result();
  }

  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    await Promise.allSettled(running);
    for (const session of sessions) await session.release();
  }

  return { tokenizer, maxPositions: model.promptPositions, generate, stream, close };
}
