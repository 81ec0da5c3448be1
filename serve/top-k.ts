/**
 * What every retrieval index shares: the row it returns, a hit, the search interface, and the partial
 * selection of the k best scores (no full sort: at 100,000 rows a search keeps k candidates, not all).
 */

/** A known question-answer pair, as retrieval indexes it (the question is what is searched). */
export interface RetrievalRow {
  id: string;
  question: string;
  answer: string;
  /** Near-duplicate group from the data stage's dedup, so a row's own group can be excluded. */
  groupId: string;
}

export interface Hit<Row extends RetrievalRow = RetrievalRow> {
  row: Row;
  /** Similarity: cosine (dot product of unit vectors, -1 to 1) or Jaccard (0 to 1); higher is closer. */
  score: number;
  /** The row's position in the index. */
  position: number;
}

/** An index over rows, searched with a query vector (embedding) or a question (lexical). */
export interface SearchIndex<Query, Row extends RetrievalRow = RetrievalRow> {
  readonly kind: 'embedding' | 'lexical';
  readonly rows: readonly Row[];
  /**
   * The k best rows for the query, best first (equal scores: the earlier row first), skipping rows that
   * `exclude` rejects; fewer than k only when fewer rows are left. `exclude` is asked only about rows
   * that would make the top k.
   */
  search(query: Query, k: number, exclude?: (row: Row) => boolean): Hit<Row>[];
}

/** The k best (score, position) pairs seen so far, best first; equal scores rank the lower position first. */
export class TopK {
  private readonly scores: Float64Array;
  private readonly positions: Int32Array;
  private size = 0;
  /** A score below this never enters (-Infinity until k are held). */
  threshold = -Infinity;

  constructor(readonly k: number) {
    if (!Number.isInteger(k) || k < 1) throw new RangeError(`k: ${k}; must be a whole number >= 1`);
    this.scores = new Float64Array(k);
    this.positions = new Int32Array(k);
  }

  get full(): boolean {
    return this.size === this.k;
  }

  /** Whether (score, position) would enter the k best. */
  accepts(score: number, position: number): boolean {
    if (this.size < this.k) return true;
    const last = this.k - 1;
    return score > this.scores[last]! || (score === this.scores[last]! && position < this.positions[last]!);
  }

  /** Adds a pair that `accepts` took, dropping the worst when k are held. */
  insert(score: number, position: number): void {
    let at = Math.min(this.size, this.k - 1);
    while (at > 0 && (score > this.scores[at - 1]! || (score === this.scores[at - 1]! && position < this.positions[at - 1]!))) {
      this.scores[at] = this.scores[at - 1]!;
      this.positions[at] = this.positions[at - 1]!;
      at--;
    }
    this.scores[at] = score;
    this.positions[at] = position;
    if (this.size < this.k) this.size++;
    if (this.size === this.k) this.threshold = this.scores[this.k - 1]!;
  }

  hits<Row extends RetrievalRow>(rows: readonly Row[]): Hit<Row>[] {
    const hits: Hit<Row>[] = [];
    for (let n = 0; n < this.size; n++) hits.push({ row: rows[this.positions[n]!]!, score: this.scores[n]!, position: this.positions[n]! });
    return hits;
  }
}
