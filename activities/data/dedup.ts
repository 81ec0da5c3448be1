/**
 * Deduplication: exact duplicates, conflicting answers and near-duplicate questions. Pure: rows in,
 * rows out, plus the reports a person needs to check what was removed and why.
 *
 * Steps, each over the rows the previous one kept:
 *   1. conflicts: the same normalised question (and product) with different answers, counted over
 *      all rows so `majority` sees how often each answer was given;
 *   2. exact duplicates: the same normalised question, answer and product as an earlier row;
 *   3. near duplicates: similar questions with the same answer, found with MinHash LSH.
 * Every output row carries a `groupId` (the id of its group's first row) so the split can keep
 * paraphrases and conflicting answers of one question in the same split.
 */
import type { DedupSection } from '../../schemas/config';
import type { GroupedRow, QaRow } from '../../schemas/rows';

export interface DedupStats {
  rowsIn: number;
  rowsOut: number;
  exactDuplicates: number;
  /** Rows that are a near duplicate of an earlier row (removed under `keep-one`, grouped under `keep-all`). */
  nearDuplicates: number;
  nearDuplicateGroups: number;
  conflictGroups: number;
  conflictRowsRemoved: number;
}

export interface ConflictReport {
  key: string;
  question: string;
  product: string | null;
  answers: Array<{ answer: string; count: number; rowIds: string[] }>;
  resolution: string;
}

export interface DedupResult {
  rows: GroupedRow[];
  stats: DedupStats;
  conflicts: ConflictReport[];
  removedRows: Array<{ row: QaRow; reason: string; duplicateOf?: string }>;
}

