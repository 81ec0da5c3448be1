/**
 * The lexical index: retrieval by character 3-gram Jaccard similarity of the questions, for when no
 * embedder export is wanted (`retrieval.method: lexical`); the retrieval baseline's definition before
 * embeddings, kept exactly:
 *
 * - a question's shingles are the set of its 3-code-point substrings after lower-casing and collapsing
 *   whitespace (Python's `" ".join(text.lower().split())`); a text under 3 code points is one shingle,
 *   itself (the empty text included);
 * - similarity is |A ∩ B| / |A ∪ B|, found through an inverted index (shingle -> rows), so every row
 *   that shares a shingle is scored; ties go to the earlier row.
 *
 * `search` returns the k best rows; rows that share no shingle score 0 and come after every row that
 * does, in row order, so k = 1 gives the single nearest row (row 0 when nothing matches).
 */
import { TopK, type Hit, type RetrievalRow, type SearchIndex } from './top-k';

export const SHINGLE_SIZE = 3;

// What Python's str.split() splits on (str.isspace): JavaScript's \s lacks \x1c-\x1f and \x85, and has \ufeff.
const PYTHON_WHITESPACE = /[\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;
const SURROGATE = /[\ud800-\udfff]/;

/** Lower-cased, whitespace runs as one space, no space at either end: `" ".join(text.lower().split())`. */
export function normalizeQuestion(text: string): string {
  return text
    .toLowerCase()
    .split(PYTHON_WHITESPACE)
    .filter((word) => word.length > 0)
    .join(' ');
}

/** The set of character 3-grams (by code point, as Python slices strings) of the normalised text. */
export function shingles(text: string): Set<string> {
  const normalized = normalizeQuestion(text);
  const grams = new Set<string>();
  if (!SURROGATE.test(normalized)) {
    for (let i = 0; i < Math.max(1, normalized.length - SHINGLE_SIZE + 1); i++) grams.add(normalized.slice(i, i + SHINGLE_SIZE));
    return grams;
  }
  const points = Array.from(normalized);
  for (let i = 0; i < Math.max(1, points.length - SHINGLE_SIZE + 1); i++) grams.add(points.slice(i, i + SHINGLE_SIZE).join(''));
  return grams;
}

export class LexicalIndex<Row extends RetrievalRow = RetrievalRow> implements SearchIndex<string, Row> {
  readonly kind = 'lexical';
  private readonly sizes: Int32Array;
  private readonly postings = new Map<string, number[]>();
  /** Per row, shingles shared with the query being searched; reset after each search. */
  private readonly shared: Int32Array;

  constructor(readonly rows: readonly Row[]) {
    this.sizes = new Int32Array(rows.length);
    this.shared = new Int32Array(rows.length);
    rows.forEach((row, n) => {
      const grams = shingles(row.question);
      this.sizes[n] = grams.size;
      for (const gram of grams) {
        const list = this.postings.get(gram);
        if (list) list.push(n);
        else this.postings.set(gram, [n]);
      }
    });
  }

  /** The k most similar rows to a question (Jaccard of 3-gram sets), best first, skipping rows `exclude` rejects. */
  search(question: string, k: number, exclude?: (row: Row) => boolean): Hit<Row>[] {
    const best = new TopK(k);
    const grams = shingles(question);
    const touched: number[] = [];
    for (const gram of grams) {
      for (const n of this.postings.get(gram) ?? []) {
        if (this.shared[n] === 0) touched.push(n);
        this.shared[n]!++;
      }
    }
    for (const n of touched) {
      const count = this.shared[n]!;
      this.shared[n] = 0;
      const similarity = count / (grams.size + this.sizes[n]! - count);
      if (best.accepts(similarity, n) && !exclude?.(this.rows[n]!)) best.insert(similarity, n);
    }
    // Rows that share no shingle all score 0: the earliest ones fill what is left.
    if (!best.full) {
      const scored = new Set(touched);
      for (let n = 0; n < this.rows.length && !best.full; n++) {
        if (!scored.has(n) && !exclude?.(this.rows[n]!)) best.insert(0, n);
      }
    }
    return best.hits(this.rows);
  }
}
