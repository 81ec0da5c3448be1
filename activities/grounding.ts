/**
 * Grounding: the retriever over the training split, and the known Q&A pairs it puts into prompts.
 *
 * - `exportEmbedder` (gpu queue, it runs the engine): all-MiniLM-L6-v2 to ONNX, parity-checked.
 * - `buildRetrievalIndex` (cpu): the training and knowledge questions embedded in Node, stored as an Arrow file.
 * - `retrieveKnownPairs` (cpu): each row's known pairs. For training rows never the row itself, its
 *   near-duplicate group or a row with the same answer (the model must learn to answer, not to copy
 *   the answer it is asked for); a `distractors` share of training rows gets random pairs instead,
 *   so it also learns to ignore pairs that do not fit. Evaluation rows get the pairs serving would.
 *
 * The same code retrieves for training, evaluation and (later) serving, so what is evaluated is what is served.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { EmbedderExportMetrics } from '../schemas/embedder';
import { ContextRow, EvaluationRow, type KnownPair } from '../schemas/engine';
import type { ArtifactRef, StepContext, StepResult } from '../schemas/manifests';
import type { GroupedRow } from '../schemas/rows';
import { mulberry32 } from '../lib/seeded-random';
import { loadEmbedder } from '../serve/embedder';
import { loadEmbeddingIndex, saveEmbeddingIndex } from '../serve/index-file';
import { EmbeddingIndex, LexicalIndex, embeddingRetriever, lexicalRetriever, type Retriever } from '../serve/retriever';
import { readJsonl, toJsonl, type StepStore } from './artifacts';
import { codeVersion } from './code-version';
import { storeFor } from './context';
import { readRows } from './data/arrow-io';
import { normalizeForMatch } from './data/dedup';
import { hashString } from './data/minhash';
import { engineMetrics } from './engine-process';
import { beat, runCachedStep } from './steps';

/**
 * Where the retriever's parts are: the rows it searches (the training split, and the knowledge files'
 * rows when the config names any), the embedder export and the index (both absent for lexical retrieval).
 */
export interface RetrieverParts {
  train: ArtifactRef;
  knowledge?: ArtifactRef;
  embedder?: ArtifactRef;
  index?: ArtifactRef;
}

/** Every artifact a retriever is made from, for the cache key of a step that retrieves. */
export const retrieverInputs = (parts: RetrieverParts): ArtifactRef[] =>
  [parts.train, parts.knowledge, parts.index, parts.embedder].filter((ref): ref is ArtifactRef => ref !== undefined);

/** The rows a retriever searches: the training split, then the knowledge rows. */
async function indexedRows(store: StepStore, parts: Pick<RetrieverParts, 'train' | 'knowledge'>): Promise<GroupedRow[]> {
  const rows = await readRows(store, parts.train);
  return parts.knowledge ? [...rows, ...(await readRows(store, parts.knowledge))] : rows;
}

export async function exportEmbedder(context: StepContext): Promise<StepResult<EmbedderExportMetrics, 'embedder'>> {
  const store = storeFor(context);
  return runCachedStep(
    store,
    {
      step: 'export-embedder',
      config: {},
      inputs: [],
      code: codeVersion(import.meta.url, 'export-embedder'),
      noCache: context.noCache,
      summarize: (m) => `all-MiniLM-L6-v2, ${m.dims} dimensions, ONNX equal to PyTorch within ${m.maxAbsDiff.toExponential(1)}`,
    },
    async (key) => {
      const workDir = store.workDir(key);
      await rm(workDir, { recursive: true, force: true });
      const output = join(workDir, 'embedder');
      const metrics = await engineMetrics(['export-embedder', '--output', output], 'export-embedder', EmbedderExportMetrics);
      const embedder = await store.putDir(output);
      await rm(workDir, { recursive: true, force: true });
      return { outputs: { embedder }, stats: metrics };
    },
  );
}

const asRetrievalRows = (rows: GroupedRow[]) => rows.map((r) => ({ id: r.id, question: r.question, answer: r.answer, groupId: r.groupId }));

export async function buildRetrievalIndex(
  context: StepContext & Pick<RetrieverParts, 'train' | 'knowledge'> & { embedder: ArtifactRef },
): Promise<StepResult<{ rows: number; dims: number; seconds: number }, 'index'>> {
  const store = storeFor(context);
  return runCachedStep(
    store,
    {
      step: 'retrieval-index',
      config: {},
      inputs: retrieverInputs(context),
      code: codeVersion(import.meta.url),
      noCache: context.noCache,
      summarize: (s) =>
        `${s.rows} ${context.knowledge ? 'training and knowledge' : 'training'} questions embedded (${s.dims} dimensions) in ${s.seconds.toFixed(1)}s`,
    },
    async () => {
      const started = performance.now();
      const rows = asRetrievalRows(await indexedRows(store, context));
      const embedder = await loadEmbedder(await store.fetch(context.embedder));
      try {
        const index = await EmbeddingIndex.build(rows, embedder, (done, total) => beat({ step: 'retrieval-index', done, total }));
        const file = `${await store.tempPath()}.arrow`;
        await saveEmbeddingIndex(file, index);
        const ref = await store.putFile(file, '.arrow', rows.length);
        return { outputs: { index: ref }, stats: { rows: rows.length, dims: index.dims, seconds: (performance.now() - started) / 1000 } };
      } finally {
        await embedder.close();
      }
    },
  );
}

interface OpenRetriever {
  retriever: Retriever;
  /** Ranks a training row first for a question about the same product (retrieval.scope `product-first`). */
  sameProduct: (row: { id: string }, product: string | null | undefined) => boolean;
  close: () => Promise<void>;
}

