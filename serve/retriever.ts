/**
 * Retrieval of the most similar known question-answer pairs: the one retriever that puts examples into
 * the model's prompt at training, evaluation and serving alike.
 *
 * - `EmbeddingIndex`: one unit vector per row (its question's embedding, serve/embedder.ts), searched
 *   exactly by dot product (= cosine): a brute-force scan of every vector (serve/dot-scan.ts,
 *   WebAssembly SIMD) and a partial top-k selection; saved to and loaded from an Arrow IPC file
 *   (serve/index-file.ts).
 * - `LexicalIndex` (serve/lexical-index.ts): character 3-gram Jaccard, the former lexical baseline,
 *   for when no embedder export is available.
 * - `Retriever`: either index behind one interface that takes question texts, embedding them first
 *   when the index needs vectors.
 */
import { createDotScanner, type DotScanner } from './dot-scan';
import type { Embedder } from './embedder';
import { LexicalIndex } from './lexical-index';
import { TopK, type Hit, type RetrievalRow, type SearchIndex } from './top-k';

export { LexicalIndex } from './lexical-index';
export { TopK, type Hit, type RetrievalRow, type SearchIndex } from './top-k';

/** Questions embedded per call (building an index, retrieving for many questions), so a large batch never holds every small array at once. */
const EMBED_CHUNK = 1024;

export class EmbeddingIndex<Row extends RetrievalRow = RetrievalRow> implements SearchIndex<Float32Array, Row> {
  readonly kind = 'embedding';
  private readonly scanner: DotScanner;

  /**
   * `vectors`: row n's unit vector at [n * dims, (n + 1) * dims), copied into the scanner's memory.
   * `model`: the embedding model that made them (the manifest's `model`), so an index is never
   * searched with another model's vectors. `simd: false` scans in JavaScript (for tests).
   */
  constructor(
    readonly rows: readonly Row[],
    vectors: Float32Array,
    readonly dims: number,
    readonly model: string,
    options: { simd?: boolean } = {},
  ) {
    if (!Number.isInteger(dims) || dims < 1) throw new RangeError(`dims: ${dims}; must be a whole number >= 1`);
    if (vectors.length !== rows.length * dims)
      throw new RangeError(`${vectors.length} vector components for ${rows.length} rows of ${dims}; expected ${rows.length * dims}`);
    this.scanner = createDotScanner(vectors, dims, options);
  }

  /** Every row's vector, row n at [n * dims, (n + 1) * dims). */
  get vectors(): Float32Array {
    return this.scanner.vectors;
  }

  /**
   * Embeds every row's question with `embedder`: about 300 questions a second on 2 idle CPU cores, so a
   * 100,000-row index takes about 6 minutes.
   * `onProgress(rowsDone, rows)` is called after each chunk of 1,024, e.g. to heartbeat.
   */
  static async build<Row extends RetrievalRow>(
    rows: readonly Row[],
    embedder: Embedder,
    onProgress?: (rowsDone: number, rows: number) => void,
  ): Promise<EmbeddingIndex<Row>> {
    const vectors = new Float32Array(rows.length * embedder.dims);
    for (let start = 0; start < rows.length; start += EMBED_CHUNK) {
      const chunk = await embedder.embed(rows.slice(start, start + EMBED_CHUNK).map((row) => row.question));
      chunk.forEach((vector, n) => vectors.set(vector, (start + n) * embedder.dims));
      onProgress?.(start + chunk.length, rows.length);
    }
    return new EmbeddingIndex(rows, vectors, embedder.dims, embedder.manifest.model);
  }

  /** Row n's vector (a view, not a copy). */
  vector(position: number): Float32Array {
    return this.vectors.subarray(position * this.dims, (position + 1) * this.dims);
  }

  /** The k rows whose vectors have the largest dot product with `query` (a unit vector of the same model). */
  search(query: Float32Array, k: number, exclude?: (row: Row) => boolean): Hit<Row>[] {
    if (query.length !== this.dims) throw new RangeError(`query has ${query.length} components; this index holds vectors of ${this.dims}`);
    const best = new TopK(k);
    const scores = this.scanner.scores(query);
    const rows = this.rows;
    // Rows in order, so a later row with an equal score never displaces an earlier one (score > threshold).
    for (let n = 0; n < rows.length; n++) {
      const score = scores[n]!;
      if (score > best.threshold && !exclude?.(rows[n]!)) best.insert(score, n);
    }
    return best.hits(rows);
  }
}

