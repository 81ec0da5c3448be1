/**
 * Text generation from an exported model (`python -m engine export`) with ONNX Runtime and a KV cache.
 *
 * The loop is the one `engine/export.py` parity-checks against PyTorch, extended to batches: prompts
 * are padded on the LEFT so every row's next token comes from the last column; pads get attention
 * mask 0 and positions count only real tokens. The first pass runs the whole padded prompt with an
 * empty past; each later step feeds one token per row and the `present.*` outputs back as
 * `past_key_values.*`.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { loadPromptTokenizer, type PromptTokenizer } from './tokenizer';

export interface GenerateOptions {
  /** Most tokens to generate per question; a row stops earlier at an eos token. */
  maxNewTokens: number;
  /** Argmax decoding (the default, as in the export's parity check); false samples. */
  greedy?: boolean;
  /** Sampling only: logits are divided by it; 1 by default. */
  temperature?: number;
  /** Sampling only: keep the fewest most likely tokens whose probabilities sum to at least topP; 1 by default. */
  topP?: number;
  /** Sampling only: seed of the PRNG, so the same seed gives the same text; 0 by default. */
  seed?: number;
}

export interface Generation {
  /** Generated token ids, without the eos token that ended the row. */
  tokens: number[];
  text: string;
}

export interface Generator {
  tokenizer: PromptTokenizer;
  generate(questions: string[], options: GenerateOptions): Promise<Generation[]>;
  close(): Promise<void>;
}

/** The manifest fields that give the shapes of past_key_values. */
interface CacheShape {
  numLayers: number;
  numKeyValueHeads: number;
  headDim: number;
}

/** mulberry32: a small seeded PRNG with uniform floats in [0, 1); enough for sampling tokens. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Threads ONNX Runtime uses within one run: the CPUs this process may use, at most 4 (more rarely pay off at batch sizes this small). */
export const INTRA_OP_THREADS = Math.min(4, os.availableParallelism());

function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

/** Temperature, then top-p (nucleus) sampling over the renormalized kept tokens. */
function sample(logits: Float32Array, temperature: number, topP: number, random: () => number): number {
  const max = logits[argmax(logits)]!;
  const weights = new Float64Array(logits.length);
  let total = 0;
  for (let id = 0; id < logits.length; id++) total += weights[id] = Math.exp((logits[id]! - max) / temperature);
  // The nucleus is every token at least as likely as the cutoff weight. A numeric sort of the weights
  // alone finds it (about 9 ms for 49k tokens, against 60 ms for sorting ids with a comparator).
  const sorted = weights.slice().sort().reverse();
  let cutoff = sorted[0]!;
  for (let n = 0, cumulative = 0; n < sorted.length && cumulative < topP * total; n++) {
    cutoff = sorted[n]!;
    cumulative += cutoff;
  }
  let keptWeight = 0;
  for (const weight of weights) if (weight >= cutoff) keptWeight += weight;
  let threshold = random() * keptWeight;
  let last = 0;
  for (let id = 0; id < weights.length; id++) {
    if (weights[id]! < cutoff) continue;
    last = id;
    threshold -= weights[id]!;
    if (threshold < 0) return id;
  }
  return last; // rounding left a sliver of threshold: the last kept token
}

function int64Tensor(values: number[], dims: number[]): ort.Tensor {
  return new ort.Tensor(
    'int64',
    BigInt64Array.from(values, (value) => BigInt(value)),
    dims,
  );
}

export async function loadGenerator(exportDir: string): Promise<Generator> {
  const manifest = JSON.parse(readFileSync(path.join(exportDir, 'export.json'), 'utf8')) as CacheShape & { file?: string };
  const tokenizer = loadPromptTokenizer(exportDir);
  const session = await ort.InferenceSession.create(path.join(exportDir, manifest.file ?? 'model.onnx'), {
    executionProviders: ['cpu'],
    intraOpNumThreads: INTRA_OP_THREADS,
    logSeverityLevel: 3, // errors only: ORT warns about unused initializers of tied weights
  });
  const pastNames: string[] = [];
  for (let layer = 0; layer < manifest.numLayers; layer++) {
    pastNames.push(`past_key_values.${layer}.key`, `past_key_values.${layer}.value`);
  }
  const eos = new Set(tokenizer.eosIds);

  async function generate(questions: string[], options: GenerateOptions): Promise<Generation[]> {
    const { maxNewTokens, greedy = true, temperature = 1, topP = 1, seed = 0 } = options;
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) throw new Error(`maxNewTokens: ${maxNewTokens}; must be an integer >= 0`);
    if (!greedy && !(temperature > 0)) throw new Error(`temperature: ${temperature}; must be above 0 when sampling`);
    if (!greedy && !(topP > 0 && topP <= 1)) throw new Error(`topP: ${topP}; must be in (0, 1]`);
    const batch = questions.length;
    const generated: number[][] = questions.map(() => []);
    if (batch === 0 || maxNewTokens === 0) return generated.map(() => ({ tokens: [], text: '' }));
    const random = seededRandom(seed);

    // Left padding: every row's last column is its last prompt token.
    const prompts = questions.map((question) => tokenizer.encodePrompt(question));
    const width = Math.max(...prompts.map((ids) => ids.length));
    const mask: number[][] = prompts.map((ids) => [...Array(width - ids.length).fill(0), ...ids.map(() => 1)]);
    let inputIds = prompts.flatMap((ids) => [...Array(width - ids.length).fill(tokenizer.padId), ...ids]);
    // Position = real tokens before this one; pads sit at 0 (masked out anyway).
    let positions = mask.flatMap((row) => {
      let seen = 0;
      return row.map((m) => Math.max(0, (seen += m) - 1));
    });
    let step = width;
    const emptyPast = new ort.Tensor('float32', new Float32Array(0), [batch, manifest.numKeyValueHeads, 0, manifest.headDim]);
    let past: Record<string, ort.Tensor> = Object.fromEntries(pastNames.map((name) => [name, emptyPast]));
    const finished = questions.map(() => false);

    while (true) {
      const outputs = await session.run({
        input_ids: int64Tensor(inputIds, [batch, step]),
        attention_mask: int64Tensor(mask.flat(), [batch, mask[0]!.length]),
        position_ids: int64Tensor(positions, [batch, step]),
        ...past,
      });
      const logits = outputs.logits!;
      const vocab = logits.dims[2]!;
      const data = logits.data as Float32Array;
      const next: number[] = [];
      for (let row = 0; row < batch; row++) {
        const start = (row * step + step - 1) * vocab;
        const rowLogits = data.subarray(start, start + vocab);
        const token = greedy ? argmax(rowLogits) : sample(rowLogits, temperature, topP, random);
        next.push(finished[row] ? tokenizer.padId : token);
        if (finished[row]) continue;
        if (eos.has(token)) finished[row] = true;
        else generated[row]!.push(token);
        if (generated[row]!.length >= maxNewTokens) finished[row] = true;
      }
      if (finished.every(Boolean)) break;
      past = Object.fromEntries(pastNames.map((name) => [name, outputs[name.replace('past_key_values.', 'present.')]!]));
      // Finished rows keep stepping with a pad (their output is ignored) so the batch stays rectangular.
      for (const row of mask) row.push(1);
      positions = mask.map((row) => row.reduce((sum, m) => sum + m, 0) - 1);
      inputIds = next;
      step = 1;
    }
    return generated.map((tokens) => ({ tokens, text: tokenizer.decode(tokens) }));
  }

  return { tokenizer, generate, close: () => session.release() };
}