/** Lower-cased, NFKC-folded, apostrophes dropped (`don't` = `dont`), other punctuation a space, spaces collapsed. */
export function normalizeForMatch(text: string): string {
  return text
    .normalize('NFKC')
    .toLowerCase()
    .replace(/['\u2018\u2019\u02BC]/g, '')
    .replace(/[\p{P}\s]+/gu, ' ')
    .trim();
}

// Normalised text never contains punctuation, so ` :: ` cannot occur inside a part.
const keyOf = (product: string, text: string): string => (product === '' ? text : `${product} :: ${text}`);

function quote(text: string, max = 60): string {
  return JSON.stringify(text.length > max ? `${text.slice(0, max - 1)}…` : text);
}

// ---------------------------------------------------------------------------------------------
// Hashing, shingles, MinHash and union-find for near-duplicate search. Deterministic 32-bit
// hashes, kept as signed integers (`| 0`) so V8 stays on its small-integer fast paths; MinHash
// only needs some fixed total order on hash values, and signed order is one.

/** murmur3's 32-bit finaliser: a bijection that spreads every input bit over the output. */
export function fmix32(value: number): number {
  let h = value | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** Seeded 32-bit hash of `text[start, end)` (UTF-16 code units), without building a substring. */
export function hashString(text: string, seed = 0, start = 0, end = text.length): number {
  let h = fmix32(seed ^ 0x9e3779b9);
  for (let i = start; i < end; i++) {
    h = Math.imul(h ^ text.charCodeAt(i), 0x5bd1e995);
    h ^= h >>> 15;
  }
  return fmix32(h ^ (end - start));
}

/** Sorted, distinct hashes of the `size`-character shingles; a text shorter than `size` is one shingle. */
export function shingleHashes(text: string, size: number): Int32Array {
  const count = Math.max(1, text.length - size + 1);
  const hashes = new Int32Array(count);
  for (let i = 0; i < count; i++) hashes[i] = hashString(text, size, i, Math.min(text.length, i + size));
  hashes.sort();
  let distinct = 0;
  for (let i = 0; i < count; i++) if (i === 0 || hashes[i] !== hashes[i - 1]) hashes[distinct++] = hashes[i]!;
  return hashes.subarray(0, distinct);
}

/**
 * Exact Jaccard similarity of two sorted, distinct hash sets (as `shingleHashes` returns). Two
 * different shingles of one pair would have to collide in 32 bits to change the result.
 */
export function jaccard(a: Int32Array, b: Int32Array): number {
  if (a.length === 0 && b.length === 0) return 1;
  let i = 0;
  let j = 0;
  let shared = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    if (x === y) shared++;
    if (x <= y) i++;
    if (y <= x) j++;
  }
  return shared / (a.length + b.length - shared);
}

const MINHASH_SEEDS = Int32Array.from({ length: 1024 }, (_, k) => fmix32(Math.imul(k + 1, 0x9e3779b1) ^ 0x7f4a7c15));

/** MinHash signature: for each of `count` seeded permutations (fmix32 of hash ^ seed), the smallest value. */
export function minHashSignature(shingles: Int32Array, count: number): Int32Array {
  const signature = new Int32Array(count).fill(0x7fffffff);
  for (let s = 0; s < shingles.length; s++) {
    const shingle = shingles[s]!;
    for (let k = 0; k < count; k++) {
      const h = fmix32(shingle ^ MINHASH_SEEDS[k]!);
      if (h < signature[k]!) signature[k] = h;
    }
  }
  return signature;
}

/** Union-find whose root is always the smallest index, i.e. the group's first row. */
export class UnionFind {
  private readonly parent: Int32Array;
  private readonly sizes: Int32Array;
  constructor(count: number) {
    this.parent = Int32Array.from({ length: count }, (_, i) => i);
    this.sizes = new Int32Array(count).fill(1);
  }
  find(i: number): number {
    while (this.parent[i] !== i) {
      const grandparent = this.parent[this.parent[i]!]!;
      this.parent[i] = grandparent; // path halving
      i = grandparent;
    }
    return i;
  }
  union(a: number, b: number): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (ra === rb) return;
    const [root, child] = ra < rb ? [ra, rb] : [rb, ra];
    this.parent[child] = root;
    this.sizes[root]! += this.sizes[child]!;
  }
  size(i: number): number {
    return this.sizes[this.find(i)]!;
  }
}

// A row entering an LSH bucket is compared with at most MAX_COMPARED of the bucket's earlier rows
// that are not yet in its group, newest first, looking at most MAX_SCANNED rows back. This bounds
// the work per row and band whatever the bucket size (2,000 "Yes." answers to near-identical
// questions stay linear), at the cost of recall: a pair is missed only if, in every band where it
// shares a bucket, 8 dissimilar rows (or 32 rows in all) entered the bucket between the two.
const MAX_COMPARED = 8;
const MAX_SCANNED = 32;
// Rows sharing an answer with at most this many rows are compared pair by pair instead: at most
// 7 exact checks per row, cheaper than a 100-value MinHash signature and with no missed pairs.
const ALL_PAIRS_MAX_ROWS = 8;

/**
 * Joins near-duplicate rows in `groups`: questions whose shingle Jaccard similarity is at least
 * `threshold` and whose answer key (normalised answer + product) is identical. Rows are first
 * grouped by answer key; a unique answer cannot have a near duplicate, a small answer group is
 * compared pair by pair, and larger ones get candidates from MinHash LSH with bucket key (band,
 * band values, answer key hash), so only rows with the same answer meet. Each candidate pair is
 * verified at most once, with the exact Jaccard similarity of the shingle sets.
 */
export function joinNearDuplicates(
  indices: number[],
  questions: string[],
  answerKeys: string[],
  cfg: DedupSection['nearDuplicates'],
  groups: UnionFind,
): void {
  const rows: number[] = [];
  for (const members of groupBy(indices, (i) => answerKeys[i]!).values()) {
    if (members.length > ALL_PAIRS_MAX_ROWS) for (const i of members) rows.push(i);
    else if (members.length > 1) joinAllPairs(members, questions, cfg, groups);
  }
  rows.sort((a, b) => a - b);
  const { bands, rowsPerBand, threshold } = cfg;
  const shingles: Int32Array[] = new Array(rows.length);

  // All buckets in one open-addressing table of typed arrays (no per-bucket objects to collect):
  // slot → newest entry; entry `p * bands + band` → the previous entry of the same bucket.
  const capacity = 2 ** Math.ceil(Math.log2(Math.max(16, (rows.length * bands) / 0.7)));
  const mask = capacity - 1;
  const slotKey = new Int32Array(capacity);
  const slotHead = new Int32Array(capacity).fill(-1);
  const previous = new Int32Array(rows.length * bands);
  const verified: number[] = []; // positions this row was compared with, over all bands

  for (let p = 0; p < rows.length; p++) {
    const i = rows[p]!;
    const own = (shingles[p] = shingleHashes(questions[i]!, cfg.shingleSize));
    const signature = minHashSignature(own, bands * rowsPerBand);
    const answerHash = hashString(answerKeys[i]!, 0x51ed);
    verified.length = 0;
    for (let band = 0; band < bands; band++) {
      let key = fmix32(Math.imul(band + 1, 0x9e3779b1) ^ answerHash);
      for (let k = band * rowsPerBand; k < (band + 1) * rowsPerBand; k++) {
        key = Math.imul(key ^ signature[k]!, 0x5bd1e995);
        key ^= key >>> 15;
      }
      key = fmix32(key);
      let slot = key & mask;
      while (slotHead[slot] !== -1 && slotKey[slot] !== key) slot = (slot + 1) & mask;
      let compared = 0;
      for (
        let e = slotHead[slot]!, scanned = 0;
        e !== -1 && scanned < MAX_SCANNED && compared < MAX_COMPARED;
        e = previous[e]!, scanned++
      ) {
        const q = (e / bands) | 0;
        const j = rows[q]!;
        // Skip pairs verified in an earlier band, rows already in this row's group (so a big group
        // costs one comparison, not eight), and strangers whose 32-bit bucket key collided.
        if (verified.includes(q) || groups.find(j) === groups.find(i) || answerKeys[j] !== answerKeys[i]) continue;
        verified.push(q);
        compared++;
        if (jaccard(own, shingles[q]!) >= threshold - 1e-12) groups.union(i, j);
      }
      const entry = p * bands + band;
      previous[entry] = slotHead[slot]!;
      slotKey[slot] = key;
      slotHead[slot] = entry;
    }
  }
}

function joinAllPairs(members: number[], questions: string[], cfg: DedupSection['nearDuplicates'], groups: UnionFind): void {
  const shingles = members.map((i) => shingleHashes(questions[i]!, cfg.shingleSize));
  for (let p = 1; p < members.length; p++) {
    for (let q = 0; q < p; q++) {
      const [i, j] = [members[p]!, members[q]!];
      if (groups.find(i) !== groups.find(j) && jaccard(shingles[p]!, shingles[q]!) >= cfg.threshold - 1e-12) groups.union(i, j);
    }
  }
}

// ---------------------------------------------------------------------------------------------

export function deduplicate(rows: QaRow[], cfg: DedupSection): DedupResult {
  const n = rows.length;
  const products = new Map<string, string>(); // few distinct products: normalise each once
  const product = rows.map((row) => {
    if (row.product === null) return '';
    let normalized = products.get(row.product);
    if (normalized === undefined) products.set(row.product, (normalized = normalizeForMatch(row.product)));
    return normalized;
  });
  const question = rows.map((row) => normalizeForMatch(row.question));
  const questionKey = rows.map((_, i) => keyOf(product[i]!, question[i]!));
  const answerKey = rows.map((row, i) => keyOf(product[i]!, normalizeForMatch(row.answer)));
  const removal: Array<{ reason: string; duplicateOf?: number } | undefined> = new Array(n);
  // Pairs of rows that must land in the same split; joined once every removal is known.
  const together: Array<[number, number]> = [];

  // 1. Conflicts, over all rows.
  const conflicts: ConflictReport[] = [];
  let conflictRowsRemoved = 0;
  for (const [key, members] of groupBy(rows.keys(), (i) => questionKey[i]!)) {
    const byAnswer = groupBy(members, (i) => answerKey[i]!); // insertion order = first seen
    if (byAnswer.size < 2) continue;
    const answers = [...byAnswer.values()];
    let kept: number[][];
    let resolution: string;
    if (cfg.conflicts === 'keep-all') {
      kept = answers;
      resolution = `keep-all: kept all ${members.length} rows in one group`;
    } else if (cfg.conflicts === 'drop') {
      kept = [];
      resolution = `drop: removed all ${members.length} rows`;
    } else {
      // `reduce` keeps the earlier answer on a tie, so ties go to the answer seen first.
      const chosen = cfg.conflicts === 'keep-first' ? answers[0]! : answers.reduce((best, a) => (a.length > best.length ? a : best));
      kept = [chosen];
      resolution = `${cfg.conflicts}: kept ${quote(rows[chosen[0]!]!.answer)} (${chosen.length} of ${members.length} rows)`;
    }
    const keptRows = kept.flat();
    for (const i of keptRows) together.push([keptRows[0]!, i]);
    const keptSet = new Set(keptRows);
    for (const i of members) {
      if (keptSet.has(i)) continue;
      removal[i] = { reason: `conflicting answer to the same question (conflicts: ${cfg.conflicts})` };
      conflictRowsRemoved++;
    }
    const first = rows[members[0]!]!;
    conflicts.push({
      key,
      question: first.question,
      product: first.product,
      answers: answers.map((list) => ({
        answer: rows[list[0]!]!.answer,
        count: list.length,
        rowIds: list.map((i) => rows[i]!.id),
      })),
      resolution,
    });
  }

  // 2. Exact duplicates among the rows the conflict policy kept. With `exact` off they stay, but
  // grouped: identical rows in train and test would leak the answer.
  let exactDuplicates = 0;
  const firstWithPair = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    if (removal[i]) continue;
    const pairKey = `${questionKey[i]}\u0000${answerKey[i]}`;
    const first = firstWithPair.get(pairKey);
    if (first === undefined) firstWithPair.set(pairKey, i);
    else if (cfg.exact) {
      removal[i] = { reason: 'exact duplicate', duplicateOf: first };
      exactDuplicates++;
    } else together.push([first, i]);
  }

  // 3. Near duplicates among the remaining rows.
  let nearDuplicates = 0;
  let nearDuplicateGroups = 0;
  if (cfg.nearDuplicates.enabled) {
    const remaining = [...rows.keys()].filter((i) => !removal[i]);
    const near = new UnionFind(n);
    // A question of only punctuation normalises to ''; its key still tells such questions apart.
    const questions = question.map((text, i) => text || questionKey[i]!);
    joinNearDuplicates(remaining, questions, answerKey, cfg.nearDuplicates, near);
    for (const i of remaining) {
      const root = near.find(i);
      if (root === i) {
        if (near.size(i) > 1) nearDuplicateGroups++;
      } else {
        nearDuplicates++;
        if (cfg.nearDuplicates.policy === 'keep-one') removal[i] = { reason: 'near duplicate', duplicateOf: root };
        else together.push([root, i]);
      }
    }
  }

  // A removed duplicate stands for the kept row it duplicates, so a conflict partner of a removed
  // paraphrase still joins the paraphrase's group. duplicateOf always points to an earlier row.
  const keptRowFor = new Int32Array(n).fill(-1);
  for (let i = 0; i < n; i++) {
    const r = removal[i];
    keptRowFor[i] = r === undefined ? i : r.duplicateOf === undefined ? -1 : keptRowFor[r.duplicateOf]!;
  }
  const groups = new UnionFind(n);
  for (const [a, b] of together) {
    if (keptRowFor[a]! >= 0 && keptRowFor[b]! >= 0) groups.union(keptRowFor[a]!, keptRowFor[b]!);
  }

  // Output in input order. Only kept rows were joined, so every group root is a kept row.
  const kept: GroupedRow[] = [];
  const removedRows: DedupResult['removedRows'] = [];
  for (let i = 0; i < n; i++) {
    const row = rows[i]!;
    const r = removal[i];
    if (r === undefined) kept.push({ ...row, groupId: rows[groups.find(i)]!.id });
    else if (r.duplicateOf === undefined) removedRows.push({ row, reason: r.reason });
    else removedRows.push({ row, reason: r.reason, duplicateOf: rows[r.duplicateOf]!.id });
  }
  return {
    rows: kept,
    stats: {
      rowsIn: n,
      rowsOut: kept.length,
      exactDuplicates,
      nearDuplicates,
      nearDuplicateGroups,
      conflictGroups: conflicts.length,
      conflictRowsRemoved,
    },
    conflicts,
    removedRows,
  };
}

function groupBy(indices: Iterable<number>, keyFor: (i: number) => string): Map<string, number[]> {
  const groups = new Map<string, number[]>();
  for (const i of indices) {
    const list = groups.get(keyFor(i));
    if (list) list.push(i);
    else groups.set(keyFor(i), [i]);
  }
  return groups;
}
