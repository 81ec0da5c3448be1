// Node embeddings (serve/embedder.ts) against the engine's (engine/embedder.py `embed`, through
// .venv/bin/python): the same token ids and vectors within 1e-4, batched or not; then retrieval over a
// real embedder export, saved and loaded. The fixture is `python -m engine export-embedder` of the
// real all-MiniLM-L6-v2 (about 10 s).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmbedderExportMetrics, EmbedderManifest } from '../../schemas/embedder';
import { loadEmbedder, readEmbedderManifest, type Embedder } from '../../serve/embedder';
import { loadEmbeddingIndex, saveEmbeddingIndex } from '../../serve/index-file';
import { EmbeddingIndex, LexicalIndex, embeddingRetriever, lexicalRetriever, type RetrievalRow } from '../../serve/retriever';

const root = join(import.meta.dirname, '..', '..');
const python = join(root, '.venv', 'bin', 'python');
const TOLERANCE = 1e-4; // per component, Node against PyTorch

const SENTENCES = [
  'How do I reset my router?',
  'Hi',
  '?',
  '',
  '   \t\n ',
  'WHY WON’T MY E-READER TURN ON???',
  'Ünïcödé café: 日本語のマニュアル, naïve façade, 50 € for ½ price 😀 ΣΊΣΥΦΟΣ İstanbul straße',
  'tab\there\u00a0no-break\u200bzero-width\ufeffbom\u0085next-line',
  // Past 256 tokens: both sides cut it.
  'I bought the Aurora Pulse X3 headphones last month and they keep disconnecting from my phone. '.repeat(20),
  'Can I wall-mount the Vista 55 TV with a standard VESA 300x300 bracket?',
];

// The engine's tokens (without padding) and embeddings of the sentences, as JSON.
const REFERENCE = `
import json, sys
from engine.embedder import default_embedder, embed
texts = json.loads(sys.argv[1])
ids, mask = default_embedder().tokenize(texts)
tokens = [[i for i, m in zip(row, row_mask) if m] for row, row_mask in zip(ids.tolist(), mask.tolist())]
print(json.dumps({"tokens": tokens, "vectors": embed(texts).tolist()}))
`;

let dir: string;
let doneEvent: { event: string; outputDir: string; metrics: unknown };
let embedder: Embedder;
let reference: { tokens: number[][]; vectors: number[][] };

function runPython(args: string[]): string {
  return execFileSync(python, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26 });
}

const maxDifference = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let n = 0; n < a.length; n++) worst = Math.max(worst, Math.abs(a[n]! - b[n]!));
  return worst;
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tuneline-retrieval-'));
  const events = runPython(['-m', 'engine', 'export-embedder', '--output', join(dir, 'embedder')])
    .trim()
    .split('\n');
  doneEvent = JSON.parse(events[events.length - 1]!);
  const lines = runPython(['-c', REFERENCE, JSON.stringify(SENTENCES)])
    .trim()
    .split('\n');
  reference = JSON.parse(lines[lines.length - 1]!);
  embedder = await loadEmbedder(join(dir, 'embedder'));
}, 180_000);

afterAll(async () => {
  await embedder?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the embedder export', () => {
  it('writes a manifest and done metrics of the documented shapes', () => {
    expect(doneEvent.event).toBe('done');
    const metrics = EmbedderExportMetrics.parse(doneEvent.metrics);
    expect(metrics.dims).toBe(384);
    const manifest = EmbedderManifest.parse(readEmbedderManifest(join(dir, 'embedder')));
    expect(manifest).toMatchObject({ dims: 384, maxTokens: 256, pooling: 'mean', normalised: true });
    expect(manifest.parity.maxAbsDiff).toBe(metrics.maxAbsDiff);
  });
});