/** Either index behind one interface: questions in, hits out. */
export interface Retriever<Row extends RetrievalRow = RetrievalRow> {
  readonly kind: 'embedding' | 'lexical';
  readonly rows: readonly Row[];
  /**
   * The k best rows for each question, best first. `exclude(row, question)` rejects a row for the
   * question at that position, e.g. the row itself or its near-duplicate group when retrieving for
   * training rows. `prefer(row, question)` ranks the rows it accepts first (the best of them, then the
   * best of the rest), e.g. rows about the product the question is asked about.
   * `onProgress(questionsDone, questions)` is called after each chunk of 1,024 questions, with the
   * event loop let go in between, so an activity retrieving for thousands of rows keeps heartbeating.
   */
  retrieve(
    questions: string[],
    k: number,
    exclude?: Exclusion<Row>,
    prefer?: Exclusion<Row>,
    onProgress?: (questionsDone: number, questions: number) => void,
  ): Promise<Hit<Row>[][]>;
}

type Exclusion<Row> = (row: Row, question: number) => boolean;

/** The k best: first among the preferred rows, then among the others. */
function preferredFirst<Q, Row extends RetrievalRow>(
  index: SearchIndex<Q, Row>,
  query: Q,
  k: number,
  exclude: ((row: Row) => boolean) | undefined,
  prefer: ((row: Row) => boolean) | undefined,
): Hit<Row>[] {
  if (!prefer) return index.search(query, k, exclude);
  const preferred = index.search(query, k, (row) => !prefer(row) || (exclude?.(row) ?? false));
  if (preferred.length === k) return preferred;
  return [...preferred, ...index.search(query, k - preferred.length, (row) => prefer(row) || (exclude?.(row) ?? false))];
}

/** `search` over the questions a chunk at a time, reporting progress and letting the event loop run between chunks. */
async function inChunks<Row extends RetrievalRow>(
  questions: string[],
  onProgress: ((done: number, total: number) => void) | undefined,
  search: (chunk: string[], offset: number) => Promise<Hit<Row>[][]>,
): Promise<Hit<Row>[][]> {
  const hits: Hit<Row>[][] = [];
  for (let start = 0; start < questions.length; start += EMBED_CHUNK) {
    hits.push(...(await search(questions.slice(start, start + EMBED_CHUNK), start)));
    onProgress?.(hits.length, questions.length);
    if (hits.length < questions.length) await new Promise((next) => setImmediate(next));
  }
  return hits;
}

export function embeddingRetriever<Row extends RetrievalRow>(index: EmbeddingIndex<Row>, embedder: Embedder): Retriever<Row> {
  if (index.model !== embedder.manifest.model || index.dims !== embedder.dims)
    throw new Error(
      `the index holds ${index.dims}-dimensional vectors of ${index.model}, the embedder makes ${embedder.dims} of ` +
        `${embedder.manifest.model}; rebuild the index with this embedder`,
    );
  return {
    kind: 'embedding',
    rows: index.rows,
    retrieve: (questions, k, exclude, prefer, onProgress) =>
      inChunks(questions, onProgress, async (chunk, offset) =>
        (await embedder.embed(chunk)).map((vector, i) =>
          preferredFirst(index, vector, k, exclude && ((row) => exclude(row, offset + i)), prefer && ((row) => prefer(row, offset + i))),
        ),
      ),
  };
}

export function lexicalRetriever<Row extends RetrievalRow>(index: LexicalIndex<Row>): Retriever<Row> {
  return {
    kind: 'lexical',
    rows: index.rows,
    retrieve: (questions, k, exclude, prefer, onProgress) =>
      inChunks(questions, onProgress, async (chunk, offset) =>
        chunk.map((question, i) =>
          preferredFirst(index, question, k, exclude && ((row) => exclude(row, offset + i)), prefer && ((row) => prefer(row, offset + i))),
        ),
      ),
  };
}