/** The retriever the config asks for, over the training rows; `close` frees the embedder. */
export async function openRetriever(store: StepStore, context: Pick<StepContext, 'config'> & RetrieverParts): Promise<OpenRetriever> {
  const rows = await indexedRows(store, context);
  const productOf = new Map(rows.map((row) => [row.id, row.product]));
  const sameProduct = (row: { id: string }, product: string | null | undefined) =>
    context.config.retrieval.scope === 'product-first' && product != null && productOf.get(row.id) === product;
  if (!context.index || !context.embedder) {
    return { retriever: lexicalRetriever(new LexicalIndex(asRetrievalRows(rows))), sameProduct, close: async () => {} };
  }
  const embedder = await loadEmbedder(await store.fetch(context.embedder));
  const index = await loadEmbeddingIndex(await store.fetch(context.index));
  return { retriever: embeddingRetriever(index, embedder), sameProduct, close: () => embedder.close() };
}

/** A pair as a prompt carries it: question and answer cut to `maxChars` (an ellipsis marks a cut). */
export function knownPair(row: { id: string; question: string; answer: string }, similarity: number, maxChars: number): KnownPair {
  const cut = (text: string) => (text.length <= maxChars ? text : `${text.slice(0, maxChars - 1).trimEnd()}…`);
  return { id: row.id, question: cut(row.question), answer: cut(row.answer), similarity: Math.round(similarity * 1e4) / 1e4 };
}

export interface KnownPairsStats {
  rows: number;
  /** Training rows given random pairs instead of retrieved ones. */
  distractorRows: number;
  similarityMean: number;
}

/**
 * Known pairs for every row of `rows`: the training and validation splits (`mode: training`) or
 * the evaluation questions (`mode: evaluation`), as a contexts file (JSON lines by row id).
 */
export async function retrieveKnownPairs(
  context: StepContext & RetrieverParts & { mode: 'training' | 'evaluation'; rows: ArtifactRef[] },
): Promise<StepResult<KnownPairsStats, 'contexts'>> {
  const store = storeFor(context);
  const { k, distractors, maxPairChars } = context.config.training.grounding;
  const seed = context.config.training.seed;
  const training = context.mode === 'training';
  return runCachedStep(
    store,
    {
      step: training ? 'ground-training' : 'ground-evaluation',
      config: { k, maxPairChars, seed, scope: context.config.retrieval.scope, ...(training ? { distractors } : {}) },
      inputs: [...retrieverInputs(context), ...context.rows],
      code: codeVersion(import.meta.url),
      noCache: context.noCache,
      summarize: (s) =>
        `${s.rows} rows, ${k} known pairs each (mean similarity ${s.similarityMean.toFixed(3)})` +
        (training ? `, ${s.distractorRows} with random pairs` : ''),
    },
    async () => {
      const queries: Array<{ id: string; question: string; product: string | null; answer?: string; groupId?: string; training: boolean }> =
        [];
      if (training) {
        const [train, validation] = await Promise.all(context.rows.map((ref) => readRows(store, ref)));
        queries.push(...train!.map((r) => ({ ...r, training: true })), ...validation!.map((r) => ({ ...r, training: false })));
      } else {
        for (const ref of context.rows)
          queries.push(...(await readJsonl(store, ref, EvaluationRow)).map((r) => ({ ...r, training: false })));
      }
      const { retriever, sameProduct, close } = await openRetriever(store, context);
      try {
        const answerKey = (text: string) => normalizeForMatch(text);
        // A training row's own answer is never its known pair: not the row, its near duplicates, nor a row with the same answer.
        const excluded = (row: { id: string; answer: string; groupId: string }, n: number) => {
          const query = queries[n]!;
          return (
            query.training &&
            (row.id === query.id || row.groupId === query.groupId || answerKey(row.answer) === answerKey(query.answer ?? ''))
          );
        };
        const hits = await retriever.retrieve(
          queries.map((q) => q.question),
          k,
          excluded,
          (row, n) => sameProduct(row, queries[n]!.product),
          (done, total) => beat({ step: training ? 'ground-training' : 'ground-evaluation', done, total }),
        );
        const lines: ContextRow[] = [];
        let distractorRows = 0;
        let similaritySum = 0;
        let pairs = 0;
        queries.forEach((query, n) => {
          // A seeded draw per row id, so the same rows get random pairs whatever their order.
          const distracted = query.training && (hashString(query.id, seed) >>> 0) / 2 ** 32 < distractors;
          let chosen = hits[n]!.map((hit) => knownPair(hit.row, hit.score, maxPairChars));
          if (distracted) {
            distractorRows++;
            const random = mulberry32(hashString(query.id, seed + 1));
            const pool = retriever.rows;
            chosen = [];
            for (let tries = 0; chosen.length < Math.min(k, pool.length - 1) && tries < 100 * k; tries++) {
              const row = pool[Math.floor(random.next() * pool.length)]!;
              if (!excluded(row, n) && !chosen.some((pair) => pair.id === row.id)) chosen.push(knownPair(row, 0, maxPairChars));
            }
          } else {
            for (const pair of chosen) similaritySum += pair.similarity;
            pairs += chosen.length;
          }
          lines.push(ContextRow.parse({ id: query.id, context: chosen }));
        });
        const contexts = await store.put(toJsonl(lines), '.jsonl', lines.length);
        return { outputs: { contexts }, stats: { rows: lines.length, distractorRows, similarityMean: pairs ? similaritySum / pairs : 0 } };
      } finally {
        await close();
      }
    },
  );
}