describe('Node embeddings', () => {
  it('tokenize as the engine does: lower case, accents, truncation at 256 with [CLS] and [SEP]', () => {
    SENTENCES.forEach((sentence, n) => expect(embedder.tokenize(sentence), JSON.stringify(sentence)).toEqual(reference.tokens[n]));
    expect(reference.tokens[8]).toHaveLength(256);
  });

  it("equal PyTorch's within 1e-4 in every component, and have unit length", async () => {
    const vectors = await embedder.embed(SENTENCES);
    expect(vectors).toHaveLength(SENTENCES.length);
    vectors.forEach((vector, n) => {
      expect(maxDifference(vector, reference.vectors[n]!), JSON.stringify(SENTENCES[n])).toBeLessThan(TOLERANCE);
      expect(Math.hypot(...vector)).toBeCloseTo(1, 5);
    });
  });

  it('are the same batched as one at a time', async () => {
    const batched = await embedder.embed(SENTENCES);
    for (const [n, sentence] of SENTENCES.entries()) {
      const [alone] = await embedder.embed([sentence]);
      expect(maxDifference(alone!, batched[n]!), JSON.stringify(sentence)).toBeLessThan(1e-6);
    }
    const small = await loadEmbedder(join(dir, 'embedder'), { batchSize: 3 });
    try {
      const inSmallBatches = await small.embed(SENTENCES);
      inSmallBatches.forEach((vector, n) => expect(maxDifference(vector, batched[n]!)).toBeLessThan(1e-6));
    } finally {
      await small.close();
    }
    expect(await embedder.embed([])).toEqual([]);
  });
});

describe('retrieval with real embeddings', () => {
  const rows: RetrievalRow[] = [
    { id: 'reset', question: 'How do I reset my router?', answer: 'Hold the reset button for 10 seconds.', groupId: 'g-reset' },
    { id: 'reset-2', question: 'My router froze, how do I reset it?', answer: 'Hold the reset button for 10 seconds.', groupId: 'g-reset' },
    { id: 'warranty', question: 'How long is the warranty on the headphones?', answer: 'Two years.', groupId: 'g-warranty' },
    { id: 'water', question: 'Is the speaker waterproof?', answer: 'It is rated IPX7.', groupId: 'g-water' },
    { id: 'pair', question: 'How do I pair the earbuds with my phone?', answer: 'Open the case and hold the button.', groupId: 'g-pair' },
  ];

  it('finds paraphrases, best first, and excludes a row and its group', async () => {
    const index = await EmbeddingIndex.build(rows, embedder);
    const retriever = embeddingRetriever(index, embedder);
    const questions = [
      'What steps restart the router?',
      'Can I swim with the speaker?',
      'For how many years are the headphones guaranteed?',
    ];
    const hits = await retriever.retrieve(questions, 2);
    expect(hits.map((found) => found[0]!.row.id)).toEqual(['reset', 'water', 'warranty']);
    expect(hits[0]!.map((hit) => hit.row.id)).toEqual(['reset', 'reset-2']);
    expect(hits[0]![0]!.score).toBeGreaterThan(hits[0]![1]!.score);

    // For a training row: never itself, nor its near duplicates.
    const forTraining = await retriever.retrieve([rows[0]!.question], 2, (row) => row.groupId === rows[0]!.groupId);
    expect(forTraining[0]!.map((hit) => hit.row.groupId)).not.toContain('g-reset');

    // The fallback answers through the same interface.
    const lexical = await lexicalRetriever(new LexicalIndex(rows)).retrieve(questions, 2);
    expect(lexical.map((found) => found.length)).toEqual([2, 2, 2]);
  });

  it('searches a saved and loaded index as the built one', async () => {
    const built = await EmbeddingIndex.build(rows, embedder);
    await saveEmbeddingIndex(join(dir, 'index.arrow'), built);
    const loaded = await loadEmbeddingIndex(join(dir, 'index.arrow'));
    const [query] = await embedder.embed(['reset the router']);
    expect(loaded.search(query!, 3)).toEqual(built.search(query!, 3));
    expect(() => embeddingRetriever(new EmbeddingIndex(rows.slice(0, 1), new Float32Array(384), 384, 'other-model'), embedder)).toThrow(
      /the index holds 384-dimensional vectors of other-model, the embedder makes 384 of sentence-transformers\/all-MiniLM-L6-v2/,
    );
  });
});
