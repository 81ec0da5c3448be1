/**
 * Sentence embeddings in Node from the embedder export (`python -m engine export-embedder`, layout in
 * engine/export_embedder.py): the vectors retrieval indexes and searches with, at training, evaluation
 * and serving alike.
 *
 * A text becomes `[CLS] tokens [SEP]` with the export's BERT WordPiece tokenizer (lower-casing, accents
 * stripped, as tokenizer.json's normalizer says), cut at the manifest's maxTokens as transformers cuts
 * it (the text's tokens first, the special tokens always kept). Texts are batched by length and padded
 * with an attention mask. The graph pools and normalises (mean over the mask, then unit length: the
 * engine's `mean_pool_normalize`, traced), so what it returns is the embedding: the same vectors as
 * engine/embedder.py's `embed`, within float rounding (the export checks 1e-5, the tests 1e-4).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import ort from 'onnxruntime-node';
import { z } from 'zod';
import { EmbedderManifest } from '../schemas/embedder';
import { INTRA_OP_THREADS } from './generation';

export const EMBEDDER_MANIFEST_FILE = 'embedder.json';
const EXPORT_AGAIN = 'run `python -m engine export-embedder --output DIR` again';
/** Texts per ONNX run: larger batches gain little on a CPU and pad more. */
export const DEFAULT_EMBED_BATCH = 32;

export interface Embedder {
  /** Length of every embedding (384 for all-MiniLM-L6-v2). */
  dims: number;
  manifest: EmbedderManifest;
  /** Token ids of a text as the model sees them: [CLS], at most maxTokens - 2 tokens, [SEP]. */
  tokenize(text: string): number[];
  /** A unit-length embedding per text, in the order given; batching never changes a vector beyond float rounding. */
  embed(texts: string[]): Promise<Float32Array[]>;
  /** Waits for a run in progress, then frees the model; later calls fail. */
  close(): Promise<void>;
}

export interface EmbedderOptions {
  /** Texts per ONNX run; DEFAULT_EMBED_BATCH by default. */
  batchSize?: number;
}

function readJson(dir: string, name: string): Record<string, unknown> {
  const file = path.join(dir, name);
  try {
    const value: unknown = JSON.parse(readFileSync(file, 'utf8'));
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
    throw new Error('not a JSON object');
  } catch (error) {
    throw new Error(`${file}: cannot read the embedder export's file (${(error as Error).message}); ${EXPORT_AGAIN}`);
  }
}

/** `embedder.json`, checked against its schema. */
export function readEmbedderManifest(dir: string): EmbedderManifest {
  const parsed = EmbedderManifest.safeParse(readJson(dir, EMBEDDER_MANIFEST_FILE));
  if (!parsed.success) {
    throw new Error(
      `${path.join(dir, EMBEDDER_MANIFEST_FILE)}: not what this version expects:\n${z.prettifyError(parsed.error)}\n${EXPORT_AGAIN}`,
    );
  }
  return parsed.data;
}

export async function loadEmbedder(dir: string, options: EmbedderOptions = {}): Promise<Embedder> {
  const batchSize = options.batchSize ?? DEFAULT_EMBED_BATCH;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batchSize: ${batchSize}; must be a whole number >= 1`);
  const manifest = readEmbedderManifest(dir);
  const [idsName, maskName] = manifest.inputs.map((input) => input.name) as [string, string];
  const outputName = manifest.outputs[0]!.name;
  const { dims, maxTokens, specialTokenIds } = manifest;

  // The Rust tokenizer lower-cases character by character; JavaScript's toLowerCase gives a word-final
  // capital sigma the final form (ς, another token). Lower-casing it beforehand gives what Rust gives.
  const tokenizerJson = readJson(dir, 'tokenizer.json');
  const tokenizer = new Tokenizer(tokenizerJson, readJson(dir, 'tokenizer_config.json'));
  const lowercases = (tokenizerJson.normalizer as { lowercase?: unknown } | null)?.lowercase === true;
  const tokenize = (text: string): number[] => {
    if (lowercases) text = text.replaceAll('Σ', 'σ');
    // Without the special tokens, so the cut keeps room for them (transformers' truncation does the same).
    const ids = text.length === 0 ? [] : tokenizer.encode(text, { add_special_tokens: false }).ids;
    return [specialTokenIds.cls, ...ids.slice(0, maxTokens - 2), specialTokenIds.sep];
  };
  const session = await ort.InferenceSession.create(path.join(dir, manifest.file), {
    executionProviders: ['cpu'],
    intraOpNumThreads: INTRA_OP_THREADS,
    logSeverityLevel: 3, // errors only
  });

  let closed = false;
  const running = new Set<Promise<unknown>>(); // runs in progress; close() waits for them
  const checkOpen = () => {
    if (closed) throw new Error(`the embedder of ${dir} is closed; load it again with loadEmbedder`);
  };

  /** One padded batch through the graph: a vector per id list. */
  async function runBatch(batch: number[][]): Promise<Float32Array[]> {
    const length = Math.max(...batch.map((ids) => ids.length));
    const inputIds = new BigInt64Array(batch.length * length).fill(BigInt(specialTokenIds.pad));
    const mask = new BigInt64Array(batch.length * length);
    batch.forEach((ids, row) => {
      for (let n = 0; n < ids.length; n++) {
        inputIds[row * length + n] = BigInt(ids[n]!);
        mask[row * length + n] = 1n;
      }
    });
    const shape = [batch.length, length];
    const run = session.run({ [idsName]: new ort.Tensor('int64', inputIds, shape), [maskName]: new ort.Tensor('int64', mask, shape) }, [
      outputName,
    ]);
    running.add(run);
    let output: ort.InferenceSession.ReturnType;
    try {
      output = await run;
    } finally {
      running.delete(run);
    }
    const data = output[outputName]!.data as Float32Array;
    return batch.map((_, row) => data.slice(row * dims, (row + 1) * dims));
  }

  async function embed(texts: string[]): Promise<Float32Array[]> {
    checkOpen();
    const ids = texts.map(tokenize);
    // Shortest first, so each batch pads little; vectors go back to the caller's order.
    const order = ids.map((_, n) => n).sort((a, b) => ids[a]!.length - ids[b]!.length || a - b);
    const vectors: Float32Array[] = new Array(texts.length);
    for (let start = 0; start < order.length; start += batchSize) {
      checkOpen();
      const chosen = order.slice(start, start + batchSize);
      const batchVectors = await runBatch(chosen.map((n) => ids[n]!));
      chosen.forEach((n, row) => (vectors[n] = batchVectors[row]!));
    }
    return vectors;
  }

  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    await Promise.allSettled(running);
    await session.release();
  }

  return { dims, manifest, tokenize, embed, close };
}
