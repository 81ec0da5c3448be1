/**
 * The sentence embedder's export (`python -m engine export-embedder`, engine/export_embedder.py): its
 * manifest `embedder.json`, which serve/embedder.ts reads, and the metrics of its `done` event.
 */
import { z } from 'zod';

const count = z.number().int().min(0);

const TensorSpec = z.strictObject({ name: z.string(), shape: z.array(z.union([z.string(), z.number().int()])) });

/** `embedder.json`: the manifest of an embedder export. */
export const EmbedderManifest = z
  .strictObject({
    format: z.literal('onnx'),
    file: z.string().describe('The ONNX graph, beside the manifest.'),
    opset: z.number().int(),
    dtype: z.literal('float32'),
    model: z.string().describe('Which sentence embedding model, e.g. sentence-transformers/all-MiniLM-L6-v2.'),
    source: z.string().describe('Where its weights came from: package, version and file.'),
    dims: z.number().int().positive().describe('Length of an embedding.'),
    pooling: z.literal('mean').describe('Token embeddings averaged over the attention mask.'),
    normalised: z.literal(true).describe('Embeddings have unit length, so a dot product is a cosine similarity.'),
    pooledInGraph: z
      .literal(true)
      .describe('The graph pools and normalises: its output is the sentence embedding, and the runtime does no arithmetic.'),
    maxTokens: z.number().int().min(3).describe('Tokens per text at most, [CLS] and [SEP] included; longer texts are cut.'),
    specialTokenIds: z
      .strictObject({ cls: z.number().int().min(0), sep: z.number().int().min(0), pad: z.number().int().min(0) })
      .describe('A text is [CLS] tokens [SEP]; pad fills a batch (masked out).'),
    inputs: z.array(TensorSpec).describe('input_ids and attention_mask, int64 [batch_size, sequence_length].'),
    outputs: z.array(TensorSpec).describe('sentence_embedding, float32 [batch_size, dims].'),
    parity: z.strictObject({
      sentences: z.number().int().positive().describe('Sentences embedded by PyTorch and ONNX Runtime, batched and one at a time.'),
      maxAbsDiff: z.number().min(0).describe('Largest difference in any component (an export is written only within tolerance).'),
      tolerance: z.number().positive(),
    }),
    onnxBytes: count,
    versions: z.record(z.string(), z.string()),
  })
  .describe('The manifest of a sentence embedder export (`embedder.json`).');
export type EmbedderManifest = z.infer<typeof EmbedderManifest>;

/** `export-embedder`: the `done` event's metrics. */
export const EmbedderExportMetrics = z.strictObject({
  dims: z.number().int().positive(),
  paritySentences: z.number().int().positive(),
  maxAbsDiff: z.number().min(0).describe('Largest |ONNX Runtime - PyTorch| in any embedding component.'),
  exportSeconds: z.number().min(0),
  onnxBytes: count,
});
export type EmbedderExportMetrics = z.infer<typeof EmbedderExportMetrics>;
