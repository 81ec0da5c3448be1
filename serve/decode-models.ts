/**
 * The two ways an export is run for the decode loop (DecodeModel in serve/decode-loop.ts), one per
 * `architecture` in export.json; both are the loops `engine/export.py` parity-checks against PyTorch,
 * extended to batches.
 *
 * - decoder-only (`model.onnx`): prompts are padded on the LEFT so every row's next token comes from the
 *   last column; pads get attention mask 0 and positions count only real tokens. The first run takes the
 *   whole padded prompt with an empty past; each later one feeds one token per row and the `present.*`
 *   outputs back as `past_key_values.*`.
 * - encoder-decoder (`encoder_model.onnx` and `decoder_model.onnx`: T5, BART): the encoder runs once, on
 *   prompts padded on the RIGHT (mask 0); its cross-attention keys and values (`present.{i}.encoder.*`) go
 *   unchanged to every decoder run as `past_key_values.{i}.encoder.*`. Every row's decoder starts at
 *   decoderStartTokenId with an empty self-attention past and takes one token per run, all rows together,
 *   so the decoder needs no mask and no positions of its own.
 */
import ort from 'onnxruntime-node';
import type { DecodeModel, DecodeStep } from './decode-loop';
import type { PromptTokenizer } from './tokenizer';

/** `session.run` of one ONNX file, refused once the generator is closed (serve/generation.ts). */
export type RunSession = (feeds: Record<string, ort.Tensor>) => Promise<ort.InferenceSession.ReturnType>;

/** The decoder's KV cache, from export.json. */
export interface CacheShape {
  numLayers: number;
  numKeyValueHeads: number;
  headDim: number;
}

function int64Tensor(values: number[], dims: number[]): ort.Tensor {
  return new ort.Tensor(
    'int64',
    BigInt64Array.from(values, (value) => BigInt(value)),
    dims,
  );
}

/** Each row's logits for its next token: the last column of `logits` [batch, columns, vocab]. */
function lastColumnLogits(logits: ort.Tensor): Float32Array[] {
  const [batch, columns, vocab] = logits.dims as [number, number, number];
  const data = logits.data as Float32Array;
  return Array.from({ length: batch }, (_, n) => {
    const start = (n * columns + columns - 1) * vocab;
    return data.subarray(start, start + vocab);
  });
}

/** A past of length 0 for each name: what the first run attends to. */
function emptyPast(names: string[], batch: number, cache: CacheShape): Record<string, ort.Tensor> {
  const empty = new ort.Tensor('float32', new Float32Array(0), [batch, cache.numKeyValueHeads, 0, cache.headDim]);
  return Object.fromEntries(names.map((name) => [name, empty]));
}

/** `past_key_values.{prefix}key` and `.value` for every layer, `prefix` being e.g. `decoder.`. */
function pastNames(cache: CacheShape, prefix = ''): string[] {
  return Array.from({ length: cache.numLayers }, (_, layer) => [
    `past_key_values.${layer}.${prefix}key`,
    `past_key_values.${layer}.${prefix}value`,
  ]).flat();
}

/** The outputs that feed the next run's inputs `names`: `present.*` for `past_key_values.*`. */
function presentAsPast(outputs: ort.InferenceSession.ReturnType, names: string[]): Record<string, ort.Tensor> {
  return Object.fromEntries(names.map((name) => [name, outputs[name.replace('past_key_values.', 'present.')] as ort.Tensor]));
}

/** `maxPositions`: GPT-2's n_positions; prompt and answer together fit in them. */
export function decoderOnlyModel(run: RunSession, tokenizer: PromptTokenizer, cache: CacheShape, maxPositions: number | null): DecodeModel {
  const names = pastNames(cache);
  return {
    tokenizer,
    promptPositions: maxPositions,
    answerRoom: (promptLength) => (maxPositions === null ? null : maxPositions - promptLength),
    begin(promptIds: number[][]): DecodeStep {
      const batch = promptIds.length;
      const width = Math.max(...promptIds.map((ids) => ids.length));
      const mask: number[][] = promptIds.map((ids) => [...Array(width - ids.length).fill(0), ...ids.map(() => 1)]);
      let inputIds = promptIds.flatMap((ids) => [...Array(width - ids.length).fill(tokenizer.padId), ...ids]);
      // Position = real tokens before this one; pads sit at 0 (masked out anyway).
      let positions = mask.flatMap((row) => {
        let seen = 0;
        return row.map((m) => Math.max(0, (seen += m) - 1));
      });
      let columns = width;
      let past = emptyPast(names, batch, cache);
      return async (tokens) => {
        if (tokens !== null) {
          for (const row of mask) row.push(1);
          // A finished row keeps stepping with pads past its end; its position stays inside the model's (output ignored).
          const lastPosition = (maxPositions ?? Infinity) - 1;
          positions = mask.map((row) => Math.min(row.reduce((sum, m) => sum + m, 0) - 1, lastPosition));
          inputIds = tokens;
          columns = 1;
        }
        const outputs = await run({
          input_ids: int64Tensor(inputIds, [batch, columns]),
          attention_mask: int64Tensor(mask.flat(), [batch, mask[0]!.length]),
          position_ids: int64Tensor(positions, [batch, columns]),
          ...past,
        });
        past = presentAsPast(outputs, names);
        return lastColumnLogits(outputs.logits!);
      };
    },
  };
}

/**
 * `maxPositions`: BART's max_position_embeddings, which its encoder and decoder each have: a prompt fits
 * the encoder's, the start token and the answer the decoder's. Null for T5, whose relative positions have no end.
 */
export function encoderDecoderModel(
  runEncoder: RunSession,
  runDecoder: RunSession,
  tokenizer: PromptTokenizer,
  cache: CacheShape,
  decoderStartTokenId: number,
  maxPositions: number | null,
): DecodeModel {
  const selfNames = pastNames(cache, 'decoder.');
  const crossNames = pastNames(cache, 'encoder.');
  return {
    tokenizer,
    promptPositions: maxPositions,
    answerRoom: () => (maxPositions === null ? null : maxPositions - 1),
    begin(promptIds: number[][]): DecodeStep {
      const batch = promptIds.length;
      const width = Math.max(...promptIds.map((ids) => ids.length));
      const padding = (ids: number[]) => Array<number>(width - ids.length);
      const inputIds = int64Tensor(
        promptIds.flatMap((ids) => [...ids, ...padding(ids).fill(tokenizer.padId)]),
        [batch, width],
      );
      const mask = int64Tensor(
        promptIds.flatMap((ids) => [...ids.map(() => 1), ...padding(ids).fill(0)]),
        [batch, width],
      );
      let cross: Record<string, ort.Tensor> = {};
      let past = emptyPast(selfNames, batch, cache);
      return async (tokens) => {
        if (tokens === null) cross = presentAsPast(await runEncoder({ input_ids: inputIds, attention_mask: mask }), crossNames);
        const outputs = await runDecoder({
          input_ids: int64Tensor(tokens ?? Array<number>(batch).fill(decoderStartTokenId), [batch, 1]),
          encoder_attention_mask: mask,
          ...past,
          ...cross,
        });
        past = presentAsPast(outputs, selfNames);
        return lastColumnLogits(outputs.logits!);
      };
    },
  };
}
